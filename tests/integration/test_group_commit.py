"""Group commit (issue 14, goal 1): one writer per store commits a batch of works in one
transaction and one fsync, each work atomic on its own, nobody answered before the commit.

- a work that raises in a batch is rolled back to its savepoint alone, its exception goes to its
  caller, and the others commit (checked on the statements the writer sent: one transaction);
- a crash between a batch's works and its COMMIT (the process killed with SIGKILL when COMMIT
  starts) loses the whole batch, and no caller had been answered;
- decisions batched from many threads keep every budget exact: the same intents decided by one
  thread and by sixteen leave the same totals, conservation holds, idempotency holds;
- `write()` blocks join the batches; nested transactions are refused; a closed store refuses.
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paywarden import FrozenClock, PaymentIntent, Warden
from paywarden.adapters.storage.sqlite import SQLiteStore
from paywarden.errors import IdempotencyConflictError, StoreError
from paywarden.ports import UnitOfWork

WORKER = Path(__file__).resolve().parents[1] / "fakes" / "queue_worker.py"
NOW = "2026-03-10T15:00:00+00:00"
DEADLINE_SECONDS = 30.0


class Gate:
    """A work that holds the writer until opened, so that callers queue up behind it and
    the next batch takes them all."""

    def __init__(self, store: SQLiteStore, queued: int) -> None:
        self.store, self.queued = store, queued
        self.entered = threading.Event()
        self.statements: list[str] = []

    def __call__(self, tx: UnitOfWork) -> None:
        self.entered.set()
        deadline = threading.Event()
        for _ in range(int(DEADLINE_SECONDS * 100)):
            if self.store.backlog() >= self.queued:
                break
            deadline.wait(0.01)
        connection = getattr(tx, "connection")  # noqa: B009 - the SQLite unit's connection
        assert isinstance(connection, sqlite3.Connection)
        connection.set_trace_callback(self.statements.append)


def _batched(
    store: SQLiteStore, works: list[Callable[[UnitOfWork], Any]]
) -> tuple[list[tuple[str, Any]], list[str]]:
    """Run `works` from one thread each, all in the batch after a gate; each caller's
    ("ok", result) or ("error", exception), and the statements of that batch."""
    gate = Gate(store, len(works))
    gate_thread = threading.Thread(target=store.run, args=(gate,))
    gate_thread.start()
    assert gate.entered.wait(timeout=DEADLINE_SECONDS)
    outcomes: list[tuple[str, Any]] = [("none", None)] * len(works)

    def call(index: int) -> None:
        try:
            outcomes[index] = ("ok", store.run(works[index]))
        except Exception as error:
            outcomes[index] = ("error", error)

    threads = [threading.Thread(target=call, args=(index,)) for index in range(len(works))]
    for thread in threads:
        thread.start()
    for thread in [gate_thread, *threads]:
        thread.join(timeout=DEADLINE_SECONDS)
    statements = list(gate.statements)
    assert statements[:1] == ["COMMIT"]  # the gate's own batch
    return outcomes, statements[1:]


def _setter(key: str, fail: bool = False) -> Callable[[UnitOfWork], str]:
    def work(tx: UnitOfWork) -> str:
        tx.meta.set(key, "set")
        if fail:
            raise RuntimeError(f"work {key} failed after writing")
        return key

    return work


def _meta(store: SQLiteStore, keys: list[str]) -> dict[str, str | None]:
    with store.read() as tx:
        return {key: tx.meta.get(key) for key in keys}


def test_a_failing_work_in_a_batch_leaves_no_trace_and_the_others_commit(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "ledger.db")
    keys = ["a", "b", "c", "d"]
    outcomes, statements = _batched(store, [_setter(k, fail=k in ("b", "d")) for k in keys])
    by_key = dict(zip(keys, outcomes, strict=True))
    assert by_key["a"] == ("ok", "a") and by_key["c"] == ("ok", "c")
    for failed in ("b", "d"):
        kind, error = by_key[failed]
        assert kind == "error" and isinstance(error, RuntimeError)
        assert str(error) == f"work {failed} failed after writing"
    assert _meta(store, keys) == {"a": "set", "b": None, "c": "set", "d": None}
    # One transaction for the four works: one savepoint each, two rolled back, one COMMIT.
    assert statements.count("BEGIN IMMEDIATE") == 1
    assert statements.count("SAVEPOINT work") == 4
    assert statements.count("ROLLBACK TO work") == 2
    assert statements.count("COMMIT") == 1 and statements[-1] == "COMMIT"
    store.close()


def test_a_store_error_in_one_work_is_that_callers_alone(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "ledger.db")

    def duplicate(tx: UnitOfWork) -> None:
        tx.meta.set("dup", "first")
        raise sqlite3.IntegrityError("UNIQUE constraint failed: simulated")

    outcomes, _ = _batched(store, [_setter("x"), duplicate, _setter("y")])
    assert outcomes[0] == ("ok", "x") and outcomes[2] == ("ok", "y")
    kind, error = outcomes[1]
    assert kind == "error" and isinstance(error, StoreError)  # translated, never raw sqlite3
    assert _meta(store, ["x", "y", "dup"]) == {"x": "set", "y": "set", "dup": None}
    store.close()


def test_a_crash_before_the_batch_commit_loses_the_whole_batch_and_answers_nobody(
    tmp_path: Path,
) -> None:
    database = tmp_path / "ledger.db"
    policy = (
        "rules:\n  - {id: pay, effect: allow, actions: ['payments.*']}\n"
        "budgets:\n  - {id: daily, limit: '1000.00', currency: USD, window: day}\n"
    )
    Warden.open(policy, database=database).close()
    config = {"policy": policy, "database": str(database), "now": NOW, "count": 12}
    done = subprocess.run(
        [sys.executable, str(WORKER), "crash_batch", json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    events = [json.loads(line)["event"] for line in done.stdout.splitlines() if line]
    assert done.returncode == -9, done.stderr
    assert events == ["killing"]  # killed at the batch's COMMIT, and nobody was answered
    with Warden.open(policy, database=database, clock=FrozenClock(NOW)) as warden:
        assert warden.verify_audit().ok
        with warden.runtime.store.read() as tx:
            assert tx.meta.get("gate") == "committed"  # the batch before it is on disk
    connection = sqlite3.connect(database)
    try:
        assert connection.execute("SELECT COUNT(*) FROM holds").fetchone() == (0,)
        assert connection.execute("SELECT COUNT(*) FROM decisions").fetchone() == (0,)
        assert connection.execute(
            "SELECT COUNT(*) FROM budget_counters WHERE held_minor > 0 OR spent_minor > 0"
        ).fetchone() == (0,)
    finally:
        connection.close()


BUDGETS_POLICY = """
currency: USD
rules:
  - {id: pay, effect: allow, actions: ["payments.*"]}
budgets:
  - {id: shared, limit: "1000.00", currency: USD, window: day}
  - {id: per-agent, limit: "300.00", currency: USD, window: day, scope: agent}
"""


def _intents(seed: int) -> list[PaymentIntent]:
    """For each of 8 agents: 24 intents of 40.00, 3 more under idempotency keys each sent twice
    (one decided, one replayed), and two for different payees under one key (one decided, one
    a conflict); shuffled. Every amount is the same, so the totals do not depend on order."""
    made: list[PaymentIntent] = []
    for agent in range(8):
        made.extend(_intent(agent, None) for _ in range(24))
        for key in range(3):
            made.extend([_intent(agent, f"k-{agent}-{key}")] * 2)
        made.append(_intent(agent, f"k-{agent}-x"))
        made.append(_intent(agent, f"k-{agent}-x", "other.example.com"))
    random.Random(seed).shuffle(made)
    return made


def _intent(agent: int, key: str | None, recipient: str = "vendor.example.com") -> PaymentIntent:
    return PaymentIntent(
        agent=f"agent-{agent}",
        action="payments.transfer",
        amount="40.00",
        currency="USD",
        recipient=recipient,
        idempotency_key=key,
    )


def _decide_all(warden: Warden, intents: list[PaymentIntent], threads: int) -> list[str]:
    outcomes: list[str] = []
    lock = threading.Lock()
    jobs = list(intents)

    def loop() -> None:
        while True:
            with lock:
                if not jobs:
                    return
                intent = jobs.pop()
            try:
                decision = warden.authorize(intent)
                outcome = "replayed" if decision.replayed else decision.reason_code
            except IdempotencyConflictError:
                outcome = "conflict"
            with lock:
                outcomes.append(outcome)

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    return sorted(outcomes)


def _ledger(database: Path) -> dict[str, Any]:
    connection = sqlite3.connect(database)
    try:
        counters = connection.execute(
            "SELECT budget_id, scope_key, spent_minor, held_minor FROM budget_counters"
        ).fetchall()
        holds = connection.execute("SELECT agent, amount_minor FROM holds WHERE state = 'held'")
        held_by_agent: dict[str, int] = {}
        for agent, amount in holds.fetchall():
            held_by_agent[agent] = held_by_agent.get(agent, 0) + amount
    finally:
        connection.close()
    return {"counters": sorted(counters), "held_by_agent": held_by_agent}


def test_batched_decisions_from_many_threads_keep_every_budget_exact(tmp_path: Path) -> None:
    intents = _intents(seed=14)
    results = {}
    for threads in (1, 16):
        database = tmp_path / f"ledger-{threads}.db"
        with Warden.open(BUDGETS_POLICY, database=database, clock=FrozenClock(NOW)) as warden:
            results[threads] = (_decide_all(warden, intents, threads), _ledger(database))
    (sequential, ledger_1), (batched, ledger_16) = results[1], results[16]
    assert batched == sequential  # the same outcomes, in whatever order they were decided
    assert sequential.count("allowed") == 25 and sequential.count("budget_exceeded") == 199
    assert sequential.count("replayed") == 24 and sequential.count("conflict") == 8
    shared = [row for row in ledger_16["counters"] if row[0] == "shared"]
    assert shared == [r for r in ledger_1["counters"] if r[0] == "shared"]
    assert shared[0][2:] == (0, 100_000)  # exactly the limit held, never more
    for budget, agent, spent, held in ledger_16["counters"]:
        if budget == "per-agent":
            assert spent == 0 and held <= 30_000
            assert held == ledger_16["held_by_agent"].get(agent, 0)  # conservation


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(failing=st.lists(st.booleans(), min_size=1, max_size=12))
def test_any_mix_of_failing_works_commits_exactly_the_others(
    tmp_path_factory: pytest.TempPathFactory, failing: list[bool]
) -> None:
    store = SQLiteStore(tmp_path_factory.mktemp("batch") / "ledger.db")
    keys = [f"w{index}" for index in range(len(failing))]
    outcomes, statements = _batched(
        store, [_setter(key, fail) for key, fail in zip(keys, failing, strict=True)]
    )
    assert [kind for kind, _ in outcomes] == ["error" if fail else "ok" for fail in failing]
    expected = {key: (None if fail else "set") for key, fail in zip(keys, failing, strict=True)}
    assert _meta(store, keys) == expected
    assert statements.count("COMMIT") + statements.count("ROLLBACK") == 1  # one transaction
    store.close()


def test_write_blocks_join_batches_and_roll_back_alone(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "ledger.db")
    with store.write() as tx:
        tx.meta.set("written", "yes")
    with pytest.raises(RuntimeError, match="block failed"), store.write() as tx:
        tx.meta.set("rolled-back", "yes")
        raise RuntimeError("block failed")
    assert store.run(lambda tx: tx.meta.get("written")) == "yes"
    assert _meta(store, ["rolled-back"]) == {"rolled-back": None}
    store.close()


def test_a_transaction_cannot_open_another(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "ledger.db")
    with pytest.raises(StoreError, match="cannot open another"), store.write():
        store.run(lambda tx: None)
    with pytest.raises(StoreError, match="cannot open another"):
        store.run(lambda tx: store.run(lambda inner: None))
    store.run(lambda tx: tx.meta.set("after", "ok"))  # the writer is still serving
    assert _meta(store, ["after"]) == {"after": "ok"}
    store.close()


def test_a_closed_store_serves_what_was_queued_and_reopens_on_use(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "ledger.db")
    store.run(lambda tx: tx.meta.set("before", "ok"))
    store.close()
    assert store.run(lambda tx: tx.meta.get("before")) == "ok"  # a new writer, same file
    store.close()


@pytest.mark.parametrize("setting", ["queue_max", "batch_max"])
@pytest.mark.parametrize("value", [0, -1, True, 1.5])
def test_queue_settings_must_be_positive_whole_numbers(
    tmp_path: Path, setting: str, value: object
) -> None:
    with pytest.raises(ValueError, match=setting):
        SQLiteStore(tmp_path / "ledger.db", **{setting: value})  # type: ignore[arg-type]
    assert not (tmp_path / "ledger.db").exists()  # refused before anything was created
