"""Transaction scopes (the governance article's AgentTransactionScope, done durably): each paid
step registers its compensation; on failure they run in reverse order, each audited, and a
failed compensation is recorded for manual follow-up while the others still run."""

from __future__ import annotations

import pytest

from paywarden import ForbiddenError, StateConflictError, Warden
from paywarden.adapters.rails.sandbox import SandboxRail
from paywarden.rails import RailPayment, Receipt
from paywarden.testing import example_intent
from support.wardens import OpenWarden, no_sleep

POLICY = """
currency: USD
rules:
  - {{id: pay, effect: allow, actions: ["payments.*"]}}
budgets:
  - {{id: daily, limit: 1000, window: day}}
{compensation}
"""


class RefundLog(SandboxRail):
    """The sandbox, logging the order of refunds and refusing those for `refuse` keys."""

    def __init__(self) -> None:
        super().__init__(sleep=no_sleep)
        self.order: list[str] = []
        self.refuse: set[str] = set()

    def refund(self, payment: RailPayment, amount_minor: int, refund_key: str) -> Receipt:
        self.order.append(payment.payment_id)
        if payment.payment_id in self.refuse:
            return Receipt("failed", None, "refund refused by the provider")
        return super().refund(payment, amount_minor, refund_key)


class WorkflowFailed(Exception):
    pass


@pytest.fixture
def rail() -> RefundLog:
    return RefundLog()


def _open(open_warden: OpenWarden, rail: RefundLog, compensation: str = "") -> Warden:
    policy = POLICY.format(compensation=compensation)
    return open_warden(policy, rails={"sandbox": rail}, sleep=no_sleep)


@pytest.fixture
def warden(open_warden: OpenWarden, rail: RefundLog) -> Warden:
    return _open(open_warden, rail)


def _paid_ids(warden: Warden, scope_id: str) -> list[str]:
    return [step.payment_id for step in warden.scope_steps(scope_id) if step.payment_id]


def test_a_failed_workflow_refunds_its_paid_steps_in_reverse_order(
    warden: Warden, rail: RefundLog
) -> None:
    undone: list[str] = []
    with pytest.raises(WorkflowFailed), warden.transaction("agent-a") as scope:
        scope.pay(example_intent("10.00"), label="buy dataset")
        scope.step("reserve gpu", lambda: undone.append("gpu"))
        scope.pay(example_intent("20.00"), label="buy model")
        raise WorkflowFailed("analysis crashed")
    first, second = _paid_ids(warden, scope.scope_id)
    assert rail.order == [second, first]
    assert undone == ["gpu"]
    assert [warden.payment(p).state for p in (first, second)] == ["refunded", "refunded"]
    assert warden.scope(scope.scope_id).status == "compensated"
    kinds = [entry.kind for entry in warden.audit_trail(scope.scope_id)]
    assert kinds == [
        "scope.opened",
        "scope.step_registered",
        "scope.step_registered",
        "scope.step_registered",
        "scope.step_compensated",
        "scope.step_compensated",
        "scope.step_compensated",
        "scope.compensated",
    ]
    assert warden.verify_audit().ok


def test_a_workflow_that_succeeds_commits_and_refunds_nothing(
    warden: Warden, rail: RefundLog
) -> None:
    with warden.transaction("agent-a") as scope:
        scope.pay(example_intent("10.00"))
    assert warden.scope(scope.scope_id).status == "committed"
    assert rail.order == []
    with pytest.raises(StateConflictError, match="committed"):
        scope.pay(example_intent("5.00"))


def test_a_committed_scope_is_never_compensated_and_nothing_is_refunded(
    warden: Warden, rail: RefundLog
) -> None:
    with warden.transaction("agent-a") as scope:
        paid = scope.pay(example_intent("10.00"))
    assert paid.payment is not None
    with pytest.raises(StateConflictError, match="committed"):
        scope.compensate("too late")
    with pytest.raises(StateConflictError, match="committed"):
        warden.resume_scope(scope.scope_id).compensate("from elsewhere")
    assert rail.order == []
    assert warden.payment(paid.payment.payment_id).refunded_minor == 0
    assert warden.scope(scope.scope_id).status == "committed"
    assert [s.state for s in warden.scope_steps(scope.scope_id)] == ["registered"]


def test_a_scope_is_compensated_once_and_cannot_be_committed_afterwards(
    warden: Warden, rail: RefundLog
) -> None:
    scope = warden.transaction("agent-a")
    scope.pay(example_intent("10.00"))
    assert scope.compensate("first").status == "compensated"
    with pytest.raises(StateConflictError, match="compensated"):
        scope.compensate("second")
    with pytest.raises(StateConflictError):
        scope.commit()
    assert len(rail.order) == 1  # refunded once


def test_a_failed_compensation_is_recorded_and_the_others_still_run(
    warden: Warden, rail: RefundLog
) -> None:
    def broken() -> None:
        raise RuntimeError("hotel API down")

    with pytest.raises(WorkflowFailed), warden.transaction("agent-a") as scope:
        scope.pay(example_intent("10.00"))
        scope.step("book hotel", broken)
        second = scope.pay(example_intent("20.00"))
        assert second.payment is not None
        rail.refuse.add(second.payment.payment_id)
        raise WorkflowFailed
    steps = warden.scope_steps(scope.scope_id)
    assert [(s.label[:7], s.state) for s in steps] == [
        ("pay 10.", "compensated"),
        ("book ho", "failed"),
        ("pay 20.", "failed"),
    ]
    assert steps[1].error == "RuntimeError: hotel API down"
    assert "failed" in (steps[2].error or "")
    assert warden.scope(scope.scope_id).status == "compensation_failed"
    assert [s.scope_id for s in warden.scopes("compensation_failed")] == [scope.scope_id]


def test_declined_and_unknown_steps_are_handled_without_paying_twice(
    warden: Warden, rail: RefundLog
) -> None:
    with pytest.raises(WorkflowFailed), warden.transaction("agent-a") as scope:
        declined = scope.pay(example_intent("10.00", metadata={"sandbox_scenario": "declined"}))
        unknown = scope.pay(
            example_intent("20.00", metadata={"sandbox_scenario": "timeout_after_send"})
        )
        raise WorkflowFailed
    assert declined.state == "failed" and unknown.state == "unknown"
    [step] = warden.scope_steps(scope.scope_id)  # a failed payment registers nothing
    assert (step.state, step.error) == ("failed", "payment outcome is unknown: reconcile first")
    assert rail.order == []


def test_record_loss_compensates_without_moving_money(
    rail: RefundLog, open_warden: OpenWarden
) -> None:
    with _open(open_warden, rail, "compensation: {default_action: record_loss}") as warden:
        with pytest.raises(WorkflowFailed), warden.transaction("agent-a") as scope:
            scope.pay(example_intent("10.00"))
            raise WorkflowFailed
        [step] = warden.scope_steps(scope.scope_id)
        assert (step.state, step.error) == ("compensated", "loss recorded: 1000 minor units")
        assert rail.order == []


def test_disabled_compensation_leaves_every_step_for_a_human(
    rail: RefundLog, open_warden: OpenWarden
) -> None:
    with _open(open_warden, rail, "compensation: {enabled: false}") as warden:
        with pytest.raises(WorkflowFailed), warden.transaction("agent-a") as scope:
            scope.pay(example_intent("10.00"))
            raise WorkflowFailed
        assert warden.scope(scope.scope_id).status == "compensation_failed"
        assert rail.order == []


def test_a_scope_pays_only_for_its_own_agent(warden: Warden) -> None:
    with warden.transaction("agent-a") as scope, pytest.raises(ForbiddenError):
        scope.pay(example_intent("10.00", agent="other-agent"))
    assert warden.scope_steps(scope.scope_id) == []


def test_an_abandoned_scope_can_be_compensated_from_another_process(
    rail: RefundLog, open_warden: OpenWarden
) -> None:
    with _open(open_warden, rail) as warden:
        scope = warden.transaction("agent-a")
        scope.pay(example_intent("10.00"))
        scope.step("in-process action", lambda: None)
    with _open(open_warden, rail) as restarted:
        [open_scope] = restarted.scopes("open")
        final = restarted.resume_scope(open_scope.scope_id).compensate("worker died")
        assert final.status == "compensation_failed"  # the lambda died with its process
        steps = restarted.scope_steps(open_scope.scope_id)
        assert [s.state for s in steps] == ["compensated", "failed"]
        assert steps[1].error == "its compensating action is not in this process"
