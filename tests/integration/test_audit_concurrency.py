"""Concurrent writers build one linear audit chain (catalog AU-06, scaled down).

8 threads x 250 decisions (each thread with its own Warden) and 4 processes x 250 decisions
(multiprocessing `spawn`, each process with its own Warden) on one SQLite file. Afterwards the
log must be exactly one chain: sequence numbers 1..N without gaps, no two entries sharing a
parent hash, exactly one `decision` entry per decision made, and a clean verification.
"""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import threading
import traceback
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from paywarden import FrozenClock, PaymentIntent, Warden
from paywarden.adapters.storage.sqlite_audit import iter_audit_readonly
from paywarden.audit.chain import AuditEntry, verify
from paywarden.testing import example_intent
from support.workers import reaped, reports, run_threads

START = "2026-03-10T15:00:00+00:00"
POLICY = """
currency: USD
rules:
  - id: allow-payments
    effect: allow
    actions: ["payments.*"]
budgets:
  - id: daily
    limit: "100000.00"
    window: day
"""

pytestmark = pytest.mark.slow


def _intent(worker: int, number: int) -> PaymentIntent:
    return example_intent(
        "1.00", agent=f"worker-{worker}", purpose=f"worker {worker} payment {number}"
    )


def _decide(database: str, worker: int, count: int, barrier: Any) -> list[tuple[str, str]]:
    """One writer: its own Warden on the shared file; waits for the others, then decides."""
    outcomes: list[tuple[str, str]] = []
    with Warden.open(
        POLICY, database=database, clock=FrozenClock(START), busy_timeout_seconds=120
    ) as warden:
        barrier.wait(timeout=120)
        for number in range(count):
            decision = warden.authorize(_intent(worker, number))
            outcomes.append((decision.outcome, decision.reason_code))
    return outcomes


def _process_worker(database: str, worker: int, count: int, barrier: Any, results: Any) -> None:
    try:
        results.put((worker, _decide(database, worker, count, barrier), None))
    except BaseException:  # report to the parent instead of leaving it waiting
        results.put((worker, [], traceback.format_exc()))


def _assert_one_chain(database: Path, decisions: int) -> list[AuditEntry]:
    log = list(iter_audit_readonly(database))
    result = verify(log)
    assert result.ok, result
    assert [entry.seq for entry in log] == list(range(1, len(log) + 1))
    parents = Counter(entry.parent_hash for entry in log)
    assert parents.most_common(1)[0][1] == 1  # no fork: every parent has one child
    kinds = Counter(entry.kind for entry in log)
    assert kinds == {"policy.loaded": 1, "decision": decisions}
    refs = [entry.ref_id for entry in log if entry.kind == "decision"]
    assert len(set(refs)) == decisions
    # Every decision row has its entry, and every entry its row.
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        indexed = dict(db.execute("SELECT decision_id, audit_seq FROM decisions").fetchall())
        holds = db.execute("SELECT COUNT(*) FROM holds").fetchone()[0]
        held = db.execute("SELECT held_minor FROM budget_counters").fetchone()[0]
    assert indexed == {entry.ref_id: entry.seq for entry in log if entry.kind == "decision"}
    assert holds == decisions and held == decisions * 100
    return log


def _prepare(database: Path) -> None:
    """Create the schema and record the policy once, before the writers start."""
    Warden.open(POLICY, database=database, clock=FrozenClock(START)).close()


def test_8_threads_x_250_decisions_make_one_chain(database: Path) -> None:
    threads_count, per_thread = 8, 250
    _prepare(database)
    barrier = threading.Barrier(threads_count)
    outcomes: dict[int, list[tuple[str, str]]] = {}
    errors: list[str] = []

    def run(worker: int) -> None:
        try:
            outcomes[worker] = _decide(str(database), worker, per_thread, barrier)
        except BaseException:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=run, args=(worker,)) for worker in range(threads_count)]
    run_threads(threads, 300)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors[0]
    decided = [outcome for worker in sorted(outcomes) for outcome in outcomes[worker]]
    assert Counter(decided) == {("allow", "allowed"): threads_count * per_thread}
    log = _assert_one_chain(database, threads_count * per_thread)
    agents = Counter(json.loads(entry.body)["intent"]["agent"] for entry in log[1:])
    assert agents == {f"worker-{worker}": per_thread for worker in range(threads_count)}


def test_4_processes_x_250_decisions_make_one_chain(database: Path) -> None:
    processes_count, per_process = 4, 250
    _prepare(database)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes_count)
    results = context.Queue()
    processes = [
        context.Process(
            target=_process_worker,
            args=(str(database), worker, per_process, barrier, results),
            daemon=True,
        )
        for worker in range(processes_count)
    ]
    for process in processes:
        process.start()
    with reaped(processes, results, join_seconds=60):
        outcomes, errors = reports(processes, results, 300, "a writer process")
    assert not errors, errors[0]
    assert all(process.exitcode == 0 for process in processes)
    assert Counter(outcomes) == {("allow", "allowed"): processes_count * per_process}
    log = _assert_one_chain(database, processes_count * per_process)
    agents = Counter(json.loads(entry.body)["intent"]["agent"] for entry in log[1:])
    assert agents == {f"worker-{worker}": per_process for worker in range(processes_count)}


def test_a_warden_shared_by_threads_builds_one_chain_and_closes(database: Path) -> None:
    warden = Warden.open(POLICY, database=database, clock=FrozenClock(START))
    try:
        barrier = threading.Barrier(4)

        def run(worker: int) -> None:
            barrier.wait(timeout=60)
            for number in range(25):
                warden.authorize(_intent(worker, number))

        threads = [threading.Thread(target=run, args=(worker,)) for worker in range(4)]
        run_threads(threads, 120)
        _assert_one_chain(database, 100)
    finally:
        warden.close()
