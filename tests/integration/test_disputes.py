"""Disputes (PaySentry): a case on a payment carries its proof trace and the audit entries
behind it as evidence, its status is tracked, and it is resolved with a refund through the rail,
a rejection or a withdrawal, each step by a registered operator and audited."""

from __future__ import annotations

import json

import pytest

from paywarden import (
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    StateConflictError,
    Warden,
)
from paywarden.adapters.rails.sandbox import SandboxRail
from paywarden.testing import example_intent
from support.wardens import OpenWarden, no_sleep

POLICY = """
currency: USD
rules:
  - {id: big, effect: require_approval, amount: {gt: 100}}
  - {id: pay, effect: allow, actions: ["payments.*"]}
"""


@pytest.fixture
def warden(open_warden: OpenWarden, rail: SandboxRail) -> Warden:
    warden = open_warden(POLICY, rails={"sandbox": rail}, sleep=no_sleep)
    warden.add_operator("alice", name="Alice")
    return warden


def _paid(warden: Warden, amount: str = "40.00") -> str:
    outcome = warden.pay(example_intent(amount))
    assert outcome.payment is not None and outcome.payment.state == "settled"
    return outcome.payment.payment_id


def _approved_and_paid(warden: Warden) -> str:
    intent = example_intent("150.00")
    pending = warden.pay(intent)
    assert pending.decision.approval_id is not None
    warden.approve(pending.decision.approval_id, operator="alice", reason="known vendor")
    outcome = warden.pay(intent.replace(idempotency_key=None))
    assert outcome.payment is not None and outcome.payment.state == "settled"
    return outcome.payment.payment_id


def test_a_dispute_carries_the_proof_trace_and_the_audit_entries_as_evidence(
    warden: Warden,
) -> None:
    payment_id = _approved_and_paid(warden)
    case = warden.open_dispute(payment_id, reason="goods never arrived", actor="agent:agent-a")
    assert (case.status, case.opened_by) == ("open", "agent:agent-a")
    evidence = json.loads(case.evidence)
    payment = warden.payment(payment_id)
    assert evidence["payment"]["payment_id"] == payment_id
    assert evidence["decision"]["decision_id"] == payment.decision_id
    assert evidence["decision"]["reason_code"] == "approved"
    assert warden.policy is not None
    assert evidence["decision"]["trace"]["policy_version"] == warden.policy.version
    assert evidence["approval_id"] is not None
    kinds = [entry["kind"] for entry in evidence["audit"]]
    for kind in ("approval.requested", "decision", "payment.submitted", "payment.settled"):
        assert kind in kinds, kinds
    by_seq = {e.seq: e.entry_hash for e in warden.audit_trail(payment_id)}
    for entry in evidence["audit"]:
        if entry["seq"] in by_seq:
            assert entry["hash"] == by_seq[entry["seq"]]  # checkable against the chain
    assert [e.kind for e in warden.audit_trail(payment_id)][-1] == "dispute.opened"


def test_resolving_with_a_refund_refunds_through_the_rail(
    warden: Warden, rail: SandboxRail
) -> None:
    payment_id = _paid(warden)
    case = warden.open_dispute(payment_id, reason="double charge", actor="agent:agent-a")
    reviewed = warden.review_dispute(case.dispute_id, operator="alice", note="looking")
    assert reviewed.status == "under_review"
    resolved = warden.resolve_dispute(
        case.dispute_id, "refund", operator="alice", amount="15.00", note="partial credit"
    )
    assert (resolved.status, resolved.resolution) == ("refunded", "partial credit")
    [refund] = warden.refunds(payment_id)
    assert (refund.refund_id, refund.amount_minor, refund.state) == (
        resolved.refund_id,
        1500,
        "settled",
    )
    assert refund.actor == "operator:alice"
    assert warden.payment(payment_id).refunded_minor == 1500
    with pytest.raises(StateConflictError, match="refunded"):
        warden.resolve_dispute(case.dispute_id, "reject", operator="alice")
    kinds = [e.kind for e in warden.audit_trail(payment_id)]
    assert kinds[-5:] == [
        "dispute.opened",
        "dispute.under_review",
        "refund.submitted",
        "refund.settled",
        "dispute.refunded",
    ]


@pytest.mark.parametrize(("outcome", "status"), [("reject", "rejected"), ("withdraw", "withdrawn")])
def test_rejecting_or_withdrawing_moves_no_money(warden: Warden, outcome: str, status: str) -> None:
    payment_id = _paid(warden)
    case = warden.open_dispute(payment_id, reason="wrong amount", actor="operator:alice")
    closed = warden.resolve_dispute(case.dispute_id, outcome, operator="alice", note="checked")
    assert closed.status == status
    assert warden.refunds(payment_id) == []
    again = warden.open_dispute(payment_id, reason="still wrong", actor="operator:alice")
    assert again.dispute_id != case.dispute_id  # a closed case does not block a new one
    assert [d.dispute_id for d in warden.disputes(payment_id=payment_id, status="open")] == [
        again.dispute_id
    ]


def test_one_active_case_per_payment_and_only_moved_money(warden: Warden) -> None:
    payment_id = _paid(warden)
    warden.open_dispute(payment_id, reason="first", actor="agent:agent-a")
    with pytest.raises(StateConflictError, match="already has dispute"):
        warden.open_dispute(payment_id, reason="second", actor="agent:agent-a")
    declined = warden.pay(example_intent("5.00", metadata={"sandbox_scenario": "declined"}))
    assert declined.payment is not None
    with pytest.raises(StateConflictError, match="only money that moved"):
        warden.open_dispute(declined.payment.payment_id, reason="x", actor="agent:agent-a")
    with pytest.raises(NotFoundError):
        warden.open_dispute("pay_missing", reason="x", actor="agent:agent-a")
    with pytest.raises(InvalidInputError):
        warden.open_dispute(payment_id, reason="  ", actor="agent:agent-a")


def test_only_registered_operators_review_and_resolve(warden: Warden) -> None:
    payment_id = _paid(warden)
    case = warden.open_dispute(payment_id, reason="fraud", actor="agent:agent-a")
    with pytest.raises(ForbiddenError):
        warden.review_dispute(case.dispute_id, operator="agent-a")
    with pytest.raises(ForbiddenError):
        warden.resolve_dispute(case.dispute_id, "refund", operator="mallory")
    with pytest.raises(InvalidInputError, match="outcome"):
        warden.resolve_dispute(case.dispute_id, "chargeback", operator="alice")
    assert warden.dispute(case.dispute_id).status == "open"
    assert warden.refunds(payment_id) == []
