"""`paywarden demo agent`: goals in words, the offline planner proposing, the policy deciding.

Three goals on one in-memory ledger: a laptop within limits (paid), a laptop over the hardware
limit (denied, then adapted to a cheaper one and paid), and an invoice over the per-payment
limit that the planner tries to split into three payments (the daily budget stops the third).
"""

from __future__ import annotations

from collections.abc import Callable

from paywarden.agents.offline import OfflinePlanner
from paywarden.clock import FrozenClock
from paywarden.entrypoints.cli.agent_cli import transcript
from paywarden.warden import Warden

Echo = Callable[[str], None]

AGENT_DEMO_POLICY = """\
name: agent demo controls
currency: USD
agents:
  max_attempts: 4
rules:
  - id: per-payment-limit
    effect: deny
    reason: above the 10,000.00 per-payment limit
    amount: {gt: 10000}
  - id: hardware-limit
    effect: deny
    reason: hardware above 2,000.00 is not allowed
    category: hardware
    amount: {gt: 2000}
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
GOALS = (
    ("it-agent", "Buy a ThinkPad for the new intern"),
    ("it-agent", "Buy a MacBook Pro for the new engineer"),
    ("ap-agent", "Pay vendor.example 15,000 USD for invoice 42"),
)


def run_agent_demo(echo: Echo) -> None:
    echo("paywarden demo agent: the offline planner proposes, the policy decides")
    echo("controls: hardware up to 2,000.00; at most 10,000.00 a payment; 12,000.00 a day per")
    echo("agent; at most 4 attempts per goal")
    clock = FrozenClock("2026-11-20T15:00:00+00:00")
    with Warden.open(AGENT_DEMO_POLICY, clock=clock) as warden:
        for agent, goal in GOALS:
            echo("")
            transcript(warden.run_goal(goal, llm=OfflinePlanner(), agent=agent), echo)
        paid = sum(p.amount_minor for p in warden.payments(agent="ap-agent", state="settled"))
    amount = f"{paid // 100:,}.{paid % 100:02d}"
    echo(
        f"\nthe split was stopped: ap-agent paid {amount} USD of 15,000.00, within its daily "
        "budget; every attempt is in the audit log under its goal run"
    )
