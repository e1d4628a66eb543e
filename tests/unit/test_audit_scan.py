"""The fast verifier over stored rows (`chain.verify_rows`, the loop `paywarden audit verify`
runs) against the precise one (`chain.verify` over decoded entries): the same result, field for
field, for every stored form a row may have and every way a row can be broken.

Method: chains built with `link` and stored with `stored_row` (what the store writes), then
rewritten into the older forms (plain-JSON bodies, hex hashes), given a checkpoint, or broken
one column at a time; each log is verified both ways, with and without the store's type check
as an eighth column, and the two results must be equal.
"""

from __future__ import annotations

import zlib
from typing import Any

import pytest

from paywarden.audit import body_codec
from paywarden.audit.body_dictionary import DICTIONARY_1
from paywarden.audit.canonical import canonical_text
from paywarden.audit.chain import (
    AuditEntry,
    Checkpoint,
    VerifyResult,
    entry_from_stored,
    link,
    stored_row,
    verify,
    verify_rows,
)

Row = tuple[Any, ...]


def chain(count: int, body_of: Any = None) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    for index in range(count):
        body = body_of(index) if body_of else canonical_text({"n": index, "who": "agent-a"})
        parent = entries[-1] if entries else None
        entries.append(link(parent, 1_000 + index, "decision", f"dec_{index}", body))
    return entries


def stored(entries: list[AuditEntry]) -> list[Row]:
    """The rows as the store keeps them, kind and ref_id as UTF-8 bytes (a bytes text factory)."""
    rows = []
    for entry in entries:
        seq, created_us, kind, ref_id, parent, own, body = stored_row(entry)
        rows.append((seq, created_us, kind.encode(), ref_id.encode(), parent, own, body))
    return rows


def both_ways(rows: list[Row], checkpoint: Checkpoint | None = None) -> VerifyResult:
    """Verify `rows` on the fast path, with and without the type-check column, and on the
    precise path; all three must agree on every field."""
    precise = verify([entry_from_stored(row) for row in rows], checkpoint)
    assert verify_rows(iter(rows), checkpoint) == precise
    assert verify_rows(iter([(*row, 1) for row in rows]), checkpoint) == precise
    return precise


def replaced(row: Row, index: int, value: object) -> Row:
    return (*row[:index], value, *row[index + 1 :])


def test_every_stored_form_verifies_and_is_what_the_precise_path_says() -> None:
    entries = chain(6)
    rows = stored(entries)
    # A body kept as plain canonical JSON (converted from before the compact form), and
    # hashes kept as 64 hex digits (an entry written before it), next to compact rows.
    rows[1] = replaced(rows[1], 6, entries[1].body.encode())
    rows[2] = replaced(rows[2], 4, entries[2].parent_hash.encode())
    rows[2] = replaced(rows[2], 5, entries[2].entry_hash.encode())
    rows[3] = replaced(rows[3], 4, entries[3].parent_hash.encode())
    result = both_ways(rows)
    assert (result.ok, result.entries_checked, result.head_hash) == (
        True,
        6,
        entries[-1].entry_hash,
    )
    for seq in (0, 1, 3, 6):
        head = entries[seq - 1].entry_hash if seq else "00" * 32
        assert both_ways(rows, Checkpoint("t", seq, head, 0)).ok
    forked = both_ways(rows, Checkpoint("t", 3, "ab" * 32, 0))
    assert (forked.ok, forked.first_bad_seq) == (False, 3)
    beyond = both_ways(rows, Checkpoint("t", 9, "ab" * 32, 0))
    assert (beyond.ok, beyond.first_bad_seq, beyond.head_seq) == (False, 7, 6)


def _deflated(data: bytes, tail: bytes = b"") -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15, zdict=DICTIONARY_1)
    return (
        bytes((body_codec.FORMAT_DEFLATE_1,))
        + compressor.compress(data)
        + compressor.flush()
        + tail
    )


BROKEN_BODIES = {
    "empty": b"",
    "unknown format": b"\x02abc",
    "not deflate": b"\x01\xff\xff\xff",
    "cut short": _deflated(b'{"n":1,"who":"agent-a"}')[:-3],
    "bytes after the end": _deflated(b'{"n":1,"who":"agent-a"}', tail=b"\x00"),
    "another body": _deflated(b'{"n":1,"who":"attacker"}'),
    "a number": 7,
}


@pytest.mark.parametrize("body", BROKEN_BODIES.values(), ids=BROKEN_BODIES.keys())
def test_a_stored_body_that_does_not_decode_to_the_hashed_bytes_is_reported_there(
    body: object,
) -> None:
    rows = stored(chain(4))
    rows[1] = replaced(rows[1], 6, body)
    result = both_ways(rows)
    assert (result.ok, result.first_bad_seq, result.head_seq) == (False, 2, 1)


def test_a_body_at_the_size_limit_verifies_and_one_byte_more_does_not() -> None:
    limit = body_codec.BODY_BYTES_MAX
    at_limit = '{"pad":"' + "a" * (limit - 10) + '"}'
    assert len(at_limit) == limit
    entries = chain(2, lambda index: at_limit if index == 0 else '{"n":1}')
    assert both_ways(stored(entries)).ok
    over = link(None, 1_000, "decision", "dec_0", at_limit[:-2] + 'a"}')
    # The store refuses to encode it; a writer with the database could still put it there.
    raw = (bytes.fromhex(over.parent_hash), bytes.fromhex(over.entry_hash))
    row = (1, 1_000, b"decision", b"dec_0", *raw, _deflated(over.body.encode()))
    result = both_ways([row])
    assert (result.ok, result.first_bad_seq) == (False, 1)
    assert "does not decode" in str(result.reason)


BROKEN_COLUMNS = [
    (0, 5, "sequence jumps"),
    (0, 2, "repeats"),
    (0, 2.0, "wrong type"),
    (1, 1.5, "wrong type"),
    (1, "1001", "wrong type"),
    (2, b"refund", "hash does not match"),
    (3, b"dec_\xff", "hash does not match"),
    (4, b"\x00" * 31, "parent hash"),
    (4, "00" * 32, "parent hash"),
    (5, b"\x00" * 32, "hash does not match"),
    (5, None, "wrong type"),
]


@pytest.mark.parametrize(("column", "value", "reason"), BROKEN_COLUMNS)
def test_a_broken_column_is_reported_at_its_row_as_the_precise_path_reports_it(
    column: int, value: object, reason: str
) -> None:
    rows = stored(chain(5))
    rows[2] = replaced(rows[2], column, value)
    result = both_ways(rows)
    reported = value if column == 0 and type(value) is int else 3  # where it says it is
    assert (result.ok, result.first_bad_seq, result.head_seq) == (False, reported, 2)
    assert reason in str(result.reason)


@pytest.mark.parametrize(
    ("column", "value"), [(2, "decision"), (6, '{"n":1,"who":"agent-a"}')], ids=["kind", "body"]
)
def test_a_row_whose_column_types_the_store_flags_is_broken_though_it_hashes(
    column: int, value: str
) -> None:
    """Text where the store keeps bytes (a rebuilt table): without the store's type check both
    paths read it as the same text and it hashes; with the check saying no, it is broken."""
    rows = stored(chain(3))
    rows[1] = replaced(rows[1], column, value)
    assert both_ways(rows).ok
    flagged = [(*row, 0 if index == 1 else 1) for index, row in enumerate(rows)]
    precise = verify([entry_from_stored(row) for row in flagged])
    assert verify_rows(iter(flagged)) == precise
    assert (precise.ok, precise.first_bad_seq) == (False, 2)
    assert "wrong type" in str(precise.reason)
