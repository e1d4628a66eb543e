"""Shadow mode: a candidate policy evaluated on every decision, recorded, counted, never
enforced; setting and clearing it are audited and shared through the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paywarden.clock import FrozenClock
from paywarden.errors import InvalidInputError
from paywarden.testing import example_intent
from paywarden.warden import Warden

ENFORCED = """
currency: USD
rules:
  - {id: allow-transfers, effect: allow, actions: [payments.transfer], amount: {lte: 500}}
budgets:
  - {id: daily, limit: 1000, window: day}
"""
CANDIDATE = """
currency: USD
rules:
  - {id: allow-small, effect: allow, actions: [payments.transfer], amount: {lte: 100}}
  - {id: approve-medium, effect: require_approval, amount: {gt: 100, lte: 300}}
budgets:
  - {id: daily, limit: 500, window: day}
"""


def _decision_body(warden: Warden, decision_id: str) -> dict[str, object]:
    entries = [e for e in warden.audit_trail(decision_id) if e.kind == "decision"]
    body: dict[str, object] = json.loads(entries[0].body)
    return body


def test_each_decision_records_its_shadow_outcome_and_the_enforced_one_is_unchanged() -> None:
    clock = FrozenClock("2026-03-02T10:00:00+00:00")
    with Warden.open(ENFORCED, clock=clock) as warden:
        before = warden.authorize(example_intent("50.00"))
        assert "shadow" not in _decision_body(warden, str(before.decision_id))
        candidate = warden.set_shadow_policy(CANDIDATE, actor="alice")
        assert warden.shadow_policy() is not None
        small = warden.authorize(example_intent("60.00"))
        medium = warden.authorize(example_intent("200.00"))
        large = warden.authorize(example_intent("400.00"))
        assert [d.outcome for d in (small, medium, large)] == ["allow"] * 3
        shadows = [
            _decision_body(warden, str(d.decision_id))["shadow"] for d in (small, medium, large)
        ]
        assert shadows[0] == {
            "policy_version": candidate.version,
            "outcome": "allow",
            "reason_code": "allowed",
            "rule_ids": ["allow-small"],
        }
        assert shadows[1]["outcome"] == "require_approval"  # type: ignore[index]
        assert shadows[1]["rule_ids"] == ["approve-medium"]  # type: ignore[index]
        assert shadows[2]["outcome"] == "deny"  # type: ignore[index]
        assert shadows[2]["reason_code"] == "no_rule_matched"  # type: ignore[index]
        stats = warden.shadow_stats()
        assert stats.evaluated_total == 3 and stats.errors_total == 0
        assert stats.shadow_flips_total == 2
        assert stats.flips == {"allow -> deny": 1, "allow -> require_approval": 1}
        assert [b.budget_id for b in warden.budgets()] == ["daily"]
        assert sum(b.held_minor for b in warden.budgets()) == (50 + 60 + 200 + 400) * 100


def test_the_shadow_budget_gate_reads_what_the_ledger_holds() -> None:
    clock = FrozenClock("2026-03-02T10:00:00+00:00")
    with Warden.open(ENFORCED, clock=clock) as warden:
        candidate = CANDIDATE.replace("lte: 100}", "lte: 500}").replace("limit: 500", "limit: 250")
        warden.set_shadow_policy(candidate, actor="alice")
        warden.authorize(example_intent("90.00"))
        second = warden.authorize(example_intent("90.00", idempotency_key="second"))
        third = warden.authorize(example_intent("90.00", idempotency_key="third"))
        assert third.outcome == "allow"
        shadow = _decision_body(warden, str(third.decision_id))["shadow"]
        assert shadow["outcome"] == "deny"  # type: ignore[index]
        assert shadow["reason_code"] == "budget_exceeded"  # type: ignore[index]
        assert _decision_body(warden, str(second.decision_id))["shadow"]["outcome"] == "allow"  # type: ignore[index]


def test_set_and_clear_are_audited_and_shared_through_the_store(tmp_path: Path) -> None:
    database = tmp_path / "ledger.db"
    clock = FrozenClock("2026-03-02T10:00:00+00:00")
    with (
        Warden.open(ENFORCED, database=database, clock=clock) as first,
        Warden.open(ENFORCED, database=database, clock=clock) as second,
    ):
        candidate = first.set_shadow_policy(CANDIDATE, actor="alice")
        decision = second.authorize(example_intent("200.00"))
        shadow = _decision_body(second, str(decision.decision_id))["shadow"]
        assert shadow["policy_version"] == candidate.version  # type: ignore[index]
        assert second.shadow_stats().shadow_flips_total == 1
        assert first.shadow_stats().shadow_flips_total == 0  # counted per Warden
        assert second.clear_shadow_policy(actor="bob") is True
        assert first.shadow_policy() is None
        after = first.authorize(example_intent("200.00", idempotency_key="after"))
        assert "shadow" not in _decision_body(first, str(after.decision_id))
        assert first.clear_shadow_policy(actor="bob") is False
        kinds = [(e.kind, e.ref_id) for e in first.audit_entries(limit=100)]
    assert ("policy.shadow_set", candidate.version) in kinds
    assert ("policy.shadow_cleared", candidate.version) in kinds
    assert [k for k, _ in kinds].count("policy.shadow_cleared") == 1


def test_an_invalid_candidate_or_a_blank_actor_changes_nothing() -> None:
    with Warden.open(ENFORCED) as warden:
        count = len(warden.audit_entries(limit=100))
        with pytest.raises(InvalidInputError, match="shadow policy is not valid"):
            warden.set_shadow_policy("rules: [{id: x, effect: maybe}]\n", actor="alice")
        with pytest.raises(InvalidInputError, match="actor is required"):
            warden.set_shadow_policy(CANDIDATE, actor=" ")
        assert warden.shadow_policy() is None
        assert len(warden.audit_entries(limit=100)) == count


def test_a_failing_candidate_is_recorded_and_the_decision_still_stands() -> None:
    failing = CANDIDATE.replace(
        "budgets:", "  - {id: broken, effect: deny, when: 'metadata.nothing == 1'}\nbudgets:"
    )
    changed_currency = CANDIDATE.replace("window: day}", "window: day, currency: EUR}")
    with Warden.open(ENFORCED) as warden:
        warden.set_shadow_policy(failing, actor="alice")
        decision = warden.authorize(example_intent("10.00"))
        assert decision.outcome == "allow"
        shadow = _decision_body(warden, str(decision.decision_id))["shadow"]
        assert shadow["outcome"] == "deny" and shadow["reason_code"] == "rule_error"  # type: ignore[index]
        warden.set_shadow_policy(changed_currency, actor="alice")
        other = warden.authorize(example_intent("10.00", idempotency_key="eur"))
        assert other.outcome == "allow"
        recorded = _decision_body(warden, str(other.decision_id))["shadow"]
        assert recorded["error"] == "ValueError"  # type: ignore[index]
        assert warden.shadow_stats().errors_total == 1


ROLLING = """
currency: USD
rules:
  - {id: allow-transfers, effect: allow, actions: [payments.transfer]}
budgets:
  - {id: rolling, limit: 150, window: 24h}
velocity:
  - {id: burst, max_count: 2, window: 1h, scope: agent}
"""


def _shadow_outcomes(warden: Warden, clock: FrozenClock, keys: str) -> list[tuple[str, str]]:
    outcomes = []
    for key in keys:
        clock.advance(60)
        decision = warden.authorize(example_intent("40.00", idempotency_key=key))
        assert decision.outcome == "allow"
        shadow = _decision_body(warden, str(decision.decision_id))["shadow"]
        outcomes.append((shadow["outcome"], shadow["reason_code"]))  # type: ignore[index]
    return outcomes


def test_rolling_budgets_and_velocity_read_the_ledger_before_this_decision() -> None:
    """The enforced policy has the same rolling budget and velocity limit, so the ledger
    counts them; the candidate also has a fixed budget the ledger never counted."""
    enforced = ROLLING.replace("max_count: 2", "max_count: 10").replace("150", "1000")
    tight_budget = ROLLING.replace("limit: 150", "limit: 100").replace(
        "window: 24h}", "window: 24h}\n  - {id: weekly, limit: 1000, window: week}"
    )
    clock = FrozenClock("2026-03-02T10:00:00+00:00")
    with Warden.open(enforced, clock=clock) as warden:
        warden.set_shadow_policy(tight_budget.replace("max_count: 2", "max_count: 9"), actor="a")
        assert _shadow_outcomes(warden, clock, "ab") == [("allow", "allowed")] * 2  # 80 <= 100
        assert _shadow_outcomes(warden, clock, "c") == [("deny", "budget_exceeded")]  # 120
        # The candidate's `weekly` budget got no counter row: nothing was written for it.
        assert {b.budget_id for b in warden.budgets()} == {"rolling"}
        warden.set_shadow_policy(ROLLING.replace("limit: 150", "limit: 1000"), actor="a")
        # Three payments in the hour already: the candidate's `max_count: 2` denies.
        assert _shadow_outcomes(warden, clock, "d") == [("deny", "rate_limit_exceeded")]
