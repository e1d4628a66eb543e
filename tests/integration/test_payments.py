"""Executing payments on the sandbox rail: every scenario end to end, unknown outcomes kept on
hold and reconciled exactly once, no double payment, retries with the same key, and the
circuit breaker. Method: a real Warden on a SQLite file with a frozen clock; the sandbox rail
counts how many times money really moved per idempotency key."""

from __future__ import annotations

import pytest

from paywarden import FrozenClock, InvalidInputError, Warden
from paywarden.actions.payments import PaymentOutcome
from paywarden.adapters.rails.sandbox import SCENARIOS, SandboxRail
from paywarden.rails import available_rails, load_rail
from paywarden.testing import example_intent
from support.policies import policy_text
from support.wardens import OpenWarden, no_sleep

POLICY = policy_text("pay_100000_a_day")


@pytest.fixture
def warden(open_warden: OpenWarden, rail: SandboxRail) -> Warden:
    return open_warden(POLICY, rails={"sandbox": rail}, sleep=no_sleep)


def _pay(warden: Warden, scenario: str, amount: str = "10.00", **changes: object) -> PaymentOutcome:
    return warden.pay(example_intent(amount, metadata={"sandbox_scenario": scenario}, **changes))


def _budget(warden: Warden) -> tuple[int, int]:
    (status,) = warden.budgets()
    return status.spent_minor, status.held_minor


# scenario -> (state after pay, state after reconcile, money moved)
EXPECTED = {
    "success": ("settled", "settled", 1),
    "declined": ("failed", "failed", 0),
    "insufficient_funds": ("failed", "failed", 0),
    "timeout_before_send": ("failed", "failed", 0),
    "timeout_after_send": ("unknown", "settled", 1),
    "error_then_success": ("settled", "settled", 1),
    "pending_then_settled": ("submitted", "settled", 1),
    "duplicate_settlement": ("settled", "settled", 1),
    "slow": ("settled", "settled", 1),
}


def test_every_sandbox_scenario_is_covered() -> None:
    assert set(EXPECTED) == set(SCENARIOS)


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_each_scenario_settles_holds_or_releases_exactly_as_the_rail_answers(
    warden: Warden, rail: SandboxRail, scenario: str
) -> None:
    after_pay, after_reconcile, moved = EXPECTED[scenario]
    outcome = _pay(warden, scenario)
    assert outcome.decision.allowed and outcome.payment is not None
    assert outcome.state == after_pay
    spent, held = _budget(warden)
    # Money is spent once settled, held while the outcome is open, released when it failed.
    assert (spent, held) == {"settled": (1000, 0), "failed": (0, 0)}.get(after_pay, (0, 1000))
    warden.reconcile()
    assert warden.payment(outcome.payment.payment_id).state == after_reconcile
    assert rail.moved(outcome.payment.rail_key) == moved
    assert _budget(warden) == ((1000, 0) if after_reconcile == "settled" else (0, 0))
    assert warden.verify_audit().ok


def test_an_unknown_outcome_keeps_the_hold_past_its_ttl_and_reconciles_exactly_once(
    warden: Warden, rail: SandboxRail, clock: FrozenClock
) -> None:
    outcome = _pay(warden, "timeout_after_send")
    assert outcome.payment is not None and outcome.state == "unknown"
    clock.advance(3 * 3600)
    assert warden.expire_due() == 0  # an open outcome is never expired away
    changed = warden.reconcile()
    assert [row.state for row in changed] == ["settled"]
    assert warden.reconcile() == []  # settled once; a second pass changes nothing
    assert rail.moved(outcome.payment.rail_key) == 1
    keys = {key for operation, key in rail.calls}
    assert keys == {outcome.payment.rail_key}  # never re-sent under a new key


def test_paying_again_with_the_same_idempotency_key_never_pays_twice(
    warden: Warden, rail: SandboxRail
) -> None:
    first = _pay(warden, "success", idempotency_key="order-7")
    again = _pay(warden, "success", idempotency_key="order-7")
    assert first.payment is not None and again.payment is not None
    assert again.decision.replayed
    assert again.payment.payment_id == first.payment.payment_id
    assert rail.moved(first.payment.rail_key) == 1
    assert [op for op, _ in rail.calls].count("pay") == 1
    assert _budget(warden) == (1000, 0)


def test_retries_reuse_the_same_key_and_are_bounded(warden: Warden, rail: SandboxRail) -> None:
    outcome = _pay(warden, "timeout_before_send")
    assert outcome.payment is not None and outcome.state == "failed"
    pays = [key for operation, key in rail.calls if operation == "pay"]
    assert len(pays) == 4  # the first try and three retries
    assert set(pays) == {outcome.payment.rail_key}


def test_a_denied_intent_never_reaches_the_rail(open_warden: OpenWarden, rail: SandboxRail) -> None:
    policy = "currency: USD\nrules:\n  - {id: pay, effect: allow, amount: {lte: 5}}\n"
    with open_warden(policy, clock=None, rails={"sandbox": rail}) as warden:
        outcome = warden.pay(example_intent("10.00"))
    assert outcome.decision.outcome == "deny" and outcome.payment is None
    assert rail.calls == []


def test_breaker_stays_closed_when_successes_break_the_run_of_failures(
    warden: Warden, rail: SandboxRail
) -> None:
    for _ in range(4):
        _pay(warden, "timeout_after_send")
    for _ in range(1000):
        assert _pay(warden, "success", "0.01").state == "settled"
    _pay(warden, "timeout_after_send")
    assert (warden.breaker("sandbox").state, warden.breaker("sandbox").consecutive_failures) == (
        "closed",
        1,
    )
    assert _pay(warden, "success").state == "settled"  # still closed: the rail was called


def test_breaker_opens_after_five_consecutive_failures_then_fails_fast_and_probes(
    warden: Warden, rail: SandboxRail, clock: FrozenClock
) -> None:
    for _ in range(5):
        _pay(warden, "timeout_after_send")
    assert warden.breaker("sandbox").state == "open"
    assert "breaker.opened" in [e.kind for e in warden.audit_trail("sandbox")]
    calls = len(rail.calls)
    blocked = _pay(warden, "success")
    assert blocked.payment is not None and blocked.state == "failed"
    assert "circuit breaker" in str(blocked.payment.error)
    assert len(rail.calls) == calls  # failed fast: the rail was not called
    assert warden.hold(str(blocked.decision.hold_id)).state == "voided"  # no budget consumed
    clock.advance(31)
    probe = _pay(warden, "success")
    assert probe.state == "settled"  # half-open: one probe, and its success closes the breaker
    assert warden.breaker("sandbox").state == "closed"
    assert _pay(warden, "success").state == "settled"


def test_rails_are_found_through_the_entry_point_group() -> None:
    assert "sandbox" in available_rails()
    assert isinstance(load_rail("sandbox"), SandboxRail)
    with pytest.raises(InvalidInputError, match="unknown rail"):
        load_rail("no-such-rail")
