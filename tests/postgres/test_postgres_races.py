"""Worker processes racing on one PostgreSQL database, each with its own Warden (its own pool).

Nothing but PostgreSQL serialises them: one budget (exactly the allowed count, never an
overspend), one velocity limit (exactly its count), one idempotency key (one decision), one
approval (used once), one grant (its uses and total never exceeded). After each race the audit
chain is one linear, verifiable log. Sized for two cores: 16 processes, about a minute in all.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from collections import Counter
from typing import Any

import pytest

from paywarden import FrozenClock, Warden
from paywarden.adapters.storage.postgres_audit import audit_entries, verify_database
from paywarden.testing import example_intent
from support.wardens import grant_request
from support.workers import reaped, reports

WORKERS = 16
NOW = "2026-03-10T15:00:00+00:00"
POLICY = """
currency: USD
rules:
  - id: review
    effect: require_approval
    actions: ["payments.*"]
    amount: {gt: 500}
  - id: allow-payments
    effect: allow
    actions: ["payments.*"]
budgets:
  - id: shared-daily
    limit: "LIMIT"
    currency: USD
    window: day
"""
TIGHT = POLICY.replace("LIMIT", "1000.00")
ROOMY = POLICY.replace("LIMIT", "100000.00")
# No budget: nothing but the velocity window serialises these decisions.
BURST = """
currency: USD
rules:
  - id: allow-payments
    effect: allow
    actions: ["payments.*"]
velocity:
  - id: burst
    max_count: 40
    window: 1m
    scope: agent
"""

pytestmark = pytest.mark.slow

Result = tuple[str, str, str | None, str | None, str | None]


def _worker(
    index: int,
    database: str,
    policy: str,
    scenario: str,
    attempts: int,
    barrier: Any,
    results: Any,
    key_secret: str,
) -> None:
    """One racer: its own Warden on the shared database; waits for the others, then attempts.
    The forkserver may have started before this test set the shared key secret (another test
    file starts it), so the secret is passed along, not inherited."""
    os.environ["PAYWARDEN_KEY_SECRET"] = key_secret
    try:
        done: list[Result] = []
        with Warden.open(
            policy, database=database, clock=FrozenClock(NOW), busy_timeout_seconds=30
        ) as warden:
            barrier.wait(timeout=120)
            for number in range(attempts):
                decision = warden.authorize(_intent(scenario, index, number))
                done.append(
                    (
                        decision.outcome,
                        decision.reason_code,
                        decision.decision_id,
                        decision.approval_id,
                        decision.hold_id,
                    )
                )
        results.put((index, done, None))
    except BaseException:  # report every failure to the parent instead of hanging it
        results.put((index, [], traceback.format_exc()))


def _intent(scenario: str, index: int, number: int) -> Any:
    if scenario == "budget":
        return example_intent("40.00", agent=f"racer-{index}", purpose=f"attempt {number}")
    if scenario == "idempotency":
        return example_intent("10.00", idempotency_key="one-key")
    if scenario == "velocity":
        # One agent; amounts differ, so no two intents share an approval binding (whose lock
        # would serialise them): only the velocity window does.
        return example_intent(f"{10 + index}.{number:02d}")
    if scenario == "approval":
        return example_intent("600.00")  # the very intent that was approved
    return example_intent("600.00", recipient=f"v{index}-{number}.example.com")  # grant


def _race(
    database: str, policy: str, scenario: str, attempts: int = 1
) -> tuple[list[Result], list[str]]:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", "paywarden.warden"])
    barrier = context.Barrier(WORKERS)
    results = context.Queue()
    processes = [
        context.Process(
            target=_worker,
            args=(
                index,
                database,
                policy,
                scenario,
                attempts,
                barrier,
                results,
                os.environ["PAYWARDEN_KEY_SECRET"],
            ),
        )
        for index in range(WORKERS)
    ]
    for process in processes:
        process.start()
    with reaped(processes, results, join_seconds=30):
        done, errors = reports(processes, results, 120, "a racer")
    return done, errors


def _assert_one_linear_chain(database: str) -> None:
    result = verify_database(database)
    assert result.ok, result.describe()
    assert [entry.seq for entry in audit_entries(database)] == list(range(1, result.head_seq + 1))


def test_racers_on_one_budget_get_exactly_what_fits(pg_database: str, key_secret: str) -> None:
    Warden.open(TIGHT, database=pg_database).close()  # the schema, once
    done, errors = _race(pg_database, TIGHT, "budget", attempts=8)
    assert not errors, errors[0]
    codes = Counter(reason for _, reason, *_ in done)
    assert len(done) == WORKERS * 8
    assert codes == {"allowed": 25, "budget_exceeded": WORKERS * 8 - 25}  # 1000 / 40
    with Warden.open(TIGHT, database=pg_database, clock=FrozenClock(NOW)) as warden:
        [budget] = warden.budgets()
    assert (budget.spent_minor, budget.held_minor) == (0, 100_000)  # never over the limit
    _assert_one_linear_chain(pg_database)


def test_racers_with_one_idempotency_key_get_one_decision(
    pg_database: str, key_secret: str
) -> None:
    Warden.open(TIGHT, database=pg_database).close()
    done, errors = _race(pg_database, TIGHT, "idempotency")
    assert not errors, errors[0]
    assert {(outcome, decision_id, hold_id) for outcome, _, decision_id, _, hold_id in done} == {
        (done[0][0], done[0][2], done[0][4])
    }
    assert done[0][0] == "allow"
    with Warden.open(TIGHT, database=pg_database, clock=FrozenClock(NOW)) as warden:
        [budget] = warden.budgets()
    assert budget.held_minor == 1_000  # held once
    decisions = [e for e in audit_entries(pg_database) if e.kind == "decision"]
    assert len(decisions) == 1
    _assert_one_linear_chain(pg_database)


def test_racers_for_one_approved_intent_use_the_approval_once(
    pg_database: str, key_secret: str
) -> None:
    with Warden.open(ROOMY, database=pg_database, clock=FrozenClock(NOW)) as warden:
        warden.add_operator("alice", name="Alice")
        pending = warden.authorize(example_intent("600.00"))
        assert pending.outcome == "require_approval" and pending.approval_id is not None
        warden.approve(pending.approval_id, operator="alice", reason="ok")
    done, errors = _race(pg_database, ROOMY, "approval")
    assert not errors, errors[0]
    allowed = [row for row in done if row[0] == "allow"]
    assert [(row[1], row[3]) for row in allowed] == [("approved", pending.approval_id)]
    waiting = {row[3] for row in done if row[0] == "require_approval"}
    assert len(waiting) == 1 and pending.approval_id not in waiting  # one new request, shared
    assert len(done) == WORKERS
    consumed = [e for e in audit_entries(pg_database) if e.kind == "approval.consumed"]
    assert len(consumed) == 1
    _assert_one_linear_chain(pg_database)


def test_racers_never_take_a_grant_past_its_uses(pg_database: str, key_secret: str) -> None:
    with Warden.open(ROOMY, database=pg_database, clock=FrozenClock(NOW)) as warden:
        warden.add_operator("alice", name="Alice")
        grant = warden.grant(grant_request("600.00", "6000.00", uses_max=3), operator="alice")
    done, errors = _race(pg_database, ROOMY, "grant", attempts=2)
    assert not errors, errors[0]
    codes = Counter(reason for _, reason, *_ in done)
    assert codes["allowed_by_grant"] == 3
    # The rest wait for a person, up to the agent's queue cap (20 by default), exactly.
    assert codes["approval_required"] == 20
    assert codes["approval_queue_full"] == WORKERS * 2 - 3 - 20
    with Warden.open(ROOMY, database=pg_database, clock=FrozenClock(NOW)) as warden:
        [row] = warden.grants()
    assert (row.grant_id, row.uses, row.used_minor) == (grant.grant_id, 3, 180_000)
    _assert_one_linear_chain(pg_database)


def test_racers_against_one_velocity_limit_get_exactly_its_count(
    pg_database: str, key_secret: str
) -> None:
    Warden.open(BURST, database=pg_database).close()
    done, errors = _race(pg_database, BURST, "velocity", attempts=4)
    assert not errors, errors[0]
    outcomes = Counter(outcome for outcome, *_ in done)
    assert outcomes == {"allow": 40, "deny": WORKERS * 4 - 40}  # max_count 40 a minute
    assert len({reason for outcome, reason, *_ in done if outcome == "deny"}) == 1
    _assert_one_linear_chain(pg_database)
