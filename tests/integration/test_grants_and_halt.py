"""Grants (an operator's standing, bounded permission in place of per-payment approvals) and
the kill switch (halt, resume, per-agent scope, voiding pending requests).

Every test uses a SQLite file under `tmp_path` and a `FrozenClock`.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from paywarden import (
    FrozenClock,
    InvalidInputError,
    Money,
    NotFoundError,
    Warden,
)
from paywarden.actions.grants import GrantRequest
from paywarden.errors import ForbiddenError
from paywarden.policy.decision import Decision
from paywarden.testing import example_intent
from support.audit import bodies
from support.intents import intent_builder
from support.wardens import OpenWarden, add_operators, grant_request
from support.workers import run_threads

POLICY = """
currency: USD
rules:
  - id: blocked
    effect: deny
    recipients: ["blocked.example.com"]
  - id: review
    effect: require_approval
    actions: ["payments.*"]
    amount: {gt: 1000}
  - id: allow-payments
    effect: allow
    actions: ["payments.*"]
budgets:
  - id: daily
    limit: "50000.00"
    window: day
  - id: per-agent
    limit: "30000.00"
    window: day
    scope: agent
"""
# Room for every racer's payment, so only the grant decides between allow and approval.
ROOMY = POLICY.replace('limit: "30000.00"', 'limit: "100000.00"')


_intent = intent_builder("2500.00")


@pytest.fixture
def warden(open_warden: OpenWarden) -> Warden:
    return add_operators(open_warden(POLICY))


def _held(warden: Warden) -> int:
    return sum(row.held_minor for row in warden.budgets() if row.budget_id == "daily")


def _outcome(decision: Decision) -> tuple[str, str]:
    return decision.outcome, decision.reason_code


# Grants --------------------------------------------------------------------------------------


def test_a_grant_with_a_2500_ceiling_allows_2500_and_not_9999(warden: Warden) -> None:
    grant = warden.grant(grant_request(), operator="alice")
    allowed = warden.authorize(_intent("2500.00"))
    assert _outcome(allowed) == ("allow", "allowed_by_grant")
    assert f"grant:{grant.grant_id}" in allowed.rule_ids
    assert grant.grant_id in allowed.reason and "alice" in allowed.reason
    assert allowed.hold_id is not None and allowed.approval_id is None
    assert warden.capture(allowed.hold_id).state == "captured"  # no approval stands in the way
    for amount in ("9999.00", "2500.01"):
        over = warden.authorize(_intent(amount))
        assert _outcome(over) == ("require_approval", "approval_required")
        assert over.approval_id is not None
    [row] = warden.grants("agent-a")
    assert (row.used_minor, row.uses) == (250_000, 1)
    assert warden.decision(str(allowed.decision_id)).reason_code == "allowed_by_grant"


def test_a_grant_never_overrides_a_deny(warden: Warden, open_warden: OpenWarden) -> None:
    warden.grant(grant_request("2500.00", "10000.00"), operator="alice")
    by_rule = warden.authorize(_intent("2000.00", recipient="blocked.example.com"))
    assert _outcome(by_rule) == ("deny", "denied_by_rule")
    # The per-agent budget (30,000) is a hard limit a grant does not lift.
    with open_warden(POLICY.replace('limit: "30000.00"', 'limit: "3000.00"')) as tight:
        assert _outcome(tight.authorize(_intent("2500.00"))) == ("allow", "allowed_by_grant")
        over_budget = tight.authorize(_intent("2000.00"))
        assert over_budget.outcome == "deny"
        assert over_budget.reason_code != "allowed_by_grant"
        [row] = tight.grants("agent-a")
    assert (row.used_minor, row.uses) == (250_000, 1)  # denied payments use nothing


def test_a_grant_does_not_cover_other_agents_actions_recipients_or_currencies(
    warden: Warden,
) -> None:
    warden.grant(
        grant_request(action="payments.transfer", recipients=("*.vendor.example.com",)),
        operator="alice",
    )
    not_covered = [
        _intent(agent="agent-b", recipient="a.vendor.example.com"),
        _intent(action="payments.payout", recipient="a.vendor.example.com"),
        _intent(recipient="elsewhere.example.com"),
        _intent("2000.00", currency="EUR", recipient="a.vendor.example.com"),
    ]
    for intent in not_covered:
        decision = warden.authorize(intent)
        assert decision.reason_code != "allowed_by_grant", intent
        assert decision.outcome != "allow", intent
    covered = warden.authorize(_intent(recipient="A.Vendor.Example.com"))
    assert _outcome(covered) == ("allow", "allowed_by_grant")
    assert [row.uses for row in warden.grants()] == [1]


def test_payments_that_need_no_approval_do_not_use_a_grant(warden: Warden) -> None:
    warden.grant(grant_request(), operator="alice")
    assert _outcome(warden.authorize(_intent("1000.00"))) == ("allow", "allowed")
    [row] = warden.grants()
    assert (row.used_minor, row.uses) == (0, 0)


def test_a_grant_stops_at_its_total_and_its_uses(warden: Warden) -> None:
    warden.grant(grant_request("2500.00", "6000.00"), operator="alice")
    outcomes = [warden.authorize(_intent("2500.00", purpose=str(n))).reason_code for n in range(3)]
    assert outcomes == ["allowed_by_grant", "allowed_by_grant", "approval_required"]
    # 1,000 remains in the total: a smaller payment still fits.
    assert warden.authorize(_intent("1000.01")).reason_code == "approval_required"
    assert warden.authorize(_intent("1000.00")).reason_code == "allowed"  # needs no grant
    limited = warden.grant(
        grant_request("2500.00", "10000.00", agent="agent-b", uses_max=2), operator="bob"
    )
    results = [warden.authorize(_intent("1500.00", agent="agent-b")) for _ in range(3)]
    assert [d.reason_code for d in results] == [
        "allowed_by_grant",
        "allowed_by_grant",
        "approval_required",
    ]
    [row] = warden.grants("agent-b")
    assert (row.grant_id, row.uses, row.used_minor) == (limited.grant_id, 2, 300_000)


def test_a_grant_ends_when_it_expires(warden: Warden, clock: FrozenClock) -> None:
    warden.grant(grant_request(expires_in_seconds=600), operator="alice")
    clock.advance(599)
    assert warden.authorize(_intent()).reason_code == "allowed_by_grant"
    assert len(warden.grants(active_only=True)) == 1
    clock.advance(1)
    assert warden.authorize(_intent()).reason_code == "approval_required"
    assert warden.grants(active_only=True) == [] and len(warden.grants()) == 1


def test_a_grant_is_revocable_and_every_change_is_audited(warden: Warden, database: Path) -> None:
    grant = warden.grant(grant_request(), operator="alice")
    assert warden.authorize(_intent()).reason_code == "allowed_by_grant"
    revoked = warden.revoke_grant(grant.grant_id, operator="bob")
    assert revoked.revoked_us is not None
    assert warden.authorize(_intent()).reason_code == "approval_required"
    assert warden.grants(active_only=True) == []
    # Revoking again changes nothing and is not audited twice.
    assert warden.revoke_grant(grant.grant_id, operator="alice").revoked_us == revoked.revoked_us
    created = bodies(database, "grant.created")
    assert len(created) == 1
    assert (created[0]["actor"], created[0]["per_payment_minor"], created[0]["total_minor"]) == (
        "operator:alice",
        250_000,
        1_000_000,
    )
    used = bodies(database, "grant.used")
    assert [(u["actor"], u["grant_id"], u["amount_minor"]) for u in used] == [
        ("agent:agent-a", grant.grant_id, 250_000)
    ]
    assert [r["actor"] for r in bodies(database, "grant.revoked")] == ["operator:bob"]
    assert warden.verify_audit().ok


def test_only_registered_operators_grant_and_revoke_and_never_for_themselves(
    warden: Warden,
) -> None:
    for operator in ("agent-a", "mallory"):
        with pytest.raises(ForbiddenError):
            warden.grant(grant_request(), operator=operator)
    warden.add_operator("agent-a", name="An agent registered by mistake")
    with pytest.raises(ForbiddenError, match="requested"):
        warden.grant(grant_request(agent="agent-a"), operator="agent-a")
    assert warden.grants() == []
    grant = warden.grant(grant_request(), operator="alice")
    with pytest.raises(ForbiddenError):
        warden.revoke_grant(grant.grant_id, operator="mallory")
    with pytest.raises(NotFoundError):
        warden.revoke_grant("grant_missing", operator="alice")
    assert warden.grants(active_only=True) == [grant]


@pytest.mark.parametrize(
    "request_",
    [
        grant_request("3000.00", "2500.00"),  # per payment above the total
        GrantRequest("agent-a", "payments.*", Money(0, "USD", 2), Money.parse("10", "USD"), 60),
        grant_request(expires_in_seconds=0),
        grant_request(expires_in_seconds=29 * 86_400),
        grant_request(uses_max=0),
        GrantRequest(
            "agent-a", "payments.*", Money.parse("10", "USD"), Money.parse("10", "EUR"), 60
        ),
    ],
)
def test_an_invalid_grant_is_refused(warden: Warden, request_: GrantRequest) -> None:
    with pytest.raises(InvalidInputError):
        warden.grant(request_, operator="alice")
    assert warden.grants() == []


@pytest.mark.parametrize(("uses_max", "expected"), [(None, 3), (2, 2)])
def test_concurrent_payments_never_take_a_grant_past_its_total_or_uses(
    database: Path, uses_max: int | None, expected: int, open_warden: OpenWarden
) -> None:
    with open_warden(ROOMY) as warden:
        warden.add_operator("alice", name="Alice")
        grant = warden.grant(
            grant_request("3000.00", "10000.00", uses_max=uses_max), operator="alice"
        )
    racers, per_racer = 6, 2
    barrier = threading.Barrier(racers)
    results: list[Decision] = []
    errors: list[BaseException] = []

    def pay(index: int) -> None:
        try:
            with open_warden(ROOMY) as racer:
                barrier.wait(timeout=30)
                for number in range(per_racer):
                    results.append(
                        racer.authorize(
                            _intent("3000.00", recipient=f"v{index}-{number}.example.com")
                        )
                    )
        except BaseException as error:  # reported to the test thread
            errors.append(error)

    threads = [threading.Thread(target=pay, args=(index,)) for index in range(racers)]
    run_threads(threads, 60)
    assert not errors
    assert len(results) == racers * per_racer
    codes = [decision.reason_code for decision in results]
    assert codes.count("allowed_by_grant") == expected  # floor(10000 / 3000) = 3
    assert codes.count("approval_required") == len(results) - expected
    with open_warden(ROOMY) as warden:
        [row] = warden.grants()
        assert (row.grant_id, row.uses, row.used_minor) == (
            grant.grant_id,
            expected,
            expected * 300_000,
        )
        assert len(bodies(database, "grant.used")) == expected
        assert warden.verify_audit().ok


# Halt and resume -----------------------------------------------------------------------------


def test_halt_denies_every_agent_and_holds_nothing_until_resume(
    warden: Warden, database: Path
) -> None:
    before = warden.authorize(_intent("10.00"))
    assert before.outcome == "allow"
    halt = warden.halt(reason="incident 7", actor="alice")
    assert (halt.scope, halt.reason, halt.actor) == ("*", "incident 7", "alice")
    held = _held(warden)
    for agent in ("agent-a", "agent-b"):
        denied = warden.authorize(_intent("10.00", agent=agent))
        assert _outcome(denied) == ("deny", "halted")
        assert "incident 7" in denied.reason and "all agents" in denied.reason
        assert denied.rule_ids == ("halt:*",) and denied.hold_id is None
    assert _held(warden) == held
    assert [row.scope for row in warden.halts()] == ["*"]
    assert warden.resume(actor="bob") is True
    assert warden.halts() == []
    assert warden.authorize(_intent("10.00")).outcome == "allow"
    assert warden.resume(actor="bob") is False  # nothing left to lift
    assert [b["actor"] for b in bodies(database, "halt.set")] == ["alice"]
    assert [(b["actor"], b["scope"]) for b in bodies(database, "halt.cleared")] == [("bob", "*")]
    assert warden.verify_audit().ok


def test_a_halt_overrides_grants_and_approvals_without_using_them(warden: Warden) -> None:
    warden.grant(grant_request(), operator="alice")
    pending = warden.authorize(_intent("5000.00"))
    warden.approve(str(pending.approval_id), operator="alice", reason="ok")
    warden.halt(reason="stop", actor="alice")
    assert _outcome(warden.authorize(_intent("2500.00"))) == ("deny", "halted")
    assert _outcome(warden.authorize(_intent("5000.00"))) == ("deny", "halted")
    assert [row.uses for row in warden.grants()] == [0]
    assert warden.approval(str(pending.approval_id)).status == "approved"
    warden.resume(actor="alice")
    assert warden.authorize(_intent("2500.00")).reason_code == "allowed_by_grant"
    assert warden.authorize(_intent("5000.00")).reason_code == "approved"


def test_an_agent_halt_stops_only_that_agent(warden: Warden) -> None:
    warden.halt("agent-a", reason="looping", actor="alice")
    denied = warden.authorize(_intent("10.00"))
    assert _outcome(denied) == ("deny", "halted") and "agent `agent-a`" in denied.reason
    assert warden.authorize(_intent("10.00", agent="agent-b")).outcome == "allow"
    # Lifting the global scope does not lift the agent's halt, and the other way round.
    assert warden.resume(actor="alice") is False
    warden.halt(reason="everything", actor="bob")
    assert warden.resume("agent-a", actor="alice") is True
    assert _outcome(warden.authorize(_intent("10.00"))) == ("deny", "halted")
    assert warden.resume(actor="bob") is True
    assert warden.authorize(_intent("10.00")).outcome == "allow"


def test_halting_twice_keeps_the_first_halt(warden: Warden, database: Path) -> None:
    warden.halt(reason="first", actor="alice")
    again = warden.halt(reason="second", actor="bob")
    assert (again.reason, again.actor) == ("first", "alice")
    assert len(bodies(database, "halt.set")) == 1
    with pytest.raises(InvalidInputError):
        warden.halt("agent-a", reason="  ", actor="alice")


def test_halt_with_void_pending_releases_that_agents_holds(warden: Warden, database: Path) -> None:
    pending_a = warden.authorize(_intent("5000.00"))
    approved_a = warden.authorize(_intent("6000.00"))
    warden.approve(str(approved_a.approval_id), operator="alice", reason="ok")
    pending_b = warden.authorize(_intent("7000.00", agent="agent-b"))
    assert _held(warden) == 1_800_000
    warden.halt("agent-a", reason="compromised", actor="bob", void_pending=True)
    for decision in (pending_a, approved_a):
        view = warden.approval(str(decision.approval_id))
        assert view.status == "voided" and view.row.note == "voided by halt: compromised"
        assert warden.hold(str(decision.hold_id)).state == "voided"
    assert warden.approval(str(pending_b.approval_id)).status == "pending"
    assert warden.hold(str(pending_b.hold_id)).state == "held"
    assert _held(warden) == 700_000
    voided = bodies(database, "approval.voided")
    assert sorted(v["approval_id"] for v in voided) == sorted(
        [str(pending_a.approval_id), str(approved_a.approval_id)]
    )
    assert {v["actor"] for v in voided} == {"bob"}
    # After resume the voided approval authorizes nothing: the payment asks again.
    warden.resume("agent-a", actor="bob")
    retry = warden.authorize(_intent("6000.00"))
    assert retry.outcome == "require_approval" and retry.approval_id != approved_a.approval_id
    assert warden.verify_audit().ok


def test_a_global_halt_with_void_pending_voids_everyones_requests(warden: Warden) -> None:
    pending = [warden.authorize(_intent("5000.00", agent=f"agent-{n}")) for n in "abc"]
    warden.halt(reason="all stop", actor="alice", void_pending=True)
    assert [warden.approval(str(d.approval_id)).status for d in pending] == ["voided"] * 3
    assert _held(warden) == 0


def test_a_halt_without_void_pending_keeps_requests_and_holds(warden: Warden) -> None:
    pending = warden.authorize(_intent("5000.00"))
    warden.halt(reason="pause", actor="alice")
    assert warden.approval(str(pending.approval_id)).status == "pending"
    assert _held(warden) == 500_000


def test_a_grant_never_covers_an_intent_past_a_budgets_restrict_gate(
    open_warden: OpenWarden,
) -> None:
    """A rule asks for approval and the budget is past its restrict gate: a person decides."""
    policy = """
currency: USD
rules:
  - {id: big, effect: require_approval, actions: [payments.transfer], amount: {gt: 100}}
  - {id: ok, effect: allow, actions: [payments.transfer]}
budgets:
  - {id: daily, limit: 1000, window: day, scope: agent, gates: {restrict: 0.5}}
"""
    with open_warden(policy) as warden:
        warden.add_operator("alice", name="Alice")
        warden.grant(grant_request("1000", "1000"), operator="alice")
        intent = example_intent("600", recipient="vendor")
        decision = warden.authorize(intent)
        assert decision.outcome == "require_approval"
        assert decision.reason_code == "approval_required"
        assert warden.grants()[0].uses == 0
