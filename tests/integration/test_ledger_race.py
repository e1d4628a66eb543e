"""64 worker processes racing one budget in one SQLite file (catalog CB-01, CB-04).

Each worker is its own process with its own `Warden.open(policy, database=file)`, so nothing but
the database file serialises them. 2,000 attempts of 40.00 USD against a 1,000.00 USD budget must
allow exactly 25, deny the rest with `budget_exceeded`, and leave a ledger whose counters equal
its holds (conservation). A second run settles every hold at once (full capture, partial capture
or void, chosen by a seeded generator) and checks spent and held separately.

Workers come from a `forkserver` that preloads paywarden, so 64 processes start in well under a
second each instead of re-importing everything.
"""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from paywarden import FrozenClock, Warden
from paywarden.testing import example_intent
from support.audit import bodies
from support.workers import reaped, reports

WORKERS = 64
ATTEMPTS = 2_000
AMOUNT = "40.00"
AMOUNT_MINOR = 4_000
LIMIT_MINOR = 100_000
NOW = "2026-03-10T15:00:00+00:00"
POLICY = """
currency: USD
timezone: America/New_York
rules:
  - id: allow-payments
    effect: allow
    actions: ["payments.*"]
budgets:
  - id: shared-daily
    limit: "1000.00"
    currency: USD
    window: day
"""

pytestmark = pytest.mark.slow


@dataclass(frozen=True, slots=True)
class Attempt:
    outcome: str
    reason_code: str
    hold_id: str | None
    settled: str | None  # "captured", "partial:<minor>" or "voided"


def _shares(total: int, workers: int) -> list[int]:
    base, extra = divmod(total, workers)
    return [base + (1 if index < extra else 0) for index in range(workers)]


def _worker(
    index: int,
    database: str,
    attempts: int,
    settle: bool,
    seed: int,
    barrier: Any,
    results: Any,
) -> None:
    """One racer: open a Warden on the shared file, wait for the others, then attempt."""
    try:
        rng = random.Random(seed * 1_000 + index)
        done: list[Attempt] = []
        with Warden.open(
            POLICY, database=database, clock=FrozenClock(NOW), busy_timeout_seconds=30
        ) as warden:
            barrier.wait(timeout=120)
            for number in range(attempts):
                decision = warden.authorize(
                    example_intent(AMOUNT, agent=f"racer-{index}", purpose=f"attempt {number}")
                )
                settled = None
                if settle and decision.hold_id is not None:
                    choice = rng.randrange(3)
                    if choice == 0:
                        warden.capture(decision.hold_id)
                        settled = "captured"
                    elif choice == 1:
                        part = rng.randint(1, AMOUNT_MINOR - 1)
                        warden.capture(decision.hold_id, f"{part // 100}.{part % 100:02d}")
                        settled = f"partial:{part}"
                    else:
                        warden.void(decision.hold_id)
                        settled = "voided"
                done.append(
                    Attempt(decision.outcome, decision.reason_code, decision.hold_id, settled)
                )
        results.put((index, done, None))
    except BaseException:  # report every failure to the parent instead of hanging it
        results.put((index, [], traceback.format_exc()))


def _race(database: Path, *, settle: bool, seed: int = 20260310) -> tuple[list[Attempt], float]:
    # Create the schema once, so the racers do not all migrate at the same moment.
    Warden.open(POLICY, database=database).close()
    context = multiprocessing.get_context("forkserver")
    # Fork racers from a server that already imported the test runner and paywarden.
    context.set_forkserver_preload(["__main__", "paywarden.warden"])
    barrier = context.Barrier(WORKERS + 1)
    results = context.Queue()
    processes = [
        context.Process(
            target=_worker,
            args=(index, str(database), share, settle, seed, barrier, results),
            daemon=True,
        )
        for index, share in enumerate(_shares(ATTEMPTS, WORKERS))
    ]
    for process in processes:
        process.start()
    with reaped(processes, results, join_seconds=30):
        barrier.wait(timeout=120)
        started = time.monotonic()
        attempts, errors = reports(processes, results, 120, "a racer")
        elapsed = time.monotonic() - started
    assert not errors, "\n".join(errors)
    assert all(process.exitcode == 0 for process in processes)
    assert len(attempts) == ATTEMPTS
    return attempts, elapsed


def _ledger(database: Path) -> dict[str, Any]:
    """Everything the invariants need, read straight from the file with plain sqlite3."""
    connection = sqlite3.connect(database)
    try:
        counters = connection.execute(
            "SELECT budget_id, scope_key, window_start_us, spent_minor, held_minor"
            " FROM budget_counters"
        ).fetchall()
        holds = connection.execute(
            "SELECT hold_id, state, amount_minor, captured_minor FROM holds"
        ).fetchall()
        indexed = connection.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
    finally:
        connection.close()
    recorded = Counter(
        (body["decision"]["outcome"], body["decision"]["reason_code"])
        for body in bodies(database, "decision")
    )
    assert sum(recorded.values()) == indexed  # every decision indexed, none twice
    return {
        "counters": counters,
        "holds": {row[0]: row[1:] for row in holds},
        "decisions": dict(recorded),
    }


def _assert_conserved(ledger: dict[str, Any]) -> tuple[int, int]:
    """Counter spent + held equals captured amounts plus open holds; no counter over limit."""
    counters = ledger["counters"]
    assert len(counters) == 1, counters
    _budget, _scope, _window, spent, held = counters[0]
    holds = ledger["holds"].values()
    open_held = sum(amount for state, amount, _captured in holds if state == "held")
    captured = sum(captured or 0 for state, _amount, captured in holds if state == "captured")
    assert 0 <= spent <= LIMIT_MINOR
    assert 0 <= held <= LIMIT_MINOR
    assert spent + held <= LIMIT_MINOR
    assert held == open_held
    assert spent == captured
    assert spent + held == open_held + captured
    return spent, held


def test_64_processes_racing_one_budget_allow_exactly_25_and_never_overspend(
    tmp_path: Path,
) -> None:
    database = tmp_path / "race.db"
    attempts, elapsed = _race(database, settle=False)

    allowed = [a for a in attempts if a.outcome == "allow"]
    denied = [a for a in attempts if a.outcome != "allow"]
    assert len(allowed) == LIMIT_MINOR // AMOUNT_MINOR == 25
    assert {(a.outcome, a.reason_code) for a in denied} == {("deny", "budget_exceeded")}
    assert len({a.hold_id for a in allowed}) == 25
    assert all(a.hold_id is None for a in denied)

    ledger = _ledger(database)
    spent, held = _assert_conserved(ledger)
    assert (spent, held) == (0, LIMIT_MINOR)
    assert len(ledger["holds"]) == 25
    assert set(ledger["holds"]) == {a.hold_id for a in allowed}
    assert all(state == "held" for state, _amount, _c in ledger["holds"].values())
    # One recorded decision per attempt; every acknowledged allow is in the ledger.
    assert ledger["decisions"] == {("allow", "allowed"): 25, ("deny", "budget_exceeded"): 1975}
    print(f"\n{ATTEMPTS} attempts by {WORKERS} processes decided in {elapsed:.2f} s")


def test_64_processes_settling_holds_at_once_keep_spent_and_held_conserved(
    tmp_path: Path,
) -> None:
    database = tmp_path / "race-settle.db"
    attempts, elapsed = _race(database, settle=True)

    allowed = [a for a in attempts if a.outcome == "allow"]
    denied = [a for a in attempts if a.outcome != "allow"]
    assert {(a.outcome, a.reason_code) for a in denied} <= {("deny", "budget_exceeded")}
    assert all(a.settled is not None for a in allowed)
    full = sum(1 for a in allowed if a.settled == "captured")
    partial = [int(a.settled.split(":")[1]) for a in allowed if a.settled.startswith("partial")]
    voided = sum(1 for a in allowed if a.settled == "voided")
    assert full + len(partial) + voided == len(allowed)
    # Released amounts were reused: more than 25 allows fit in a budget of 25.
    assert len(allowed) > 25
    expected_spent = full * AMOUNT_MINOR + sum(partial)

    ledger = _ledger(database)
    spent, held = _assert_conserved(ledger)
    assert held == 0  # every hold was settled by its own worker
    assert spent == expected_spent <= LIMIT_MINOR
    assert len(ledger["holds"]) == len(allowed)
    by_state: dict[str, int] = {}
    for state, _amount, _captured in ledger["holds"].values():
        by_state[state] = by_state.get(state, 0) + 1
    assert by_state == {
        state: count
        for state, count in (("captured", full + len(partial)), ("voided", voided))
        if count
    }
    for attempt in allowed:
        state, amount, captured = ledger["holds"][attempt.hold_id]
        assert amount == AMOUNT_MINOR
        if attempt.settled == "captured":
            assert (state, captured) == ("captured", AMOUNT_MINOR)
        elif attempt.settled == "voided":
            assert (state, captured) == ("voided", None)
        else:
            assert (state, captured) == ("captured", int(attempt.settled.split(":")[1]))
    print(f"\n{ATTEMPTS} attempts with settlement by {WORKERS} processes in {elapsed:.2f} s")
