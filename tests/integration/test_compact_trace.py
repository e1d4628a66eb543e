"""A decision's audit entry lists only the rules that matched or failed and counts the rest;
every reader of the decision still gets the whole trace, expanded from the policy text the
ledger keeps, also after the policy changed and from another process's Warden."""

from __future__ import annotations

import json
from pathlib import Path

from paywarden import FrozenClock, Warden
from paywarden.testing import example_intent
from support.audit import entries

POLICY = """
currency: USD
rules:
  - {id: deny-crypto, effect: deny, rails: [crypto]}
  - {id: deny-blocked, effect: deny, recipients: ["*.blocked.example"]}
  - {id: approve-large, effect: require_approval, amount: {gt: 5000}}
  - {id: allow-transfers, effect: allow, actions: [payments.transfer]}
"""
NEWER = POLICY.replace("gt: 5000", "gt: 4000")
NOW = "2026-06-01T12:00:00Z"


def _recorded_trace(database: Path, decision_id: str) -> dict[str, object]:
    (entry,) = [e for e in entries(database, decision_id) if e.kind == "decision"]
    trace: dict[str, object] = json.loads(entry.body)["decision"]["trace"]
    return trace


def test_the_entry_is_compact_and_every_reader_gets_the_whole_trace(tmp_path: Path) -> None:
    database = tmp_path / "ledger.db"
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    with Warden.open(policy, database=database, clock=FrozenClock(NOW)) as warden:
        decided = warden.authorize(example_intent("10.00", idempotency_key="k-1"))
        assert decided.outcome == "allow" and decided.decision_id is not None
        every_rule = [(r.rule_id, r.matched) for r in decided.trace.rules]
        assert [rule for rule, _ in every_rule] == [
            "deny-crypto", "deny-blocked", "approve-large", "allow-transfers"
        ]  # fmt: skip
        recorded = _recorded_trace(database, decided.decision_id)
        assert [r["rule_id"] for r in recorded["rules"]] == ["allow-transfers"]  # type: ignore[index, union-attr]
        assert recorded["rules_not_listed"] == 3
        assert [
            (r.rule_id, r.matched) for r in warden.decision(decided.decision_id).trace.rules
        ] == every_rule
        replayed = warden.authorize(example_intent("10.00", idempotency_key="k-1"))
        assert (
            replayed.replayed
            and [(r.rule_id, r.matched) for r in replayed.trace.rules] == every_rule
        )
        policy.write_text(NEWER, encoding="utf-8")
        warden.reload_policy(policy, actor="admin")
        assert warden.policy is not None and warden.policy.version != decided.trace.policy_version
    with Warden.open(policy, database=database, clock=FrozenClock(NOW)) as other:
        expanded = other.decision(decided.decision_id)
    assert [(r.rule_id, r.matched) for r in expanded.trace.rules] == every_rule
    assert expanded.trace.policy_version == decided.trace.policy_version
