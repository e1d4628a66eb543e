"""Store contract: a unit of work commits all its repositories' changes, or none of them."""

from __future__ import annotations

import pytest
from contract_stores import T0, charge, entry, hold, payment

from paywarden.errors import StoreError
from paywarden.ports import HaltRow, Store


def test_a_write_commits_every_repository_together(store: Store) -> None:
    with store.write() as tx:
        tx.budgets.lock_counter("daily", "agent-1", 0, "USD")
        assert tx.budgets.reserve("daily", "agent-1", 0, 1000, 5000)
        tx.holds.insert(hold(), [charge()])
        tx.audit.append(entry(1, ref_id="hld_1"))
        tx.meta.set("webhooks", "on")
    with store.read() as tx:
        assert tx.holds.get("hld_1") == hold()
        assert tx.budgets.list_counters()[0].held_minor == 1000
        assert [e.ref_id for e in tx.audit.list_by_ref("hld_1")] == ["hld_1"]
        assert tx.meta.get("webhooks") == "on"


def test_an_error_rolls_back_every_repository(store: Store) -> None:
    with store.write() as tx:
        tx.payments.insert(payment())
    with pytest.raises(StoreError), store.write() as tx:
        tx.budgets.lock_counter("daily", "agent-1", 0, "USD")
        assert tx.budgets.reserve("daily", "agent-1", 0, 1000, 5000)
        tx.holds.insert(hold(), [charge()])
        tx.audit.append(entry(1))
        assert tx.halts.insert_if_absent(HaltRow("*", "drill", "op-1", T0))
        tx.payments.insert(payment())  # the id is taken: the whole transaction fails
    with store.read() as tx:
        assert tx.holds.get("hld_1") is None
        assert tx.budgets.list_counters() == []
        assert tx.audit.get_head() is None
        assert tx.halts.list_all() == []


def test_any_exception_rolls_back_and_is_raised_unchanged(store: Store) -> None:
    class Stop(Exception):
        pass

    with pytest.raises(Stop), store.write() as tx:
        tx.meta.set("k", "v")
        raise Stop
    with store.read() as tx:
        assert tx.meta.get("k") is None


def test_writes_are_seen_by_later_transactions_in_order(store: Store) -> None:
    for number in range(1, 4):
        with store.write() as tx:
            head = tx.audit.get_head()
            seq = 1 if head is None else head.seq + 1
            assert seq == number
            tx.audit.append(entry(seq))
    with store.read() as tx:
        assert [e.seq for e in tx.audit.list_after(0, 10)] == [1, 2, 3]
