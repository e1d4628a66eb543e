"""The chain verifier on its own (catalog AU-01 to AU-04 in miniature, IN-09 for the verifier).

Chains built with `link` always verify; any one changed field is reported at the right entry;
the verifier never raises on garbage (a database or an export anyone can edit), it reports it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paywarden.audit.canonical import canonical_text
from paywarden.audit.chain import (
    GENESIS_PARENT,
    AuditEntry,
    Checkpoint,
    VerifyResult,
    link,
    verify,
)


def build(bodies: list[str], start_us: int = 1_000) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    for index, body in enumerate(bodies):
        parent = entries[-1] if entries else None
        entries.append(link(parent, start_us + index, "decision", f"dec_{index}", body))
    return entries


bodies = st.lists(
    st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3).map(
        canonical_text
    ),
    min_size=1,
    max_size=12,
)


@given(bodies)
def test_a_linked_chain_verifies_and_reports_its_head(texts: list[str]) -> None:
    entries = build(texts)
    result = verify(entries)
    assert result == VerifyResult(True, len(entries), len(entries), entries[-1].entry_hash)
    head = Checkpoint("paywarden", len(entries), entries[-1].entry_hash, 0)
    assert verify(entries, head).ok
    middle = entries[len(entries) // 2]
    assert verify(entries, Checkpoint("paywarden", middle.seq, middle.entry_hash, 0)).ok


FIELDS = ["seq", "created_us", "kind", "ref_id", "parent_hash", "entry_hash", "body"]


def changed(entry: AuditEntry, field: str, salt: int) -> object:
    value = getattr(entry, field)
    if field == "seq":
        return value + salt if salt % 2 else value - salt
    if field == "created_us":
        return value + salt
    if field in ("parent_hash", "entry_hash"):
        return f"{(int(value, 16) + salt) % 2**256:064x}"
    return value + str(salt)


@given(bodies, st.data(), st.sampled_from(FIELDS), st.integers(1, 1_000))
def test_any_changed_field_is_reported_at_its_entry(
    texts: list[str], data: st.DataObject, field: str, salt: int
) -> None:
    entries = build(texts)
    index = data.draw(st.integers(0, len(entries) - 1))
    value = changed(entries[index], field, salt)
    entries[index] = dataclasses.replace(entries[index], **{field: value})  # type: ignore[arg-type]
    result = verify(entries)
    assert not result.ok
    assert result.first_bad_seq == (value if field == "seq" else index + 1)
    assert result.head_seq == index
    assert result.head_hash == (entries[index - 1].entry_hash if index else GENESIS_PARENT)


@given(bodies, st.integers(1, 12))
def test_a_truncated_tail_needs_the_checkpoint(texts: list[str], cut: int) -> None:
    entries = build(texts)
    head = Checkpoint("paywarden", len(entries), entries[-1].entry_hash, 0)
    kept = entries[: max(len(entries) - cut, 0)]
    assert verify(kept).ok  # documented limit of a chain without an anchor
    result = verify(kept, head)
    assert not result.ok
    assert result.first_bad_seq == len(kept) + 1
    assert "entries deleted from the tail" in str(result.reason)


def test_a_checkpoint_beyond_a_forked_entry_reports_the_rewrite() -> None:
    entries = build(['{"n":1}', '{"n":2}', '{"n":3}'])
    forked = build(['{"n":1}', '{"n":20}', '{"n":3}'])
    checkpoint = Checkpoint("paywarden", 3, entries[-1].entry_hash, 0)
    assert verify(forked).ok
    result = verify(forked, checkpoint)
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "suffix rewritten" in str(result.reason)


def test_the_empty_log_and_its_checkpoint() -> None:
    assert verify([]) == VerifyResult(True, 0, 0, GENESIS_PARENT)
    empty = Checkpoint("paywarden", 0, GENESIS_PARENT, 0)
    assert verify([], empty).ok
    assert verify(build(['{"n":1}']), empty).ok
    wrong = Checkpoint("paywarden", 0, "ab" * 32, 0)
    assert not verify([], wrong).ok


def test_describe_names_the_head_or_the_break() -> None:
    entries = build(['{"n":1}', '{"n":2}'])
    assert (
        verify(entries).describe()
        == f"ok: 2 entries verified, head 2 {entries[-1].entry_hash[:16]}"
    )
    broken = [entries[0], dataclasses.replace(entries[1], body='{"n":3}')]
    assert verify(broken).describe() == (
        "broken at seq 2: entry hash does not match its contents (entry edited)"
    )


anything = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text()
    | st.binary(max_size=8)
    | st.sampled_from([GENESIS_PARENT, "\ud800", "ab" * 32, "zz" * 32])
)


@given(st.lists(st.tuples(*[anything] * 7), max_size=6), st.integers(0, 7), anything)
def test_the_verifier_never_raises_on_garbage(
    rows: list[tuple[Any, ...]], checkpoint_seq: int, head: Any
) -> None:
    entries = [AuditEntry(*row) for row in rows]
    for checkpoint in (None, Checkpoint("x", checkpoint_seq, str(head), 0)):
        result = verify(entries, checkpoint)
        assert isinstance(result, VerifyResult)
        if entries:
            assert not result.ok
            assert isinstance(result.first_bad_seq, int)


@given(bodies, st.data())
def test_garbage_spliced_into_a_valid_chain_is_reported_at_its_position(
    texts: list[str], data: st.DataObject
) -> None:
    entries = build(texts)
    index = data.draw(st.integers(0, len(entries) - 1))
    field = data.draw(st.sampled_from(FIELDS))
    junk = data.draw(anything)
    if junk == getattr(entries[index], field) and type(junk) is type(
        getattr(entries[index], field)
    ):
        return
    entries[index] = dataclasses.replace(entries[index], **{field: junk})  # type: ignore[arg-type]
    result = verify(entries)
    assert not result.ok
    assert result.head_seq == index
    expected = index + 1
    if field == "seq" and type(junk) is int:
        expected = junk
    assert result.first_bad_seq == expected


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("created_us", 2**63, "cannot be encoded"),
        ("created_us", -(2**63) - 1, "cannot be encoded"),
        ("body", "\ud800", "cannot be encoded"),
        ("kind", "\udfff", "cannot be encoded"),
        ("created_us", 1.0, "wrong type"),
        ("created_us", True, "wrong type"),
        ("seq", "1", "wrong type"),
        ("body", None, "wrong type"),
        ("ref_id", b"dec_0", "wrong type"),
    ],
)
def test_values_only_an_export_file_or_a_rebuilt_table_can_hold_are_reported(
    field: str, value: object, reason: str
) -> None:
    entries = build(['{"n":1}', '{"n":2}'])
    entries[0] = dataclasses.replace(entries[0], **{field: value})  # type: ignore[arg-type]
    result = verify(entries)
    assert (result.ok, result.first_bad_seq, result.head_seq) == (False, 1, 0)
    assert reason in str(result.reason)
