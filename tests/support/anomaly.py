"""The anomaly-facts scenario (issue 17) both stores run: real decisions through a Warden, each
fact read from the stored history inside the decision's transaction."""

from __future__ import annotations

import math

import pytest

from paywarden import FrozenClock, Warden
from paywarden.testing import example_intent

POLICY = """
currency: USD
anomaly: {min_history: 5, auto_halt: {after: 2, within: 1h}}
rules:
  - {id: odd-amount, effect: deny, anomaly: {amount_score: {gt: 3.5}}}
  - {id: new-gift-payee, effect: require_approval, categories: [gifts],
     anomaly: {new_recipient: true}}
  - {id: ok, effect: allow}
"""


def run_scenario(warden: Warden, clock: FrozenClock) -> None:
    """Five 5.00 payments build a history; a new gift payee asks for approval; 500.00 is a
    loud outlier (zero-variance history), denied; the second outlier within the hour halts the
    agent until an operator resumes it."""
    for number in range(5):
        decision = warden.authorize(example_intent("5.00", idempotency_key=f"h-{number}"))
        assert decision.outcome == "allow", decision.reason
        clock.advance(seconds=60)
    first = decision.trace.anomaly
    assert first is not None and (first.history, first.new_recipient) == (4, False)
    gift = warden.authorize(example_intent("5.00", recipient="Gifts.Example.", category="gifts"))
    assert (gift.outcome, gift.rule_ids) == ("require_approval", ("new-gift-payee",))
    assert gift.trace.anomaly is not None and gift.trace.anomaly.new_recipient
    assert gift.trace.anomaly.amount_score == 0.0
    outlier = warden.authorize(example_intent("500.00"))
    assert (outlier.outcome, outlier.rule_ids) == ("deny", ("odd-amount",))
    loud = 0.6745 * math.log(100) / 0.05  # 62.12: the history never varied
    stored = warden.decision(str(outlier.decision_id)).trace.anomaly  # from the audit record
    assert stored is not None and stored.amount_score == pytest.approx(loud)
    assert stored.flagged and stored.history == 5
    clock.advance(seconds=60)
    second = warden.authorize(example_intent("600.00"))
    assert second.reason_code == "halted" and "auto-halt: 2 anomalies" in second.reason
    (halt,) = warden.halts()
    assert (halt.scope, halt.actor) == ("agent-a", "system:anomaly")
    assert warden.authorize(example_intent("5.00")).reason_code == "halted"
    assert warden.authorize(example_intent("5.00", agent="agent-b")).outcome == "allow"
    warden.add_operator("alice", name="Alice")
    assert warden.resume("agent-a", actor="alice")
    assert warden.authorize(example_intent("5.00")).outcome == "allow"
    kinds = [entry.kind for entry in warden.audit_trail("agent-a")]
    assert kinds == ["halt.set", "halt.cleared"]
