"""What the agent-goal tests share across directories: the goal policy and a store check."""

from __future__ import annotations

import json

from paywarden import FrozenClock, Warden
from paywarden.actions.goals import attempts_of

# Purchases up to 2,000.00 a payment are allowed; above 5,000.00 they need a human; a daily
# budget of 12,000.00 per agent; evil.example is on the deny list.
GOAL_POLICY = """\
name: agent goals
currency: USD
agents:
  max_attempts: 4
rules:
  - id: deny-listed
    effect: deny
    reason: this recipient is on the deny list
    recipients: [evil.example]
  - id: per-payment-limit
    effect: deny
    reason: above the 10,000.00 per-payment limit
    amount: {gt: 10000}
  - id: laptops-over-2000
    effect: deny
    reason: hardware above 2,000.00 is not allowed
    category: hardware
    amount: {gt: 2000}
  - id: big-purchases
    effect: require_approval
    reason: purchases above 8,000.00 need a human
    amount: {gt: 8000}
  - id: purchases
    effect: allow
    reason: purchases within limits
    actions: [purchase]
budgets:
  - id: daily
    limit: 12000
    window: day
    scope: agent
"""


def exercise_goal_store(warden: Warden, clock: FrozenClock) -> None:
    """Two runs (one paid, one split stopped by the budget) read back, listed and audited."""
    paid = warden.run_goal("Buy a MacBook Pro for the new engineer", agent="agent-a")
    clock.advance(1)  # runs list newest first (ties by id)
    split = warden.run_goal("pay vendor.example 15,000 USD for invoice 42", agent="agent-b")
    assert warden.goal_run(paid.run_id) == paid
    assert (paid.status, split.status) == ("paid", "exhausted")
    assert [a["outcome"] for a in attempts_of(split)][-1] == "denied"
    assert [r.run_id for r in warden.goal_runs()] == [split.run_id, paid.run_id]
    assert [r.run_id for r in warden.goal_runs("agent-a")] == [paid.run_id]
    kinds = [e.kind for e in warden.audit_trail(split.run_id)]
    assert kinds == ["goal.started", *["goal.attempt"] * 4, "goal.finished"]
    finished = json.loads(warden.audit_trail(split.run_id)[-1].body)
    assert finished["status"] == "exhausted"
    assert warden.verify_audit().ok
