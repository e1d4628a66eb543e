"""Store contract: the audit log, shared settings (meta) and the event outbox."""

from __future__ import annotations

import pytest
from contract_stores import T0, entry

from paywarden.errors import StoreError
from paywarden.ports import Store

# Audit log -----------------------------------------------------------------------------------


def test_the_head_is_the_last_entry_by_sequence(store: Store) -> None:
    with store.write() as tx:
        assert tx.audit.get_head() is None
        for seq in (1, 2, 3):
            tx.audit.append(entry(seq, body=f'{{"n": {seq}}}'))
        head = tx.audit.get_head()
    assert head is not None
    last = entry(3)
    link = (head.seq, head.created_us, head.kind, head.ref_id, head.parent_hash, head.entry_hash)
    assert link == (3, last.created_us, last.kind, last.ref_id, last.parent_hash, last.entry_hash)


def test_entries_page_in_sequence_order(store: Store) -> None:
    with store.write() as tx:
        for seq in range(1, 8):
            tx.audit.append(entry(seq, ref_id=f"ref_{seq % 2}", body=f'{{"n": {seq}}}'))
    with store.read() as tx:
        assert tx.audit.list_after(0, 3) == [
            entry(seq, f"ref_{seq % 2}", body=f'{{"n": {seq}}}') for seq in (1, 2, 3)
        ]
        assert [e.seq for e in tx.audit.list_after(3, 3)] == [4, 5, 6]
        assert [e.seq for e in tx.audit.list_after(6, 3)] == [7]
        assert tx.audit.list_after(7, 3) == []
        assert [e.seq for e in tx.audit.list_by_ref("ref_1")] == [1, 3, 5, 7]
        assert tx.audit.list_by_ref("ref_9") == []


def test_a_sequence_number_is_taken_once_and_an_entry_never_changes(store: Store) -> None:
    with store.write() as tx:
        tx.audit.append(entry(1, body='{"first": true}'))
    with pytest.raises(StoreError), store.write() as tx:
        tx.audit.append(entry(1, body='{"second": true}'))
    with store.read() as tx:
        assert tx.audit.list_after(0, 10) == [entry(1, body='{"first": true}')]


def test_appends_roll_back_with_their_transaction(store: Store) -> None:
    with pytest.raises(RuntimeError), store.write() as tx:
        tx.audit.append(entry(1))
        raise RuntimeError("the request failed after the append")
    with store.read() as tx:
        assert tx.audit.get_head() is None


# Meta ----------------------------------------------------------------------------------------


def test_meta_values_are_set_replaced_and_read(store: Store) -> None:
    with store.write() as tx:
        assert tx.meta.get("policy_version") is None
        tx.meta.set("policy_version", "pv_1")
        tx.meta.set("webhooks", "on")
        tx.meta.set("policy_version", "pv_2")
    with store.read() as tx:
        assert (tx.meta.get("policy_version"), tx.meta.get("webhooks")) == ("pv_2", "on")


# Outbox --------------------------------------------------------------------------------------


def test_new_events_are_due_at_once_in_insertion_order(store: Store) -> None:
    with store.write() as tx:
        tx.outbox.insert("approval.requested", '{"n": 1}', T0 + 20)
        tx.outbox.insert("approval.approved", '{"n": 2}', T0 + 10)
        tx.outbox.insert("approval.rejected", '{"n": 3}', T0 + 30)
    with store.read() as tx:
        due = tx.outbox.list_due(T0 + 20, 10)
        assert [(row.kind, row.body) for row in due] == [
            ("approval.requested", '{"n": 1}'),
            ("approval.approved", '{"n": 2}'),
        ]
        assert due[0].event_id < due[1].event_id
        first = due[0]
        assert (first.created_us, first.next_attempt_us, first.attempts) == (T0 + 20, T0 + 20, 0)
        assert (first.delivered_us, first.last_error) == (None, None)
        assert len(tx.outbox.list_due(T0 + 30, 2)) == 2
        assert tx.outbox.list_due(T0 + 9, 10) == []


def test_an_event_is_claimed_by_one_caller_until_its_lease_ends(store: Store) -> None:
    with store.write() as tx:
        tx.outbox.insert("a", "{}", T0)
    with store.read() as tx:
        (row,) = tx.outbox.list_due(T0, 10)
    with store.write() as tx:
        assert tx.outbox.claim(row.event_id, T0, T0 + 100)
    with store.write() as tx:
        assert not tx.outbox.claim(row.event_id, T0 + 50, T0 + 150)  # another caller, too soon
    with store.read() as tx:
        assert tx.outbox.list_due(T0 + 99, 10) == []  # not due while claimed
        assert [r.event_id for r in tx.outbox.list_due(T0 + 100, 10)] == [row.event_id]
    with store.write() as tx:
        assert tx.outbox.claim(row.event_id, T0 + 100, T0 + 200)  # the lease ended
        tx.outbox.mark(row.event_id, T0 + 120, T0 + 120, None)
    with store.write() as tx:
        assert not tx.outbox.claim(row.event_id, T0 + 500, T0 + 600)  # delivered: never again


def test_marking_an_attempt_delivers_or_postpones_the_event(store: Store) -> None:
    with store.write() as tx:
        tx.outbox.insert("a", "{}", T0)
        tx.outbox.insert("b", "{}", T0)
        first, second = tx.outbox.list_due(T0, 10)
        tx.outbox.mark(first.event_id, T0 + 1, T0, None)
        tx.outbox.mark(second.event_id, None, T0 + 100, "HTTP 503")
    with store.read() as tx:
        assert tx.outbox.list_due(T0 + 99, 10) == []
        (retry,) = tx.outbox.list_due(T0 + 100, 10)
    assert (retry.event_id, retry.attempts, retry.last_error) == (second.event_id, 1, "HTTP 503")
    assert (retry.delivered_us, retry.next_attempt_us) == (None, T0 + 100)
