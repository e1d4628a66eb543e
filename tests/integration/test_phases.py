"""Agent session phases: EXPLORE -> DECIDE -> COMMIT tracked server-side, each move audited,
other moves refused; payments only in COMMIT unless the policy says otherwise; the phase is part
of the decision and cannot be stated by the agent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from paywarden import InvalidInputError, NotFoundError, PaymentIntent, Warden
from paywarden.errors import PhaseTransitionError
from paywarden.testing import example_intent
from support.wardens import OpenWarden

POLICY = """
currency: USD
{sessions}
rules:
  - {{id: big, effect: require_approval, amount: {{gt: 100}}, phases: [COMMIT]}}
  - {{id: pay, effect: allow, actions: ["payments.*"]}}
"""


def _open(open_warden: OpenWarden, sessions: str = "", **options: Any) -> Warden:
    return open_warden(POLICY.format(sessions=sessions), **options)


@pytest.fixture
def warden(open_warden: OpenWarden) -> Warden:
    return _open(open_warden)


def _intent(
    amount: str = "10.00", session: str | None = "s1", agent: str = "ap-agent"
) -> PaymentIntent:
    return example_intent(amount, session_id=session, agent=agent)


def test_a_session_walks_explore_decide_commit_and_each_move_is_audited(warden: Warden) -> None:
    started = warden.start_session("ap-agent", "s1")
    assert started.phase == "EXPLORE"
    assert warden.advance_phase("ap-agent", "s1", "decide").phase == "DECIDE"
    assert warden.advance_phase("ap-agent", "s1", "COMMIT").phase == "COMMIT"
    assert warden.session("ap-agent", "s1").phase == "COMMIT"
    trail = warden.audit_trail("ap-agent/s1")
    assert [entry.kind for entry in trail] == ["session.started", "session.phase", "session.phase"]
    assert warden.verify_audit().ok


@pytest.mark.parametrize(
    ("walk", "target"),
    [
        ((), "COMMIT"),  # skipping DECIDE
        ((), "EXPLORE"),  # staying is not a move
        (("DECIDE",), "EXPLORE"),  # backwards
        (("DECIDE", "COMMIT"), "DECIDE"),  # COMMIT is final
        (("DECIDE", "COMMIT"), "COMMIT"),
    ],
)
def test_every_other_move_is_refused_and_changes_nothing(
    warden: Warden, walk: tuple[str, ...], target: str
) -> None:
    warden.start_session("ap-agent", "s1")
    for phase in walk:
        warden.advance_phase("ap-agent", "s1", phase)
    before = len(warden.audit_trail("ap-agent/s1"))
    with pytest.raises(PhaseTransitionError, match="cannot move"):
        warden.advance_phase("ap-agent", "s1", target)
    assert warden.session("ap-agent", "s1").phase == (walk[-1] if walk else "EXPLORE")
    assert len(warden.audit_trail("ap-agent/s1")) == before


def test_bad_phase_names_unknown_sessions_and_duplicates_are_errors(warden: Warden) -> None:
    with pytest.raises(InvalidInputError, match="unknown phase"):
        warden.advance_phase("ap-agent", "s1", "SHIP")
    with pytest.raises(NotFoundError):
        warden.advance_phase("ap-agent", "nope", "DECIDE")
    warden.start_session("ap-agent", "s1")
    with pytest.raises(PhaseTransitionError, match="already exists"):
        warden.start_session("ap-agent", "s1")
    with pytest.raises(InvalidInputError):
        warden.start_session("ap agent with spaces", "s2")
    assert warden.start_session("ap-agent").session_id.startswith("ses_")


def test_payments_are_denied_until_the_session_commits(warden: Warden) -> None:
    warden.start_session("ap-agent", "s1")
    explore = warden.authorize(_intent())
    assert (explore.outcome, explore.reason_code) == ("deny", "phase_not_allowed")
    assert explore.trace.phase == "EXPLORE"
    assert "EXPLORE" in explore.reason
    warden.advance_phase("ap-agent", "s1", "DECIDE")
    assert warden.authorize(_intent()).reason_code == "phase_not_allowed"
    warden.advance_phase("ap-agent", "s1", "COMMIT")
    commit = warden.authorize(_intent())
    assert (commit.outcome, commit.trace.phase) == ("allow", "COMMIT")
    big = warden.authorize(_intent("150.00"))
    assert big.reason_code == "approval_required"  # rules see the phase too


def test_the_phase_is_the_agents_own_session_never_another_agents(warden: Warden) -> None:
    warden.start_session("ap-agent", "s1")
    for phase in ("DECIDE", "COMMIT"):
        warden.advance_phase("ap-agent", "s1", phase)
    other = warden.authorize(_intent(session="s1", agent="other-agent"))
    assert other.trace.phase is None  # "s1" of another agent is not tracked


def test_untracked_sessions_are_not_gated_unless_the_policy_requires_a_session(
    tmp_path: Path, open_warden: OpenWarden
) -> None:
    with _open(open_warden) as warden:
        assert warden.authorize(_intent(session=None)).allowed
        assert warden.authorize(_intent(session="fresh")).allowed
    strict = tmp_path / "strict"
    strict.mkdir()
    with _open(open_warden, "sessions: {required: true}", database=strict / "p.db") as warden:
        for session in (None, "fresh"):
            decision = warden.authorize(_intent(session=session))
            assert (decision.outcome, decision.reason_code) == ("deny", "phase_required")
        warden.start_session("ap-agent", "s1")
        warden.advance_phase("ap-agent", "s1", "DECIDE")
        warden.advance_phase("ap-agent", "s1", "COMMIT")
        assert warden.authorize(_intent()).allowed


def test_the_policy_can_allow_payments_in_other_phases(open_warden: OpenWarden) -> None:
    with _open(open_warden, "sessions: {payment_phases: [DECIDE, COMMIT]}") as warden:
        warden.start_session("ap-agent", "s1")
        assert warden.authorize(_intent()).reason_code == "phase_not_allowed"
        warden.advance_phase("ap-agent", "s1", "DECIDE")
        assert warden.authorize(_intent()).allowed


@pytest.mark.parametrize(
    ("sessions", "message"),
    [
        ("sessions: {payment_phases: [SHIP]}", "unknown phase `SHIP`"),
        ("sessions: {payment_phases: []}", "must be a list of phases"),
        ("sessions: {required: maybe}", "must be true or false"),
        ("sessions: {phases: [COMMIT]}", "`sessions` must be a mapping"),
        ("refunds: {budget_effect: give_back}", "`budget_effect` must be `keep`"),
        ("compensation: {default_action: pray}", "`default_action` must be `refund`"),
    ],
)
def test_bad_workflow_settings_are_compile_errors(sessions: str, message: str) -> None:
    from paywarden.policy import check_policy

    policy, report = check_policy(POLICY.format(sessions=sessions))
    assert policy is None
    assert any(message in line for line in report.lines()), report.lines()
