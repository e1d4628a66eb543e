"""The audit hash chain, modelled on TigerBeetle's `Prepare.parent`.

Each entry stores its sequence number, its parent hash and its own hash; the genesis parent is
all zeros. The hash covers, with domain separation, the parent hash, the sequence number, the
time, the kind, the reference id and the entry's canonical body bytes, so editing any stored
column breaks the entry, and deleting, inserting or reordering entries breaks the links.

The hashed form is fixed (chain format v1, `DOMAIN`): the parent hash as 32 bytes, the numbers
big-endian, the texts and the canonical JSON body as UTF-8. The stored form is smaller and is
not hashed: both hashes as 32 raw bytes, the body compressed (`body_codec`), so verification
decodes each stored body back to the exact bytes it hashes (`stored_row`, `entry_from_stored`).
An `AuditEntry` is always the hashed form (hashes as hex, the body as canonical JSON text), as
exports, checkpoints and every reader see it; entries stored before the compact form verify
unchanged, since only how they are kept changed.

A chain alone cannot reveal a deleted tail or a suffix rewritten by someone who can write the
database; `verify` therefore also checks the chain against a signed checkpoint held outside it.
`verify` only reads: it never modifies the log.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from paywarden.audit import body_codec
from paywarden.audit.body_dictionary import DICTIONARY_1

DOMAIN = b"paywarden.audit.v1\x00"
GENESIS_PARENT = "00" * 32


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry in its hashed form: hashes as hex, `body` as canonical JSON text (see
    canonical.py), whatever form the store keeps it in."""

    seq: int
    created_us: int
    kind: str
    ref_id: str
    parent_hash: str
    entry_hash: str
    body: str


_HEADER = struct.Struct(">32sQq")
# The fixed start of the hashed form in one pack: the domain tag, the parent hash, the numbers.
_PREFIX = struct.Struct(f">{len(DOMAIN)}s32sQq")
_LENGTH = struct.Struct(">I")


def entry_hash(
    parent_hash: str, seq: int, created_us: int, kind: str, ref_id: str, body: str
) -> str:
    """SHA-256 over the domain tag and every field; variable fields are length-prefixed, so no
    two different entries can share the hashed bytes by shifting a field boundary."""
    kind_bytes = kind.encode("utf-8", "surrogateescape")
    ref_bytes = ref_id.encode("utf-8", "surrogateescape")
    body_bytes = body.encode("utf-8", "surrogateescape")
    return hashlib.sha256(
        b"".join(
            (
                DOMAIN,
                _HEADER.pack(bytes.fromhex(parent_hash), seq, created_us),
                _LENGTH.pack(len(kind_bytes)),
                kind_bytes,
                _LENGTH.pack(len(ref_bytes)),
                ref_bytes,
                _LENGTH.pack(len(body_bytes)),
                body_bytes,
            )
        )
    ).hexdigest()


def link(
    parent: AuditEntry | None, created_us: int, kind: str, ref_id: str, body: str
) -> AuditEntry:
    """The next entry after `parent` (None for the genesis entry)."""
    seq = 1 if parent is None else parent.seq + 1
    parent_hash = GENESIS_PARENT if parent is None else parent.entry_hash
    digest = entry_hash(parent_hash, seq, created_us, kind, ref_id, body)
    return AuditEntry(seq, created_us, kind, ref_id, parent_hash, digest, body)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement that the log had `seq` entries ending in `head_hash` at `time_us`."""

    origin: str
    seq: int
    head_hash: str
    time_us: int


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of a verification: ok, or the first broken link and why."""

    ok: bool
    entries_checked: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    reason: str | None = None

    def describe(self) -> str:
        if self.ok:
            head = f"{self.head_seq} {self.head_hash[:16]}"
            return f"ok: {self.entries_checked} entries verified, head {head}"
        return f"broken at seq {self.first_bad_seq}: {self.reason}"


def verify(entries: Iterable[AuditEntry], checkpoint: Checkpoint | None = None) -> VerifyResult:
    """Recompute the chain from the genesis entry; report the first broken link and why.

    With a checkpoint, the log must still contain the checkpointed entry with the same hash
    (which catches a rewritten suffix) and must not end before it (which catches truncation).
    """
    # A checkpoint of the empty log (seq 0) is the genesis parent, which every log extends.
    seen = checkpoint is not None and checkpoint.seq == 0 and checkpoint.head_hash == GENESIS_PARENT
    return _verify_from(entries, checkpoint, 1, GENESIS_PARENT, seen)


def _verify_from(
    entries: Iterable[AuditEntry],
    checkpoint: Checkpoint | None,
    expected_seq: int,
    parent_hash: str,
    checkpoint_seen: bool,
) -> VerifyResult:
    checked = expected_seq - 1
    for entry in entries:
        problem = _check_entry(entry, expected_seq, parent_hash)
        if problem is not None:
            bad_seq = entry.seq if type(entry.seq) is int else expected_seq
            return VerifyResult(False, checked, expected_seq - 1, parent_hash, bad_seq, problem)
        if checkpoint is not None and entry.seq == checkpoint.seq:
            if entry.entry_hash != checkpoint.head_hash:
                return VerifyResult(
                    False,
                    checked,
                    expected_seq - 1,
                    parent_hash,
                    entry.seq,
                    "entry differs from the signed checkpoint (suffix rewritten)",
                )
            checkpoint_seen = True
        checked += 1
        expected_seq, parent_hash = entry.seq + 1, entry.entry_hash
    head_seq = expected_seq - 1
    if checkpoint is not None and not checkpoint_seen:
        return VerifyResult(
            False,
            checked,
            head_seq,
            parent_hash,
            head_seq + 1,
            f"log ends at seq {head_seq} but the signed checkpoint covers seq "
            f"{checkpoint.seq} (entries deleted from the tail)",
        )
    return VerifyResult(True, checked, head_seq, parent_hash)


# A stored row: `(seq, created_us, kind, ref_id, parent_hash, entry_hash, body[, types_ok])`
# as the store keeps it: kind and ref_id as text (str, or UTF-8 bytes), each hash as 32 raw
# bytes (or, in an entry stored before the compact form, its 64 hex digits as ASCII bytes),
# the body in its stored form (`body_codec`); types unchecked until verified.
StoredRow = tuple[Any, ...]
RawRow = StoredRow  # the name this type had before the stored form was compacted
# The text an entry carries for a stored body that does not decode: a lone surrogate outside
# the escape range, so it can never hash (and so never pass) on any path.
UNDECODABLE_BODY = "\udc00paywarden: the stored body does not decode: "


def stored_row(entry: AuditEntry) -> tuple[int, int, str, str, bytes, bytes, bytes]:
    """The row an entry is stored as: hashes as raw bytes, the body compressed."""
    return (
        entry.seq,
        entry.created_us,
        entry.kind,
        entry.ref_id,
        bytes.fromhex(entry.parent_hash),
        bytes.fromhex(entry.entry_hash),
        body_codec.encode_text(entry.body),
    )


def entry_from_stored(row: StoredRow) -> AuditEntry:
    """A stored row as an entry: hashes as hex, the body decoded to its canonical text (bytes
    that are not UTF-8 kept as surrogate escapes, so they hash back to themselves).

    A row may carry an eighth value, the store's own check that every column has its declared
    type; when it says no, the values stay as stored, so the entry reports the wrong type.
    """
    if len(row) > 7 and not row[7]:
        return AuditEntry(*row[:7])
    seq, created_us, kind, ref_id, parent_hash, own_hash, body = row[:7]
    return AuditEntry(
        seq,
        created_us,
        _text(kind),
        _text(ref_id),
        stored_hash_text(parent_hash),
        stored_hash_text(own_hash),
        _body_text(body),
    )


_LEGACY_HASH = re.compile(rb"[0-9a-f]{64}")


def stored_hash_text(stored: Any) -> Any:
    """A stored hash as hex: 32 raw bytes, or a legacy entry's 64 lowercase hex digits. Any
    other bytes become a hex text that matches no hash (the entry stays broken)."""
    if not isinstance(stored, bytes):
        return stored
    if len(stored) == 64 and _LEGACY_HASH.fullmatch(stored):
        return stored.decode("ascii")
    return stored.hex()


def raw_stored_hash(stored: bytes) -> bytes:
    """A legacy entry's hash (64 hex digits) as its 32 raw bytes; anything else unchanged."""
    if len(stored) == 64 and _LEGACY_HASH.fullmatch(stored):
        return bytes.fromhex(stored.decode("ascii"))
    return stored


def _text(value: Any) -> Any:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _body_text(stored: Any) -> Any:
    if not isinstance(stored, bytes):
        return stored
    try:
        return body_codec.decode_text(stored)
    except body_codec.BodyFormatError as error:
        return f"{UNDECODABLE_BODY}{error}"


def _raw_hash(hex_hash: str) -> bytes:
    try:
        return bytes.fromhex(hex_hash)
    except (TypeError, ValueError):
        return b""  # matches no stored hash


@dataclass(slots=True)
class ScanState:
    """Where a fast scan stands: the next expected seq and the previous entry's raw hash."""

    expected_seq: int
    parent: bytes  # 32 raw bytes, as stored
    checkpoint_seen: bool = False


def scan_rows(
    iterator: Iterator[StoredRow], state: ScanState, checkpoint: Checkpoint | None = None
) -> StoredRow | None:
    """Advance `state` over good rows; return the first row that does not pass, or None.

    This is the hot loop of verification: one body inflated, one hash and a few comparisons
    per good entry, with every rarer case (a legacy hex hash, a body in another format, the
    checkpoint's entry) off the common path. Kind and ref_id must come as UTF-8 bytes (a bytes
    text factory). A row here may be refused where the precise path (`verify`) would accept
    it, never the other way round: callers rerun the precise path from the failing row.
    """
    rows = _typed_rows(iterator)
    sha256, prefix, length, join = hashlib.sha256, _PREFIX.pack, _LENGTH.pack, b"".join
    inflater_for, dictionary, decode = zlib.decompressobj, DICTIONARY_1, _decode_body
    deflate_1, body_max = body_codec.FORMAT_DEFLATE_1, body_codec.BODY_BYTES_MAX
    expected_seq, parent, seen = state.expected_seq, state.parent, state.checkpoint_seen
    checkpoint_seq = checkpoint.seq if checkpoint is not None else -1
    checkpoint_hash = _raw_hash(checkpoint.head_hash) if checkpoint is not None else b""
    failing: StoredRow | None = None
    for row in rows:
        seq, created_us, kind, ref_id, parent_hash, stored_hash, body, types_ok = row
        try:
            if parent_hash != parent:  # or the same hash as 64 hex digits (a legacy entry)
                parent_hash = raw_stored_hash(parent_hash)
            good = types_ok == 1 and seq == expected_seq and parent_hash == parent
            if good:
                if body[0] == deflate_1:  # the form of every entry written today, inline
                    inflater = inflater_for(-15, zdict=dictionary)
                    data = inflater.decompress(body[1:], body_max)
                    if not inflater.eof or inflater.unused_data:
                        data = decode(body)  # body_codec decides (and most likely refuses)
                else:
                    data = decode(body)
                digest = sha256(
                    join(
                        (
                            prefix(DOMAIN, parent, seq, created_us),
                            length(len(kind)),
                            kind,
                            length(len(ref_id)),
                            ref_id,
                            length(len(data)),
                            data,
                        )
                    )
                ).digest()
                good = digest == stored_hash or digest == raw_stored_hash(stored_hash)
                if seq == checkpoint_seq:
                    good = seen = good and digest == checkpoint_hash
        except (TypeError, ValueError, IndexError, struct.error, OverflowError, zlib.error):
            good = False  # a body that does not decode is a ValueError (BodyFormatError)
        if not good:
            failing = row
            break
        expected_seq, parent = expected_seq + 1, digest
    state.expected_seq, state.parent, state.checkpoint_seen = expected_seq, parent, seen
    return failing


def _typed_rows(rows: Iterator[StoredRow]) -> Iterator[StoredRow]:
    """`rows` with the store's type check as their eighth value (1 where a row has none)."""
    first = next(rows, None)
    if first is None:
        return iter(())
    if len(first) > 7:
        return itertools.chain((first,), rows)
    return ((*row[:7], 1) for row in itertools.chain((first,), rows))


_decode_body = body_codec.decode_body


def verify_rows(rows: Iterable[StoredRow], checkpoint: Checkpoint | None = None) -> VerifyResult:
    """`verify` over stored rows (see `StoredRow`) whose kind and ref_id are UTF-8 bytes, as a
    database read with a bytes text factory returns them: the fast path for large logs.

    At the first row that does not pass, verification continues on the precise path of
    `verify`, so every reason and checkpoint rule is the same on both paths.
    """
    iterator = iter(rows)
    state = ScanState(1, bytes(32))
    state.checkpoint_seen = (
        checkpoint is not None and checkpoint.seq == 0 and checkpoint.head_hash == GENESIS_PARENT
    )
    failing = scan_rows(iterator, state, checkpoint)
    parent = state.parent.hex()
    if failing is None:
        return _verify_from((), checkpoint, state.expected_seq, parent, state.checkpoint_seen)
    rest = itertools.chain(
        [entry_from_stored(failing)], (entry_from_stored(row) for row in iterator)
    )
    return _verify_from(rest, checkpoint, state.expected_seq, parent, state.checkpoint_seen)


def _check_entry(entry: AuditEntry, expected_seq: int, parent_hash: str) -> str | None:
    # Stored rows come from outside (a database anyone with write access may rebuild, an
    # export file): a field of the wrong type is a broken entry, never a crash of the verifier.
    numbers = (entry.seq, entry.created_us)
    texts = (entry.kind, entry.ref_id, entry.parent_hash, entry.entry_hash, entry.body)
    if any(type(value) is not int for value in numbers) or any(
        type(value) is not str for value in texts
    ):
        return "entry has a field of the wrong type (column types changed)"
    if entry.seq != expected_seq:
        if entry.seq > expected_seq:
            return f"sequence jumps from {expected_seq - 1} to {entry.seq} (entries deleted)"
        return f"sequence {entry.seq} repeats or goes backwards after {expected_seq - 1}"
    if entry.parent_hash != parent_hash:
        return "parent hash does not match the previous entry (entry inserted, removed or moved)"
    if entry.body.startswith(UNDECODABLE_BODY):
        return "entry body does not decode from its stored form (entry edited)"
    try:
        recomputed = entry_hash(
            entry.parent_hash, entry.seq, entry.created_us, entry.kind, entry.ref_id, entry.body
        )
    except (struct.error, OverflowError, UnicodeEncodeError):
        return "entry has a value that cannot be encoded (entry edited)"
    if recomputed != entry.entry_hash:
        return "entry hash does not match its contents (entry edited)"
    return None
