"""The governance article's agent-governance-policy.yaml loads verbatim and decides as it says."""

from __future__ import annotations

from pathlib import Path

import pytest

from paywarden import PaymentIntent, Warden
from paywarden.policy import check_policy
from paywarden.testing import example_intent
from support.wardens import OpenWarden

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "agent-governance-policy.yaml"
SEED = Path("/work/shared/seeds/003_cb3de6477596ea5f.txt")
pytestmark = pytest.mark.clock("2026-01-07T15:00:00+00:00")


def _call(cost: str) -> PaymentIntent:
    return example_intent(
        cost,
        agent="research-agent",
        action="tools.pay",
        recipient="api.example.com",
        session_id="session-1",
    )


def _in_phase(warden: Warden, phase: str | None) -> None:
    """Walk the agent's tracked session to `phase` (the phase is server-side state)."""
    if phase is None:
        return
    warden.start_session("research-agent", "session-1")
    for step in ("DECIDE", "COMMIT")[: ("EXPLORE", "DECIDE", "COMMIT").index(phase)]:
        warden.advance_phase("research-agent", "session-1", step)


@pytest.fixture
def warden(open_warden: OpenWarden) -> Warden:
    return open_warden(FIXTURE, database=":memory:")


@pytest.mark.skipif(not SEED.exists(), reason="the seed documents are not in this checkout")
def test_fixture_is_the_article_template_verbatim() -> None:
    seed = SEED.read_text(encoding="utf-8")
    assert FIXTURE.read_text(encoding="utf-8") in seed


def test_loads_as_a_governance_policy_with_only_warnings() -> None:
    policy, report = check_policy(FIXTURE.read_text(encoding="utf-8"), FIXTURE.name)
    assert policy is not None, report.lines()
    assert policy.dialect == "governance"
    assert report.errors == []
    assert [rule.rule_id for rule in policy.rules] == [
        "phases.allowed_payment_phase",
        "block_explore_payments",
        "require_approval_high_cost",
        "halt_budget_exhaustion",
        "budget.single_call_threshold",
        "governance.allow_within_budget",
    ]
    [budget] = policy.budgets
    assert (budget.budget_id, budget.limit.amount_minor, budget.scope) == (
        "session",
        1000,
        "session",
    )


def test_cost_above_the_threshold_in_commit_needs_approval(warden: Warden) -> None:
    with warden:
        _in_phase(warden, "COMMIT")
        decision = warden.authorize(_call("0.60"))
    assert decision.outcome == "require_approval"
    assert "require_approval_high_cost" in decision.rule_ids
    assert decision.reason_code == "approval_required"


@pytest.mark.parametrize("phase", ["EXPLORE", "DECIDE", None])
def test_any_payment_outside_commit_is_denied(warden: Warden, phase: str | None) -> None:
    with warden:
        _in_phase(warden, phase)
        decision = warden.authorize(_call("0.01"))
    assert decision.outcome == "deny"
    assert decision.reason_code == "denied_by_rule"
    assert {"block_explore_payments", "phases.allowed_payment_phase"} & set(decision.rule_ids)


def test_cost_within_the_threshold_in_commit_is_allowed_by_the_explicit_rule(
    warden: Warden,
) -> None:
    with warden:
        _in_phase(warden, "COMMIT")
        decision = warden.authorize(_call("0.30"))
    assert (decision.outcome, decision.rule_ids) == ("allow", ("governance.allow_within_budget",))
