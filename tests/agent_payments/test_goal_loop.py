"""The goal loop with the offline planner and scripted planners: adaptation, splits stopped by
the cumulative budget, approvals, planner failures, and a property: whatever a planner writes,
nothing is paid that the policy would not allow (per payment and in total)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import pytest
from agent_support import GOAL_POLICY, ScriptedPlanner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paywarden import FrozenClock, Warden
from paywarden.actions.goals import attempts_of
from paywarden.agents.offline import OfflinePlanner
from paywarden.agents.port import Feedback
from paywarden.errors import InvalidInputError
from support.wardens import OpenWarden


@pytest.fixture
def warden(open_warden: OpenWarden) -> Warden:
    return open_warden(GOAL_POLICY)


def _paid(warden: Warden) -> list[int]:
    return sorted(p.amount_minor for p in warden.payments(state="settled"))


def test_the_offline_planner_adapts_a_laptop_to_the_policy(warden: Warden) -> None:
    row = warden.run_goal("Buy a MacBook Pro for the new engineer", agent="agent-a")
    assert row.status == "paid"
    assert [a["outcome"] for a in attempts_of(row)] == ["denied", "paid"]
    assert _paid(warden) == [129900]


def test_a_split_of_a_denied_amount_is_stopped_by_the_budget(warden: Warden) -> None:
    """15,000 denied (per-payment limit) -> 5,000, 5,000, 5,000: the daily budget of 12,000
    stops the third part."""
    row = warden.run_goal("pay vendor.example 15,000 USD for invoice 42", agent="agent-a")
    outcomes = [(a["outcome"], a["reason_code"]) for a in attempts_of(row)]
    assert outcomes == [
        ("denied", "denied_by_rule"),
        ("paid", "allowed"),
        ("paid", "allowed"),
        ("denied", "budget_exceeded"),
    ]
    assert row.status == "exhausted"
    assert _paid(warden) == [500000, 500000]


def test_splits_across_runs_meet_the_same_budget(warden: Warden) -> None:
    script = [json.dumps({"amount": "5000.00", "currency": "USD", "recipient": "v.example"})]
    rows = [
        warden.run_goal("pay 5000", llm=ScriptedPlanner(*script * 4), agent="agent-a")
        for _ in "abc"
    ]
    assert [r.status for r in rows] == ["paid", "paid", "denied"]
    assert sum(_paid(warden)) == 1000000


def test_require_approval_ends_the_run_with_the_approval_pending(warden: Warden) -> None:
    proposal = json.dumps({"amount": "9000.00", "currency": "USD", "recipient": "acme.example"})
    planner = ScriptedPlanner(proposal, proposal)
    row = warden.run_goal("Buy the server rack", llm=planner, agent="agent-a")
    assert row.status == "pending_approval" and len(planner.seen) == 1
    assert row.approval_id is not None
    assert warden.approval(row.approval_id).status == "pending"
    assert warden.payments() == []


def test_a_planner_that_raises_or_hangs_costs_an_attempt(open_warden: OpenWarden) -> None:
    policy = GOAL_POLICY.replace(
        "  max_attempts: 4\n", "  max_attempts: 3\n  llm_timeout_seconds: 1\n"
    )
    warden = open_warden(policy)

    class Slow:
        def propose(self, goal: str, feedback: Sequence[Feedback]) -> str:
            if not feedback:
                raise ConnectionError("connection refused")
            if len(feedback) == 1:
                time.sleep(3)
            return json.dumps({"amount": "10.00", "currency": "USD", "recipient": "a.example"})

    row = warden.run_goal("Buy a pen", llm=Slow(), agent="agent-a")
    assert [a["outcome"] for a in attempts_of(row)] == ["planner_error", "planner_error", "paid"]
    assert "connection refused" in str(attempts_of(row)[0]["reason"])
    assert "within 1s" in str(attempts_of(row)[1]["reason"])


def test_secrets_in_the_goal_or_the_proposal_are_not_stored(warden: Warden) -> None:
    secret = "sk_live_" + "a1B2c3D4e5F6g7H8i9J0kLmN"
    planner = ScriptedPlanner(f'{{"amount": "1.00", "currency": "USD", "recipient": "{secret}"')
    row = warden.run_goal(f"Pay with key {secret}", llm=planner, agent="agent-a", max_attempts=1)
    stored = row.goal + row.attempts + json.dumps([e.body for e in warden.audit_entries(limit=500)])
    assert secret not in stored
    assert secret not in planner.seen[0][0]  # the planner never sees it either


def test_a_secret_in_a_valid_proposal_is_not_stored(warden: Warden) -> None:
    secret = "sk_live_" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2"
    proposal = {"amount": "5.00", "currency": "USD", "recipient": "a.example", "purpose": secret}
    row = warden.run_goal("Buy a pen", llm=ScriptedPlanner(json.dumps(proposal)), agent="agent-a")
    assert row.status == "paid"
    stored = row.attempts + json.dumps([e.body for e in warden.audit_entries(limit=500)])
    assert secret not in stored


def test_a_goal_is_checked_before_anything_is_recorded(warden: Warden) -> None:
    for goal in ("", "   ", "x" * 5000, "pay\u202eevil"):
        with pytest.raises(InvalidInputError):
            warden.run_goal(goal, agent="agent-a")
    assert warden.goal_runs() == []


def test_runs_are_stored_and_listed(warden: Warden, clock: FrozenClock) -> None:
    first = warden.run_goal("Buy a monitor", agent="agent-a")
    clock.advance(1)  # newest first (ties by id)
    second = warden.run_goal("Buy a chair", agent="agent-b")
    assert warden.goal_run(first.run_id) == first
    assert [r.run_id for r in warden.goal_runs()] == [second.run_id, first.run_id]
    assert [r.run_id for r in warden.goal_runs("agent-a")] == [first.run_id]


def test_the_offline_planner_is_deterministic() -> None:
    planner = OfflinePlanner()
    goal = "Pay invoice 42: $120.50 to acme.io"
    assert planner.propose(goal, []) == planner.propose(goal, [])
    assert json.loads(planner.propose(goal, []))["amount"] == "120.50"
    assert json.loads(planner.propose(goal, []))["recipient"] == "acme.io"


_ANSWERS = st.one_of(
    st.builds(
        lambda amount, recipient, more: json.dumps(
            {"amount": amount, "currency": "USD", "recipient": recipient, "more": more}
        ),
        st.sampled_from(["0.01", "1999.99", "2000.01", "5000", "9999.99", "10000.01", "1e4", "-1"]),
        st.sampled_from(["a.example", "evil.example", "EVIL.EXAMPLE", "https://evil.example/x"]),
        st.booleans(),
    ),
    st.text(max_size=40),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(scripts=st.lists(st.lists(_ANSWERS, min_size=4, max_size=4), min_size=1, max_size=4))
def test_no_planner_makes_the_loop_pay_more_than_the_policy_allows(
    open_warden: OpenWarden, scripts: list[list[str]]
) -> None:
    warden = open_warden(GOAL_POLICY, database=":memory:")
    for script in scripts:
        row = warden.run_goal("anything", llm=ScriptedPlanner(*script), agent="agent-a")
        assert len(attempts_of(row)) <= 4
    paid = warden.payments(state="settled")
    assert all(p.amount_minor <= 800000 for p in paid)  # above 8,000 needs a human
    assert sum(p.amount_minor for p in paid) <= 1200000  # the daily budget
    assert all(
        p.agent == "agent-a" and "evil" not in json.loads(p.intent)["recipient"] for p in paid
    )


def test_a_run_past_its_deadline_ends_failed(warden: Warden, clock: FrozenClock) -> None:
    class Slowly:
        def propose(self, goal: str, feedback: Sequence[Feedback]) -> str:
            clock.advance(121)  # the policy's default run_timeout_seconds is 120
            return "{}"

    row = warden.run_goal("Buy a pen", llm=Slowly(), agent="agent-a")
    assert (row.status, row.error) == ("failed", "the run took longer than 120s")
    assert len(attempts_of(row)) == 1
