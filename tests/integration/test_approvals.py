"""Human approvals through the Warden: who may decide, four eyes, expiry, single use, the
binding to one exact intent (environment, amount, recipient, currency), the re-check of deny
rules and budgets at approval time, rejection, and the audit trail of every state change.

Every test uses a SQLite file under `tmp_path` and a `FrozenClock`.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from paywarden import FrozenClock, NotFoundError, PaymentIntent, StateConflictError, Warden
from paywarden.errors import ApprovalExpiredError, ForbiddenError, InvalidInputError
from paywarden.policy.decision import Decision
from support.audit import entries, kinds_of
from support.intents import intent_builder
from support.wardens import OpenWarden, add_operators
from support.workers import run_threads

POLICY = """
currency: USD
fx:
  as_of: "2026-01-05"
  rates:
    EUR/USD: "1.25"
approvals:
  ttl: 15m
  two_person_above: 1000
rules:
  - id: blocked
    effect: deny
    recipients: ["blocked.example.com"]
  - id: urgent-review
    effect: require_approval
    actions: ["payments.urgent"]
    approval_ttl: 1h
  - id: review
    effect: require_approval
    actions: ["payments.*"]
    amount: {gt: 100}
  - id: allow-payments
    effect: allow
    actions: ["payments.*"]
budgets:
  - id: daily
    limit: "10000.00"
    window: day
"""
FREEZE_VENDOR = POLICY.replace(
    "rules:\n",
    "rules:\n  - id: freeze-vendor\n    effect: deny\n    recipients: [vendor.example.com]\n",
)
LOWERED_BUDGET = POLICY.replace('limit: "10000.00"', 'limit: "400.00"')


_intent = intent_builder("500.00", purpose="invoice 42")


@pytest.fixture
def warden(open_warden: OpenWarden) -> Warden:
    return add_operators(open_warden(POLICY))


def _held(warden: Warden) -> int:
    return sum(row.held_minor for row in warden.budgets())


def _spent(warden: Warden) -> int:
    return sum(row.spent_minor for row in warden.budgets())


def _pending(warden: Warden, intent: PaymentIntent | None = None) -> Decision:
    decision = warden.authorize(intent or _intent())
    assert (decision.outcome, decision.reason_code) == ("require_approval", "approval_required")
    assert decision.approval_id is not None and decision.hold_id is not None
    return decision


# A pending request -----------------------------------------------------------------------------


def test_a_pending_request_holds_its_amount_and_a_repeat_returns_the_same_request(
    warden: Warden,
) -> None:
    first = _pending(warden)
    assert _held(warden) == 50_000
    view = warden.approval(str(first.approval_id))
    assert (view.status, view.row.required, view.row.hold_id) == ("pending", 1, first.hold_id)
    assert view.intent.amount_minor == 50_000
    # Free text is not bound: a retry with another purpose is the same request.
    for again in (_intent(), _intent(purpose="invoice 42, second try", recipient_name="V")):
        repeat = _pending(warden, again)
        assert repeat.approval_id == first.approval_id
        assert repeat.hold_id == first.hold_id
        assert repeat.decision_id != first.decision_id
    assert _held(warden) == 50_000  # nothing new held
    assert [v.approval_id for v in warden.approvals()] == [first.approval_id]
    assert [v.approval_id for v in warden.approvals("pending", "agent-a")] == [first.approval_id]
    assert warden.approvals("approved") == [] and warden.approvals(agent="agent-b") == []


def test_a_pending_or_approved_but_unused_hold_cannot_be_captured(warden: Warden) -> None:
    pending = _pending(warden)
    hold_id, approval_id = str(pending.hold_id), str(pending.approval_id)
    with pytest.raises(StateConflictError, match="pending"):
        warden.capture(hold_id)
    warden.approve(approval_id, operator="alice", reason="known vendor")
    with pytest.raises(StateConflictError, match="approved"):
        warden.capture(hold_id)
    used = warden.authorize(_intent())
    assert (used.outcome, used.reason_code, used.hold_id) == ("allow", "approved", hold_id)
    assert warden.capture(hold_id).state == "captured"
    assert (_spent(warden), _held(warden)) == (50_000, 0)


def test_an_unknown_approval_is_not_found(warden: Warden) -> None:
    with pytest.raises(NotFoundError):
        warden.approval("apr_missing")
    with pytest.raises(NotFoundError):
        warden.approve("apr_missing", operator="alice", reason="ok")
    with pytest.raises(NotFoundError):
        warden.reject("apr_missing", operator="alice", reason="no")


# Who may decide ------------------------------------------------------------------------------


def test_the_requesting_agent_and_unregistered_principals_cannot_decide(
    warden: Warden, database: Path
) -> None:
    pending = _pending(warden)
    approval_id = str(pending.approval_id)
    for principal in ("agent-a", "agent-b", "mallory"):
        with pytest.raises(ForbiddenError, match="not a registered operator"):
            warden.approve(approval_id, operator=principal, reason="looks fine")
        with pytest.raises(ForbiddenError):
            warden.reject(approval_id, operator=principal, reason="no")
    # Even registered as an operator, the agent can never decide its own payment.
    warden.add_operator("agent-a", name="The agent, registered by mistake")
    with pytest.raises(ForbiddenError, match="requested this payment"):
        warden.approve(approval_id, operator="agent-a", reason="self-service")
    view = warden.approval(approval_id)
    assert (view.status, view.votes) == ("pending", ())
    assert kinds_of(database, approval_id) == ["approval.requested"]
    # ...and the request is still decidable by a real operator.
    assert warden.approve(approval_id, operator="alice", reason="ok").status == "approved"


def test_a_decision_needs_a_reason(warden: Warden) -> None:
    approval_id = str(_pending(warden).approval_id)
    with pytest.raises(InvalidInputError, match="reason"):
        warden.approve(approval_id, operator="alice", reason="   ")
    assert warden.approval(approval_id).status == "pending"


def test_operators_are_registered_once_with_a_plain_id(warden: Warden) -> None:
    with pytest.raises(ValueError, match="already exists"):
        warden.add_operator("alice", name="Another Alice")
    with pytest.raises(ValueError, match="short identifier"):
        warden.add_operator("alice smith; drop", name="Alice")
    assert [row.operator_id for row in warden.operators()] == ["alice", "bob"]


# Four eyes -----------------------------------------------------------------------------------


def test_above_the_four_eyes_amount_two_distinct_operators_must_approve(
    warden: Warden, database: Path
) -> None:
    pending = _pending(warden, _intent("1500.00"))
    approval_id = str(pending.approval_id)
    assert warden.approval(approval_id).row.required == 2
    first = warden.approve(approval_id, operator="alice", reason="first look")
    assert (first.status, first.approved_by) == ("pending", ("alice",))
    # One person counts once, whichever way they vote the second time.
    with pytest.raises(ForbiddenError, match="another operator"):
        warden.approve(approval_id, operator="alice", reason="me again")
    with pytest.raises(ForbiddenError, match="another operator"):
        warden.reject(approval_id, operator="alice", reason="changed my mind")
    # Not yet approved: the agent's retry is still waiting on the same request.
    assert _pending(warden, _intent("1500.00")).approval_id == approval_id
    second = warden.approve(approval_id, operator="bob", reason="second pair of eyes")
    assert (second.status, second.approved_by) == ("approved", ("alice", "bob"))
    used = warden.authorize(_intent("1500.00"))
    assert (used.outcome, used.reason_code) == ("allow", "approved")
    assert "alice" in used.reason and "bob" in used.reason
    recorded = warden.decision(str(used.decision_id))
    assert recorded.reason == used.reason and recorded.approval_id == approval_id
    assert kinds_of(database, approval_id) == [
        "approval.requested",
        "approval.approve_vote",
        "approval.approve_vote",
        "approval.approved",
        "approval.consumed",
    ]
    approved = [json.loads(e.body) for e in entries(database, approval_id)]
    assert approved[3]["approved_by"] == ["alice", "bob"]
    assert warden.verify_audit().ok


@pytest.mark.parametrize(
    ("amount", "currency", "required"),
    [
        ("1000.00", "USD", 1),  # at the threshold: one operator
        ("1000.01", "USD", 2),  # above it: two
        ("800.00", "EUR", 1),  # exactly 1000 USD at 1.25
        ("800.01", "EUR", 2),  # 1000.0125 USD
    ],
)
def test_the_four_eyes_threshold_is_exclusive_and_converted(
    warden: Warden, amount: str, currency: str, required: int
) -> None:
    pending = _pending(warden, _intent(amount, currency=currency))
    approval_id = str(pending.approval_id)
    assert warden.approval(approval_id).row.required == required
    status = warden.approve(approval_id, operator="alice", reason="ok").status
    assert status == ("approved" if required == 1 else "pending")


# Expiry --------------------------------------------------------------------------------------


def test_an_expired_approval_is_refused_and_its_hold_released(
    warden: Warden, clock: FrozenClock, database: Path
) -> None:
    pending = _pending(warden)
    approval_id = str(pending.approval_id)
    clock.advance(15 * 60)  # the policy's `ttl: 15m`, to the microsecond
    with pytest.raises(ApprovalExpiredError, match="expired"):
        warden.approve(approval_id, operator="alice", reason="too late")
    view = warden.approval(approval_id)
    assert (view.status, view.votes) == ("expired", ())
    assert warden.hold(str(pending.hold_id)).state == "expired"
    assert _held(warden) == 0
    # Expired stays expired: the same refusal for every later decision.
    with pytest.raises(ApprovalExpiredError):
        warden.reject(approval_id, operator="bob", reason="late too")
    with pytest.raises(StateConflictError):  # ApprovalExpiredError is a StateConflictError
        warden.approve(approval_id, operator="bob", reason="late")
    # The agent's retry opens a fresh request; the expired one never authorizes anything.
    retry = _pending(warden)
    assert retry.approval_id != approval_id
    assert kinds_of(database, approval_id) == ["approval.requested", "approval.expired"]
    assert warden.verify_audit().ok


def test_an_approval_is_decidable_until_the_last_moment(warden: Warden, clock: FrozenClock) -> None:
    pending = _pending(warden)
    clock.advance(15 * 60 - 0.000001)
    view = warden.approve(str(pending.approval_id), operator="alice", reason="just in time")
    assert view.status == "approved"


def test_an_approved_but_unused_approval_expires_and_releases_its_hold(
    warden: Warden, clock: FrozenClock
) -> None:
    pending = _pending(warden)
    approval_id = str(pending.approval_id)
    warden.approve(approval_id, operator="alice", reason="ok")
    clock.advance(16 * 60)
    retry = warden.authorize(_intent())
    assert retry.outcome == "require_approval" and retry.approval_id != approval_id
    assert warden.approval(approval_id).status == "expired"
    assert warden.hold(str(pending.hold_id)).state == "expired"
    assert _held(warden) == 50_000  # only the new request's hold


def test_the_sweep_expires_waiting_requests_without_a_decision(
    warden: Warden, clock: FrozenClock, database: Path
) -> None:
    pending = _pending(warden)
    clock.advance(20 * 60)
    assert warden.expire_due() == 1
    assert warden.approval(str(pending.approval_id)).status == "expired"
    assert _held(warden) == 0
    assert "approval.expired" in kinds_of(database, str(pending.approval_id))


def test_a_rule_approval_ttl_overrides_the_policy_default(
    warden: Warden, clock: FrozenClock
) -> None:
    urgent = _pending(warden, _intent("50.00", action="payments.urgent"))
    normal = _pending(warden)
    assert warden.approval(str(urgent.approval_id)).row.expires_us == (
        warden.approval(str(normal.approval_id)).row.created_us + 3_600_000_000
    )
    clock.advance(30 * 60)
    with pytest.raises(ApprovalExpiredError):
        warden.approve(str(normal.approval_id), operator="alice", reason="late")
    view = warden.approve(str(urgent.approval_id), operator="alice", reason="within the hour")
    assert view.status == "approved"
    clock.advance(31 * 60)  # 61 minutes after the request
    assert warden.authorize(_intent("50.00", action="payments.urgent")).approval_id != (
        urgent.approval_id
    )
    assert warden.approval(str(urgent.approval_id)).status == "expired"


# Single use ----------------------------------------------------------------------------------


def test_an_approval_is_consumed_once(warden: Warden, database: Path) -> None:
    pending = _pending(warden)
    approval_id = str(pending.approval_id)
    warden.approve(approval_id, operator="alice", reason="ok")
    used = warden.authorize(_intent())
    assert (used.outcome, used.reason_code, used.approval_id) == ("allow", "approved", approval_id)
    assert used.hold_id == pending.hold_id
    assert warden.approval(approval_id).status == "consumed"
    again = warden.authorize(_intent())
    assert again.outcome == "require_approval"
    assert again.approval_id != approval_id and again.hold_id != pending.hold_id
    assert _held(warden) == 100_000  # the used hold plus the new request's hold
    with pytest.raises(StateConflictError, match="consumed"):
        warden.approve(approval_id, operator="bob", reason="once more")
    assert kinds_of(database, approval_id).count("approval.consumed") == 1


def test_concurrent_identical_payments_use_one_approval_exactly_once(
    open_warden: OpenWarden,
) -> None:
    with open_warden(POLICY) as warden:
        warden.add_operator("alice", name="Alice")
        approval_id = str(_pending(warden).approval_id)
        warden.approve(approval_id, operator="alice", reason="ok")
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    results: list[Decision] = []
    errors: list[BaseException] = []

    def pay() -> None:
        try:
            with open_warden(POLICY) as racer:
                barrier.wait(timeout=30)
                results.append(racer.authorize(_intent()))
        except BaseException as error:  # reported to the test thread
            errors.append(error)

    threads = [threading.Thread(target=pay) for _ in range(threads_count)]
    run_threads(threads, 60)
    assert not errors
    allowed = [d for d in results if d.outcome == "allow"]
    assert len(allowed) == 1 and allowed[0].approval_id == approval_id
    waiting = {d.approval_id for d in results if d.outcome == "require_approval"}
    assert len(waiting) == 1 and approval_id not in waiting  # one new request, shared
    assert len(results) == threads_count


# Binding: environment, amount, recipient, currency -------------------------------------------


def test_an_approval_made_in_staging_never_authorizes_production(open_warden: OpenWarden) -> None:
    with open_warden(POLICY, environment="staging") as staging:
        staging.add_operator("alice", name="Alice")
        pending = _pending(staging)
        approval_id = str(pending.approval_id)
        assert staging.approval(approval_id).intent.environment == "staging"
        staging.approve(approval_id, operator="alice", reason="staging test")
    with open_warden(POLICY, environment="production") as production:
        decision = production.authorize(_intent())
        assert decision.outcome == "require_approval"
        assert decision.approval_id != approval_id
        assert production.approval(approval_id).status == "approved"  # untouched
        # Naming staging explicitly in production is refused, not matched to the approval.
        mismatch = production.authorize(_intent(environment="staging"))
        assert (mismatch.outcome, mismatch.reason_code) == ("deny", "environment_mismatch")
        assert production.approval(approval_id).status == "approved"
    with open_warden(POLICY, environment="staging") as staging:
        used = staging.authorize(_intent())
        assert (used.outcome, used.approval_id) == ("allow", approval_id)


def test_the_environment_named_in_the_intent_is_bound_too(open_warden: OpenWarden) -> None:
    """One ledger, two deployments: an approval given in staging never pays in production."""
    with (
        open_warden(POLICY, environment="staging") as staging,
        open_warden(POLICY) as production,
    ):
        staging.add_operator("alice", name="Alice Example")
        approval_id = str(_pending(staging, _intent(environment="staging")).approval_id)
        staging.approve(approval_id, operator="alice", reason="ok")
        in_production = production.authorize(_intent(environment="production"))
        assert in_production.outcome == "require_approval"
        assert in_production.approval_id != approval_id
        unspecified = production.authorize(_intent())  # the deployment's own: production
        assert unspecified.approval_id == in_production.approval_id
        foreign = production.authorize(_intent(environment="staging"))
        assert (foreign.outcome, foreign.reason_code) == ("deny", "environment_mismatch")
        assert staging.authorize(_intent()).outcome == "allow"  # staging's own, approved


@pytest.mark.parametrize(
    "change",
    [
        {"amount": "500.01"},
        {"amount": "499.99"},
        {"recipient": "other-vendor.example.com"},
        {"currency": "EUR"},
        {"action": "payments.payout"},
        {"session_id": "s-2"},
        {"metadata": {"invoice": "43"}},
    ],
    ids=lambda change: next(iter(change)),
)
def test_a_changed_intent_opens_a_new_request_and_leaves_the_approval_unused(
    warden: Warden, change: dict[str, Any]
) -> None:
    approval_id = str(_pending(warden).approval_id)
    warden.approve(approval_id, operator="alice", reason="for exactly this payment")
    changed = warden.authorize(_intent(**change))
    assert changed.outcome == "require_approval"
    assert changed.approval_id not in (None, approval_id)
    assert warden.approval(approval_id).status == "approved"
    assert warden.approval(str(changed.approval_id)).status == "pending"
    # The exact intent still uses its approval.
    assert warden.authorize(_intent()).approval_id == approval_id


def test_recipient_spelling_and_free_text_do_not_change_the_binding(warden: Warden) -> None:
    approval_id = str(_pending(warden).approval_id)
    warden.approve(approval_id, operator="alice", reason="ok")
    same = _intent(recipient="VENDOR.example.com.", purpose="other words", recipient_name="V")
    used = warden.authorize(same)
    assert (used.outcome, used.approval_id) == ("allow", approval_id)


# Re-checks at approval time ------------------------------------------------------------------


def test_approval_rechecks_deny_rules_added_since_the_request(
    database: Path, open_warden: OpenWarden
) -> None:
    with open_warden(POLICY) as warden:
        warden.add_operator("alice", name="Alice")
        pending = _pending(warden)
        assert _held(warden) == 50_000
    with open_warden(FREEZE_VENDOR) as warden:
        view = warden.approve(str(pending.approval_id), operator="alice", reason="ok")
        assert view.status == "rejected"
        assert view.row.note is not None and "at approval time" in view.row.note
        assert warden.hold(str(pending.hold_id)).state == "voided"
        assert _held(warden) == 0
        denied = warden.authorize(_intent())
        assert (denied.outcome, denied.reason_code) == ("deny", "denied_by_rule")
        with pytest.raises(StateConflictError):
            warden.approve(str(pending.approval_id), operator="alice", reason="again")
        assert kinds_of(database, str(pending.approval_id)) == [
            "approval.requested",
            "approval.approve_vote",
            "approval.rejected",
        ]
        assert warden.verify_audit().ok


def test_approval_rechecks_a_lowered_budget(open_warden: OpenWarden) -> None:
    with open_warden(POLICY) as warden:
        warden.add_operator("alice", name="Alice")
        pending = _pending(warden)
    with open_warden(LOWERED_BUDGET) as warden:
        view = warden.approve(str(pending.approval_id), operator="alice", reason="ok")
        assert view.status == "rejected"
        assert view.row.note is not None and "budget `daily`" in view.row.note
        assert warden.hold(str(pending.hold_id)).state == "voided"
        assert _held(warden) == 0


def test_approval_within_the_budget_is_not_rejected_by_its_own_hold(
    open_warden: OpenWarden,
) -> None:
    exact = POLICY.replace('limit: "10000.00"', 'limit: "500.00"')
    with open_warden(exact) as warden:
        warden.add_operator("alice", name="Alice")
        pending = _pending(warden)  # holds the whole 500.00 budget
        assert warden.approve(str(pending.approval_id), operator="alice", reason="ok").status == (
            "approved"
        )


def test_a_deny_rule_added_after_approval_voids_it_at_use_and_audits_that(
    database: Path, open_warden: OpenWarden
) -> None:
    with open_warden(POLICY) as warden:
        warden.add_operator("alice", name="Alice")
        pending = _pending(warden)
        warden.approve(str(pending.approval_id), operator="alice", reason="ok")
    with open_warden(FREEZE_VENDOR) as warden:
        denied = warden.authorize(_intent())
        assert (denied.outcome, denied.reason_code) == ("deny", "denied_by_rule")
        assert warden.approval(str(pending.approval_id)).status == "voided"
        assert warden.hold(str(pending.hold_id)).state == "voided"
        assert _held(warden) == 0
        kinds = kinds_of(database, str(pending.approval_id))
        assert kinds[-1] == "approval.voided", kinds
        assert warden.verify_audit().ok


# Rejection and voiding -----------------------------------------------------------------------


def test_a_rejected_request_releases_its_hold_and_cannot_be_approved(
    warden: Warden, database: Path
) -> None:
    pending = _pending(warden, _intent("1500.00"))  # four eyes: one rejection is enough
    approval_id = str(pending.approval_id)
    warden.approve(approval_id, operator="alice", reason="fine by me")
    view = warden.reject(approval_id, operator="bob", reason="unknown vendor")
    assert view.status == "rejected"
    assert view.row.note == "rejected by bob: unknown vendor"
    assert warden.hold(str(pending.hold_id)).state == "voided"
    assert _held(warden) == 0
    for act in (warden.approve, warden.reject):
        with pytest.raises(StateConflictError, match="already rejected"):
            act(approval_id, operator="bob", reason="again")
    with pytest.raises(StateConflictError):
        warden.capture(str(pending.hold_id))
    assert kinds_of(database, approval_id) == [
        "approval.requested",
        "approval.approve_vote",
        "approval.reject_vote",
        "approval.rejected",
    ]
    rejected = json.loads(list(entries(database, approval_id))[-1].body)
    assert rejected["actor"] == "operator:bob" and "unknown vendor" in rejected["note"]
    assert warden.verify_audit().ok


def test_voiding_the_hold_closes_the_request(warden: Warden, database: Path) -> None:
    pending = _pending(warden)
    approval_id = str(pending.approval_id)
    warden.void(str(pending.hold_id), actor="agent-a")
    assert warden.approval(approval_id).status == "voided"
    with pytest.raises(StateConflictError, match="already voided"):
        warden.approve(approval_id, operator="alice", reason="ok")
    assert kinds_of(database, approval_id) == ["approval.requested", "approval.voided"]


# The audit trail ------------------------------------------------------------------------------


def test_every_approval_state_change_is_audited_and_the_chain_verifies(
    warden: Warden, clock: FrozenClock, database: Path
) -> None:
    used = _pending(warden, _intent("200.00"))
    rejected = _pending(warden, _intent("300.00"))
    expired = _pending(warden, _intent("400.00"))
    warden.approve(str(used.approval_id), operator="alice", reason="ok")
    assert warden.authorize(_intent("200.00")).outcome == "allow"
    warden.reject(str(rejected.approval_id), operator="bob", reason="no")
    clock.advance(16 * 60)
    warden.expire_due()
    assert kinds_of(database, str(used.approval_id)) == [
        "approval.requested",
        "approval.approve_vote",
        "approval.approved",
        "approval.consumed",
    ]
    assert kinds_of(database, str(rejected.approval_id)) == [
        "approval.requested",
        "approval.reject_vote",
        "approval.rejected",
    ]
    assert kinds_of(database, str(expired.approval_id)) == [
        "approval.requested",
        "approval.expired",
    ]
    votes = [json.loads(entry.body) for entry in entries(database) if entry.kind.endswith("_vote")]
    assert [(v["actor"], v["vote"], v["reason"]) for v in votes] == [
        ("operator:alice", "approve", "ok"),
        ("operator:bob", "reject", "no"),
    ]
    assert [e.ref_id for e in entries(database) if e.kind == "operator.added"] == [
        "alice",
        "bob",
    ]
    result = warden.verify_audit()
    assert result.ok, result.reason
