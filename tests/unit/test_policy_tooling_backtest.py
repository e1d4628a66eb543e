"""The pure part of `policy backtest`: reading the log, what cannot be replayed, the report."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

from paywarden.audit.chain import AuditEntry
from paywarden.clock import to_us
from paywarden.policy import compile_policy
from paywarden.policy.decision import Decision
from paywarden.policy.evaluator import deny_everything
from paywarden.policy.tooling.backtest import (
    Recorded,
    StateStep,
    fields_read,
    not_replayable,
    read_log,
    replay,
)

AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
POLICY = """
currency: USD
rules:
  - {id: allow-transfers, effect: allow, actions: [payments.transfer], categories: [ops]}
  - {id: watch, effect: deny, when: 'metadata.team == "x" && amount_minor > 5'}
"""


def _entry(
    seq: int, kind: str, ref_id: str, body: dict[str, object], minute: int = 0
) -> AuditEntry:
    created_us = to_us(AT) + minute * 60_000_000
    return AuditEntry(seq, created_us, kind, ref_id, "", "", json.dumps(body))


def _decision_body(
    agent: str,
    amount_minor: int,
    outcome: str,
    *,
    redacted: list[str] | None = None,
    **extra: object,
) -> dict[str, object]:
    return {
        "actor": f"agent:{agent}",
        "intent": {"agent": agent, "amount_minor": amount_minor, "currency": "USD"},
        "decision": {"outcome": outcome, "reason_code": "allowed", "rule_ids": ["r"], **extra},
        "redacted": redacted or [],
    }


def test_fields_read_cover_list_conditions_and_cel_names() -> None:
    read = fields_read(POLICY, compile_policy(POLICY))
    assert {"action", "category", "metadata", "amount_minor"} <= read
    assert "purpose" not in read


def test_an_entry_is_not_replayable_when_the_policy_reads_a_redacted_field() -> None:
    policy = compile_policy(POLICY)
    read = fields_read(POLICY, policy)
    entries = [
        _entry(
            1, "decision", "dec_1", _decision_body("a", 100, "allow", redacted=["$.intent.purpose"])
        ),
        _entry(
            2,
            "decision",
            "dec_2",
            _decision_body("a", 100, "allow", redacted=["$.intent.metadata.team"]),
        ),
        _entry(
            3, "decision", "dec_3", _decision_body("a", 100, "deny", redacted=["$.decision.reason"])
        ),
    ]
    first, second, third = read_log(entries)
    assert isinstance(first, Recorded) and isinstance(second, Recorded)
    assert isinstance(third, Recorded)
    assert not_replayable(first, read, policy) is None
    assert not_replayable(second, read, policy) == (
        "the new policy reads metadata, redacted in the record"
    )
    assert not_replayable(third, read, policy) is None  # decision text is not an input
    rail = replace(first, reason_code="rail_refused")
    assert not_replayable(rail, read, policy) == "refused before any policy ran (rail_refused)"
    yen = replace(first, intent={**first.intent, "currency": "XXX"})
    assert not_replayable(yen, read, policy) == "the new policy does not know the currency XXX"


def test_read_log_keeps_decisions_and_state_changes_in_the_window() -> None:
    entries = [
        _entry(1, "decision", "dec_1", _decision_body("a", 100, "allow", hold_id="h1")),
        _entry(2, "hold.captured", "h1", {"hold_id": "h1", "captured_minor": 100}, minute=1),
        _entry(3, "key.created", "k1", {"actor": "admin"}, minute=2),
        _entry(4, "decision", "dec_2", _decision_body("b", 200, "deny"), minute=3),
    ]
    events = read_log(entries)
    assert [type(e).__name__ for e in events] == ["Recorded", "StateStep", "Recorded"]
    assert events[0].at == AT and events[1].at.minute == 1
    window = read_log(entries, since=AT.replace(minute=1), until=AT.replace(minute=3))
    assert [e.seq for e in window] == [2]


class _FakeReplayer:
    """Answers from a table and remembers the state steps it was given."""

    def __init__(self, outcomes: dict[str, tuple[str, str | None]]) -> None:
        self.outcomes = outcomes
        self.applied: list[tuple[str, str | None]] = []

    def decide(self, recorded: Recorded) -> Decision:
        outcome, hold_id = self.outcomes[recorded.decision_id]
        decision = deny_everything("no_rule_matched", "x", "v", recorded.at)
        return replace(decision, outcome=outcome, hold_id=hold_id)  # type: ignore[arg-type]

    def apply(self, step: StateStep, hold_id: str | None) -> bool:
        self.applied.append((step.kind, hold_id))
        return hold_id is not None


def test_replay_maps_holds_and_counts_flips_by_money_agent_and_reason() -> None:
    policy = compile_policy(POLICY)
    entries = [
        _entry(1, "decision", "dec_1", _decision_body("a", 100, "allow", hold_id="h1")),
        _entry(2, "hold.captured", "h1", {"hold_id": "h1", "captured_minor": 100}),
        _entry(3, "decision", "dec_2", _decision_body("b", 250, "allow", hold_id="h2")),
        _entry(4, "hold.voided", "h2", {"hold_id": "h2"}),
        _entry(5, "decision", "dec_3", _decision_body("a", 40, "deny")),
    ]
    replayer = _FakeReplayer(
        {"dec_1": ("allow", "new1"), "dec_2": ("deny", None), "dec_3": ("allow", "new3")}
    )
    report = replay(read_log(entries), policy, POLICY, replayer)
    assert replayer.applied == [("hold.captured", "new1"), ("hold.voided", None)]
    assert report.replayed == 3 and len(report.flips) == 2
    assert report.state_refused == 1
    assert report.counts() == {"allow -> deny": 1, "deny -> allow": 1}
    assert report.money() == {"allow -> deny": {"USD": 250}, "deny -> allow": {"USD": 40}}
    assert report.by_agent() == {"a": {"deny -> allow": 1}, "b": {"allow -> deny": 1}}
    assert report.by_reason() == {"no_rule_matched": {"allow -> deny": 1, "deny -> allow": 1}}
    first = report.first_divergence
    assert first is not None and first.recorded.decision_id == "dec_2"
