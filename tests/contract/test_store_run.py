"""Store contract: `run(work)` (a work in a transaction of its own, answered once committed)
and `backlog()`, on every store."""

from __future__ import annotations

import threading

import pytest
from contract_stores import entry

from paywarden.errors import StoreError
from paywarden.ports import Store, UnitOfWork


def test_run_returns_the_works_result_once_committed(store: Store) -> None:
    def work(tx: UnitOfWork) -> int:
        tx.meta.set("answer", "42")
        tx.audit.append(entry(1))
        return 42

    assert store.run(work) == 42
    with store.read() as tx:  # committed: visible to a fresh snapshot
        assert tx.meta.get("answer") == "42"
        assert [e.seq for e in tx.audit.list_after(0, 10)] == [1]


def test_a_work_that_raises_changes_nothing_and_its_error_reaches_the_caller(
    store: Store,
) -> None:
    def failing(tx: UnitOfWork) -> None:
        tx.meta.set("half", "done")
        tx.audit.append(entry(1))
        raise LookupError("the work failed after writing")

    with pytest.raises(LookupError, match="failed after writing"):
        store.run(failing)
    with store.read() as tx:
        assert tx.meta.get("half") is None
        assert tx.audit.get_head() is None


def test_a_store_failure_inside_a_work_is_a_store_error(store: Store) -> None:
    store.run(lambda tx: tx.audit.append(entry(1)))
    with pytest.raises(StoreError):
        store.run(lambda tx: tx.audit.append(entry(1)))  # the sequence number is taken
    assert store.run(lambda tx: tx.audit.get_head()) is not None  # the store goes on


def test_works_from_many_threads_each_commit_once(store: Store) -> None:
    def increment(tx: UnitOfWork) -> int:
        count = int(tx.meta.get("count") or "0") + 1
        tx.meta.set("count", str(count))
        return count

    seen: list[int] = []
    lock = threading.Lock()

    def caller() -> None:
        for _ in range(10):
            value = store.run(increment)
            with lock:
                seen.append(value)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(seen) == list(range(1, 81))  # every work saw the ones before it, once
    with store.read() as tx:
        assert tx.meta.get("count") == "80"


def test_backlog_is_zero_when_nothing_waits(store: Store) -> None:
    assert store.backlog() == 0
    store.run(lambda tx: tx.meta.set("k", "v"))
    assert store.backlog() == 0
