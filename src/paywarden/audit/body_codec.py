"""How an audit entry's body is stored: its canonical JSON, compressed with a preset dictionary.

The chain hashes the canonical JSON text of a body (`chain.entry_hash`); the store keeps a
smaller form of the same bytes and verification recomputes the hashed form from it exactly
(`decode_body`). What is stored never enters a hash, so the compression may differ between
zlib versions without changing any entry's hash: only the decoded bytes count.

A stored body starts with a format byte:

- `{` (0x7B): the canonical JSON itself, as UTF-8. Entries written before schema version 8
  were converted to this form by the migration, byte for byte.
- 0x01: raw DEFLATE (RFC 1951, no zlib header or checksum: the chain hash is the checksum) of
  the canonical JSON's UTF-8 bytes, with `body_dictionary.DICTIONARY_1` as the preset
  dictionary. Every entry written since schema version 8 has this form.

A new form gets the next format byte and its own frozen dictionary; decoding keeps every old
form forever, so old entries stay verifiable. A stored body that does not decode exactly (an
unknown format byte, a broken stream, bytes after its end, more than `BODY_BYTES_MAX` when
decoded) is a broken entry: the verifier reports it where it is stored.
"""

from __future__ import annotations

import zlib
from typing import Final

from paywarden.audit.body_dictionary import DICTIONARY_1

FORMAT_PLAIN: Final = 0x7B  # `{`: canonical JSON, UTF-8
FORMAT_DEFLATE_1: Final = 0x01  # raw DEFLATE with DICTIONARY_1
# The format every new entry is written in: change it only together with a new dictionary.
FORMAT_CURRENT: Final = FORMAT_DEFLATE_1
# No real body comes near this (a refusal keeps at most a few KB of what was sent); a stored
# body that would decode to more is broken, and decoding stops there (no decompression bomb).
BODY_BYTES_MAX: Final = 16 * 1024 * 1024
# Compression, measured on decision bodies of about 1.6 KB (bench/storage_size.py): level 6
# (zlib's default) stores 432 bytes where level 1 stores 484 and level 9 430, at about the cost
# of level 9. An 8 KB window holds the whole dictionary (6 KB) and the start of the body; the
# compressor is copied from one primed with the dictionary, and with this window and memLevel 6
# the copy moves 64 KB instead of 256 KB (a few microseconds instead of tens).
_LEVEL: Final = 6
_WINDOW_BITS: Final = -13  # negative: raw DEFLATE
_MEMORY_LEVEL: Final = 6
_PRIMED = zlib.compressobj(
    _LEVEL, zlib.DEFLATED, _WINDOW_BITS, _MEMORY_LEVEL, zlib.Z_DEFAULT_STRATEGY, zdict=DICTIONARY_1
)


class BodyFormatError(ValueError):
    """A stored body that does not decode to exactly one canonical body."""


def encode_text(text: str) -> bytes:
    """The stored form of a canonical body text (the bytes the chain hashes, compressed)."""
    return encode_bytes(text.encode("utf-8", "surrogateescape"))


def encode_bytes(data: bytes) -> bytes:
    if len(data) > BODY_BYTES_MAX:
        raise BodyFormatError(f"an audit body must be at most {BODY_BYTES_MAX} bytes")
    compressor = _PRIMED.copy()  # the dictionary is already loaded: no per-body setup
    return bytes((FORMAT_DEFLATE_1,)) + compressor.compress(data) + compressor.flush()


def decode_body(stored: bytes) -> bytes:
    """The canonical body bytes (what the chain hashes) of a stored body; BodyFormatError when
    `stored` is not exactly one body in a known format."""
    if not stored:
        raise BodyFormatError("an empty stored body")
    form = stored[0]
    if form == FORMAT_DEFLATE_1:
        return _inflate(stored, DICTIONARY_1)
    if form == FORMAT_PLAIN:
        if len(stored) > BODY_BYTES_MAX:
            raise BodyFormatError("a stored body over the size limit")
        return stored
    raise BodyFormatError(f"unknown audit body format {form:#04x}")


def decode_text(stored: bytes) -> str:
    """`decode_body` as text; bytes that are not UTF-8 are kept as surrogate escapes, so they
    hash back to the same bytes (and a broken entry stays broken, never unreadable)."""
    return decode_body(stored).decode("utf-8", "surrogateescape")


def _inflate(stored: bytes, dictionary: bytes) -> bytes:
    inflater = zlib.decompressobj(-15, zdict=dictionary)  # any window up to 32 KB reads
    try:
        data = inflater.decompress(memoryview(stored)[1:], BODY_BYTES_MAX + 1)
    except zlib.error as error:
        raise BodyFormatError(f"a stored body that does not inflate: {error}") from None
    if len(data) > BODY_BYTES_MAX:
        raise BodyFormatError("a stored body over the size limit")
    if not inflater.eof or inflater.unused_data or inflater.unconsumed_tail:
        raise BodyFormatError("a stored body that is cut short or has bytes after its end")
    return data
