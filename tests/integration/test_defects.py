"""Defects found by the hostile review (issue 12, section 4), each pinned by a test.

1. The circuit breaker's half-open state lets exactly one probe through, across threads, across
   Wardens on one SQLite file and across processes; a probe whose process died is replaced
   after one more cool-down.
2. Reconciling with an in-memory sandbox that never saw a key answers `unknown`, never
   `failed`: money that moved keeps its hold.
3. A blank approval reason is bad input, refused before anything else, changing nothing.
5. `refund` takes an amount in major units of the payment's currency, never "15.00 USD".
6. Budget agent filters are case-sensitive, like rules.
7. `halt` returns the halt of the scope it was asked for.

Method: real Wardens on SQLite files under `tmp_path` with frozen clocks; rails that block
until released, so the half-open window is held open while others race it. The
multi-process tests run this file as a worker script (`python test_defects.py CONFIG`).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paywarden import FrozenClock, InvalidInputError, Warden, limits
from paywarden.actions.payments import PaymentOutcome
from paywarden.adapters.rails.sandbox import NOT_RECEIVED, NOT_SEEN, SCENARIOS, SandboxRail
from paywarden.adapters.storage.sqlite_audit import iter_audit_readonly
from paywarden.clock import to_us
from paywarden.errors import ApprovalExpiredError, InvalidAmountError
from paywarden.payee import parse_payee
from paywarden.rails import RailPayment, Receipt
from paywarden.testing import example_intent

POLICY = """
currency: USD
approvals:
  ttl: 15m
rules:
  - {id: review, effect: require_approval, actions: ["payments.review"]}
  - {id: pay, effect: allow, actions: ["payments.*"]}
budgets:
  - {id: daily, limit: 100000, window: day}
"""
START = "2026-01-05T12:00:00+00:00"
COOLDOWN = limits.breaker_cooldown_seconds
WAIT_SECONDS = 60.0  # a bound on waiting for threads or processes, never reached when correct


def _noop(seconds: float) -> None:
    return None


def _open(database: Path, clock: FrozenClock, rail: Any, policy: str = POLICY) -> Warden:
    return Warden.open(
        policy,
        database=database,
        clock=clock,
        rails={"sandbox": rail},
        sleep=_noop,
        busy_timeout_seconds=30,
    )


def _open_breaker(warden: Warden) -> None:
    """Five unknown outcomes in a row: the sandbox rail's breaker opens."""
    for _ in range(limits.breaker_failures_max):
        warden.pay(example_intent("1.00", metadata={"sandbox_scenario": "timeout_after_send"}))
    assert warden.breaker("sandbox").state == "open"


def _held_minor(warden: Warden) -> int:
    return sum(row.held_minor for row in warden.budgets())


def _refused_by_breaker(outcome: PaymentOutcome) -> bool:
    return (
        outcome.payment is not None
        and outcome.state == "failed"
        and "circuit breaker" in str(outcome.payment.error)
    )


class GatedRail(SandboxRail):
    """A sandbox whose `pay` waits for `release` while `gating` is on, counting those calls."""

    def __init__(self) -> None:
        super().__init__(sleep=_noop)
        self.gating = False
        self.gated_calls = 0
        self.release = threading.Event()
        self._count_lock = threading.Lock()

    def pay(self, payment: RailPayment) -> Receipt:
        if self.gating:
            with self._count_lock:
                self.gated_calls += 1
            self.release.wait(WAIT_SECONDS)
        return super().pay(payment)


# 1. The breaker: one probe ---------------------------------------------------------------------


@pytest.mark.parametrize("warden_count", [1, 6])
def test_half_open_lets_exactly_one_probe_through_concurrent_payments(
    warden_count: int, database: Path, clock: FrozenClock
) -> None:
    """Twelve payments race the half-open breaker, from one Warden or from six Wardens on one
    SQLite file; the probe is held inside the rail until every other payment has answered."""
    rail = GatedRail()
    racers = 12
    with ExitStack() as stack:
        wardens = [stack.enter_context(_open(database, clock, rail)) for _ in range(warden_count)]
        _open_breaker(wardens[0])
        held_before = _held_minor(wardens[0])  # the five unknown payments keep their holds
        clock.advance(COOLDOWN)
        rail.gating = True
        results: queue.Queue[PaymentOutcome] = queue.Queue()
        barrier = threading.Barrier(racers)

        def race(number: int) -> None:
            barrier.wait()
            results.put(wardens[number % warden_count].pay(example_intent("2.00")))

        threads = [threading.Thread(target=race, args=(n,)) for n in range(racers)]
        for thread in threads:
            thread.start()
        answered: list[PaymentOutcome] = []
        try:
            for _ in range(racers - 1):  # all but the probe answer while the probe is held
                answered.append(results.get(timeout=WAIT_SECONDS))
        except queue.Empty:
            pass
        finally:
            rail.release.set()
            for thread in threads:
                thread.join(WAIT_SECONDS)
        assert rail.gated_calls == 1, f"{rail.gated_calls} payments reached the half-open rail"
        assert len(answered) == racers - 1 and all(map(_refused_by_breaker, answered))
        probe = results.get_nowait()
        assert probe.state == "settled"
        assert wardens[0].breaker("sandbox").state == "closed"
        assert _held_minor(wardens[0]) == held_before  # each refused payment released its hold
        kinds = [entry.kind for entry in wardens[0].audit_trail("sandbox")]
        assert kinds.count("breaker.half_open") == 1 and kinds[-1] == "breaker.closed"


def test_a_failed_probe_opens_the_breaker_for_another_full_cooldown(
    database: Path, clock: FrozenClock
) -> None:
    rail = SandboxRail(sleep=_noop)
    with _open(database, clock, rail) as warden:
        _open_breaker(warden)
        probe_time = clock.advance(COOLDOWN)
        failed_probe = warden.pay(
            example_intent("2.00", metadata={"sandbox_scenario": "timeout_after_send"})
        )
        assert failed_probe.state == "unknown"
        breaker = warden.breaker("sandbox")
        assert (breaker.state, breaker.opened_us) == ("open", to_us(probe_time))
        calls = len(rail.calls)
        clock.advance(COOLDOWN - 1)
        assert _refused_by_breaker(warden.pay(example_intent("2.00")))
        assert len(rail.calls) == calls
        clock.advance(1)
        assert warden.pay(example_intent("2.00")).state == "settled"
        assert warden.breaker("sandbox").state == "closed"


# The multi-process tests run this file as a worker: one Warden, one payment, a rail that
# blocks until a release file exists (or kills its own process, a probe that dies).


class FileGatedRail:
    """Records each `pay` as a file, then dies or waits for the `release` file."""

    name = "sandbox"

    def __init__(self, gate: Path, die: bool) -> None:
        self.gate, self.die = gate, die

    def pay(self, payment: RailPayment) -> Receipt:
        (self.gate / f"called-{os.getpid()}").touch()
        if self.die:
            os.kill(os.getpid(), signal.SIGKILL)
        deadline = time.monotonic() + WAIT_SECONDS
        while not (self.gate / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return Receipt("settled", f"gated_{payment.payment_id}")

    def status(self, payment: RailPayment) -> Receipt:
        return Receipt("unknown", None, "a gated test rail knows nothing later")

    def refund(self, payment: RailPayment, amount_minor: int, refund_key: str) -> Receipt:
        return Receipt("failed", None, "not supported")


def _worker(config: dict[str, Any]) -> None:
    rail = FileGatedRail(Path(config["gate"]), bool(config["die"]))
    with _open(Path(config["database"]), FrozenClock(config["now"]), rail) as warden:
        outcome = warden.pay(example_intent("2.00"))
    error = outcome.payment.error if outcome.payment is not None else None
    sys.stdout.write(json.dumps({"state": outcome.state, "error": error}) + "\n")


def _spawn(database: Path, gate: Path, now: str, die: bool = False) -> subprocess.Popen[str]:
    config = {"database": str(database), "gate": str(gate), "now": now, "die": die}
    return subprocess.Popen(
        [sys.executable, __file__, json.dumps(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def opened_ledger(
    tmp_path: Path, database: Path, clock: FrozenClock
) -> Iterator[tuple[Path, Path, FrozenClock]]:
    """A ledger whose sandbox breaker opened at START, and an empty gate directory."""
    gate = tmp_path / "gate"
    gate.mkdir()
    with _open(database, clock, SandboxRail(sleep=_noop)) as warden:
        _open_breaker(warden)
    yield database, gate, clock


def test_half_open_lets_exactly_one_probe_through_across_processes(
    opened_ledger: tuple[Path, Path, FrozenClock],
) -> None:
    database, gate, clock = opened_ledger
    now = clock.advance(COOLDOWN).isoformat()
    workers = [_spawn(database, gate, now) for _ in range(4)]
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while sum(w.poll() is not None for w in workers) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        (gate / "release").touch()
    outputs = [w.communicate(timeout=WAIT_SECONDS) for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    answers = [json.loads(stdout) for stdout, _ in outputs]
    assert len(list(gate.glob("called-*"))) == 1  # one process reached the rail
    assert sorted(answer["state"] for answer in answers) == [
        "failed",
        "failed",
        "failed",
        "settled",
    ]
    assert all(
        "circuit breaker" in answer["error"] for answer in answers if answer["state"] == "failed"
    )
    with _open(database, clock, SandboxRail(sleep=_noop)) as warden:
        assert warden.breaker("sandbox").state == "closed"


def test_a_probe_whose_process_died_is_replaced_after_another_cooldown(
    opened_ledger: tuple[Path, Path, FrozenClock],
) -> None:
    database, gate, clock = opened_ledger
    probe_time = clock.advance(COOLDOWN)
    dead = _spawn(database, gate, probe_time.isoformat(), die=True)
    dead.communicate(timeout=WAIT_SECONDS)
    assert dead.returncode == -signal.SIGKILL and len(list(gate.glob("called-*"))) == 1
    rail = SandboxRail(sleep=_noop)  # in memory, and it never saw the dead probe's key
    with _open(database, clock, rail) as warden:
        assert warden.breaker("sandbox").state == "half_open"
        (dead_payment,) = warden.payments(state="submitted")
        clock.advance(COOLDOWN - 1)
        assert _refused_by_breaker(warden.pay(example_intent("2.00")))  # the probe is still out
        assert rail.calls == []
        clock.advance(1)  # one cool-down since the dead probe was let through
        assert warden.pay(example_intent("2.00")).state == "settled"
        assert warden.breaker("sandbox").state == "closed"
        kinds = [entry.kind for entry in warden.audit_trail("sandbox")]
        assert kinds.count("breaker.half_open") == 2
        # This in-memory sandbox cannot know the dead probe's outcome: it stays open and held.
        clock.advance(limits.reconcile_grace_seconds)
        changed = warden.reconcile()
        assert [(row.payment_id, row.state) for row in changed] == [
            (dead_payment.payment_id, "unknown")
        ]
        assert warden.hold(dead_payment.hold_id).state == "held"
        unknown = warden.payments(state="unknown")  # the five that opened the breaker, too
        assert len(unknown) == limits.breaker_failures_max + 1
        assert all(warden.hold(row.hold_id).state == "held" for row in unknown)


# 2. Reconcile with an in-memory sandbox --------------------------------------------------------


def test_reconcile_by_a_fresh_in_memory_sandbox_keeps_money_that_moved_on_hold(
    database: Path, clock: FrozenClock
) -> None:
    paying_rail = SandboxRail(sleep=_noop)
    with _open(database, clock, paying_rail) as first:
        outcome = first.pay(
            example_intent("10.00", metadata={"sandbox_scenario": "timeout_after_send"})
        )
    assert outcome.payment is not None and outcome.state == "unknown"
    payment, key = outcome.payment, outcome.payment.rail_key
    assert paying_rail.moved(key) == 1  # the money did move
    clock.advance(limits.reconcile_grace_seconds + 1)
    with _open(database, clock, SandboxRail(sleep=_noop)) as restarted:
        assert restarted.reconcile() == []
        assert restarted.payment(payment.payment_id).state == "unknown"
        assert restarted.hold(payment.hold_id).state == "held"
        assert _held_minor(restarted) == 1000
        assert "payment.failed" not in [e.kind for e in restarted.audit_trail(payment.payment_id)]
    # The key stays open: the instance that was paid still knows, and settles it once.
    with _open(database, clock, paying_rail) as original:
        (settled,) = original.reconcile()
        assert settled.state == "settled" and original.hold(payment.hold_id).state == "captured"
    assert paying_rail.moved(key) == 1


def test_reconciling_answers_that_cannot_know_never_trip_the_breaker(
    database: Path, clock: FrozenClock
) -> None:
    """A fresh in-memory sandbox answers `unknown` for every old payment; those answers say
    nothing about whether the rail can take new payments, so reconcile leaves the breaker be."""
    with _open(database, clock, SandboxRail(sleep=_noop)) as first:
        for _ in range(3):  # three live unknowns: counted, but below the breaker's threshold
            first.pay(example_intent("1.00", metadata={"sandbox_scenario": "timeout_after_send"}))
        before = first.breaker("sandbox")
    assert (before.state, before.consecutive_failures) == ("closed", 3)
    clock.advance(limits.reconcile_grace_seconds + 1)
    with _open(database, clock, SandboxRail(sleep=_noop)) as restarted:
        for _ in range(3):  # 3 + 3 + 3 answers would open it if they counted
            assert restarted.reconcile() == []
        assert restarted.breaker("sandbox") == before
        assert restarted.pay(example_intent("2.00")).state == "settled"


def _request(key: str, scenario: str = "success") -> RailPayment:
    return RailPayment(
        f"pay_{key}", key, "agent-a", "payments.transfer", 1000, "USD",
        parse_payee("vendor.example.com"), {"sandbox_scenario": scenario},
    )  # fmt: skip


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("durable", [False, True], ids=["memory", "state-file"])
@pytest.mark.parametrize("fresh", [False, True], ids=["same-instance", "fresh-instance"])
def test_the_sandbox_never_answers_failed_for_a_key_whose_money_moved(
    tmp_path: Path, scenario: str, durable: bool, fresh: bool
) -> None:
    """Every scenario, asked later by the instance that was paid or by a fresh one (sharing the
    state file when there is one): `failed` only when nothing moved, and then the key is closed
    for good; a fresh in-memory instance, which cannot know, answers `unknown`."""
    state_path = tmp_path / "sandbox.db" if durable else None
    payer = SandboxRail(sleep=_noop, state_path=state_path)
    payer.pay(_request("k1", scenario))
    asker = SandboxRail(sleep=_noop, state_path=state_path) if fresh else payer
    answer = asker.status(_request("k1"))
    if fresh and not durable:
        assert (answer.status, answer.error) == ("unknown", NOT_SEEN)
    if payer.moved("k1"):
        assert answer.status != "failed"
    if answer.status == "failed":
        assert asker.pay(_request("k1")).status == "failed"  # the key is closed
        assert payer.moved("k1") == asker.moved("k1") == 0


def test_an_in_memory_sandbox_closes_only_keys_it_saw_fail_before_sending() -> None:
    rail = SandboxRail(sleep=_noop)
    unseen = rail.status(_request("never-seen"))
    assert (unseen.status, unseen.error) == ("unknown", NOT_SEEN)
    assert rail.pay(_request("never-seen")).status == "settled"  # not closed: it may still pay
    assert rail.moved("never-seen") == 1 and rail.status(_request("never-seen")).status == "settled"
    first = rail.pay(_request("early", "timeout_before_send"))
    assert (first.status, first.retryable) == ("failed", True)
    closed = rail.status(_request("early"))
    assert (closed.status, closed.error) == ("failed", NOT_RECEIVED)
    assert rail.pay(_request("early")).status == "failed" and rail.moved("early") == 0


# 3. A blank approval reason ------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["", "   ", "\n\t"])
@pytest.mark.parametrize("choice", ["approve", "reject"])
def test_a_blank_reason_is_refused_before_anything_else_and_changes_nothing(
    reason: str, choice: str, database: Path, clock: FrozenClock
) -> None:
    with _open(database, clock, SandboxRail(sleep=_noop)) as warden:
        warden.add_operator("alice", name="Alice")
        pending = warden.authorize(example_intent("500.00", action="payments.review"))
        approval_id, hold_id = str(pending.approval_id), str(pending.hold_id)
        decide = warden.approve if choice == "approve" else warden.reject
        clock.advance(15 * 60)  # overdue: a valid vote would record the expiry
        before = list(iter_audit_readonly(database))
        # Bad input wins over every other refusal: unknown operator, unknown id, overdue.
        for target, operator in ((approval_id, "mallory"), ("apr_missing", "alice")):
            with pytest.raises(InvalidInputError, match="a decision needs a reason"):
                decide(target, operator=operator, reason=reason)
        with pytest.raises(InvalidInputError, match="a decision needs a reason"):
            decide(approval_id, operator="alice", reason=reason)
        assert list(iter_audit_readonly(database)) == before
        view = warden.approval(approval_id)
        assert (view.status, view.votes) == ("pending", ())
        assert warden.hold(hold_id).state == "held"
        with pytest.raises(ApprovalExpiredError):  # a real vote still records the expiry
            decide(approval_id, operator="alice", reason="checked")
        assert warden.approval(approval_id).status == "expired"


@pytest.mark.parametrize("reason", ["", "   "])
def test_rest_refuses_a_blank_reason_with_422_invalid_input(tmp_path: Path, reason: str) -> None:
    from rest_support import POLICY as REST_POLICY
    from rest_support import open_gateway

    with open_gateway(tmp_path, REST_POLICY) as gateway:
        pending = gateway.warden.authorize(example_intent("500.00"))
        approval_id = str(pending.approval_id)
        for route in ("approve", "reject"):
            response = gateway.client.post(
                f"/v1/approvals/{approval_id}/{route}",
                json={"reason": reason},
                headers=gateway.auth("operator"),
            )
            assert response.status_code == 422, response.text
            assert response.json()["code"] == "invalid_input"
        view = gateway.warden.approval(approval_id)
        assert (view.status, view.votes) == ("pending", ())


# 5. Refund amounts ---------------------------------------------------------------------------


def test_a_refund_amount_is_plain_major_units_of_the_payments_currency(
    database: Path, clock: FrozenClock
) -> None:
    rail = SandboxRail(sleep=_noop)
    with _open(database, clock, rail) as warden:
        outcome = warden.pay(example_intent("40.00"))
        assert outcome.payment is not None and outcome.state == "settled"
        payment_id, key = outcome.payment.payment_id, outcome.payment.rail_key
        for amount in ("15.00 USD", "15.00 EUR", "USD 15", "15,00"):
            with pytest.raises(InvalidAmountError, match="not a plain decimal number"):
                warden.refund(payment_id, amount)
        with pytest.raises(InvalidInputError, match="float"):
            warden.refund(payment_id, 15.0)  # type: ignore[arg-type]
        assert warden.refunds(payment_id) == [] and rail.refunded(key) == 0
        assert warden.payment(payment_id).state == "settled"
        assert warden.refund(payment_id, "15.00").amount_minor == 1500
        assert warden.refund(payment_id, 5).amount_minor == 500
        assert rail.refunded(key) == 2000


# 6. Budget agent filters are case-sensitive ----------------------------------------------------

AGENT_BUDGET_POLICY = """
currency: USD
rules:
  - {id: pay, effect: allow, actions: ["payments.*"]}
budgets:
  - {id: research, limit: 100000, window: day, scope: agent, agents: ["research-*"]}
"""


@settings(max_examples=40, deadline=timedelta(seconds=2))
@given(suffix=st.text(alphabet="abcdefgxyzABCDEFGXYZ0189_-", min_size=1, max_size=12))
def test_budget_agent_globs_are_case_sensitive(suffix: str) -> None:
    agent = f"research-{suffix}"
    other_case = agent.swapcase()  # `RESEARCH-...`: never the same agent
    with Warden.open(AGENT_BUDGET_POLICY, clock=FrozenClock(START)) as warden:
        assert warden.authorize(example_intent("3.00", agent=agent)).allowed
        assert warden.authorize(example_intent("4.00", agent=other_case)).allowed
        counted = {row.scope_key: row.held_minor for row in warden.budgets()}
    assert counted == {agent: 300}


# 7. halt returns the halt of its own scope -----------------------------------------------------


def test_halting_an_agent_while_all_are_halted_returns_that_agents_halt(
    database: Path, clock: FrozenClock
) -> None:
    with _open(database, clock, SandboxRail(sleep=_noop)) as warden:
        warden.add_operator("alice", name="Alice")
        everyone = warden.halt(reason="incident 42", actor="alice")
        own = warden.halt("agent-a", reason="key leaked", actor="alice")
        assert (everyone.scope, own.scope, own.reason) == ("*", "agent-a", "key leaked")
        again = warden.halt("agent-a", reason="a second reason", actor="alice")
        assert (again.scope, again.reason) == ("agent-a", "key leaked")  # the first one stays
        with pytest.raises(InvalidInputError, match="halt needs a reason"):
            warden.halt("agent-b", reason=" ", actor="mallory")
        assert [h.scope for h in warden.halts()] == ["*", "agent-a"]


if __name__ == "__main__":
    _worker(json.loads(sys.argv[1]))
