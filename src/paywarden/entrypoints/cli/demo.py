"""`paywarden demo`: the seed scenarios, decided by the real engine, printed as tables."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files

import click

from paywarden.clock import FrozenClock
from paywarden.intent import PaymentIntent
from paywarden.policy.decision import Decision
from paywarden.warden import Warden

Echo = Callable[[str], None]

PAYSENTRY_POLICY = """\
name: PaySentry demo controls
currency: USD
rules:
  - id: block-above-100
    effect: deny
    reason: above the $100 per-transaction limit
    amount: {gt: 100}
  - id: approval-above-40
    effect: require_approval
    reason: payments above $40 need a human
    amount: {gt: 40}
  - id: allow-api-payments
    effect: allow
    reason: API payments within limits
    actions: ["x402.pay"]
budgets:
  - id: daily
    limit: 500
    window: day
    scope: agent
    gates: {warn: 0.8}
velocity:
  - id: five-per-minute
    max_count: 5
    window: 1m
    scope: agent
"""

_MARKS = {"allow": "ALLOWED", "deny": "BLOCKED", "require_approval": "APPROVAL"}
_PAYSENTRY_TITLE = "PaySentry controls: max $100/tx, approval above $40, daily $500, 5 tx/min"


@dataclass(frozen=True, slots=True)
class Scenario:
    label: str
    intent: PaymentIntent
    pause_seconds: int = 0  # the demo clock moves on this much before the scenario


def example_policy_text(name: str) -> str:
    return files("paywarden").joinpath("examples", name).read_text(encoding="utf-8")


def _table(
    echo: Echo, title: str, warden: Warden, scenarios: list[Scenario], clock: FrozenClock
) -> list[Decision]:
    echo(f"\n{title}")
    echo("-" * len(title))
    header = f"{'#':>2}  {'scenario':<34} {'amount':>12}  {'decision':<9} {'code':<20} rule"
    echo(header)
    decisions = []
    for number, scenario in enumerate(scenarios, start=1):
        if scenario.pause_seconds:
            clock.advance(scenario.pause_seconds)
            echo(f"    ... {scenario.pause_seconds} seconds later ...")
        decision = warden.authorize(scenario.intent)
        decisions.append(decision)
        amount = str(scenario.intent.amount)
        rules = ", ".join(decision.rule_ids) or "-"
        echo(
            f"{number:>2}  {scenario.label:<34} {amount:>12}  "
            f"{_MARKS[decision.outcome]:<9} {decision.reason_code:<20} {rules}"
        )
        echo(f"    reason: {decision.reason}")
    return decisions


def capfence_scenarios() -> list[Scenario]:
    def transfer(amount: str, recipient: str) -> PaymentIntent:
        return PaymentIntent(
            agent="treasury-agent",
            action="payments.transfer",
            amount=amount,
            currency="USD",
            recipient=recipient,
            environment="production",
        )

    return [
        Scenario("safe automated transfer", transfer("120.00", "vendor-corp-123")),
        Scenario("over-limit exfiltration attempt", transfer("15000.00", "malicious-attacker-789")),
        Scenario("escalated human approval", transfer("2500.00", "strategic-partner-456")),
    ]


def paysentry_scenarios() -> list[Scenario]:
    def pay(amount: str, recipient: str) -> PaymentIntent:
        return PaymentIntent(
            agent="agent-research-01",
            action="x402.pay",
            amount=amount,
            currency="USD",
            recipient=recipient,
        )

    return [
        Scenario("$25 to api.openai.com", pay("25.00", "api.openai.com")),
        Scenario("$45 to anthropic.com", pay("45.00", "anthropic.com")),
        Scenario("$150 to sketchy-api.xyz", pay("150.00", "sketchy-api.xyz")),
        Scenario("$30 to api.openai.com", pay("30.00", "api.openai.com")),
        *(
            Scenario(
                f"rapid payment {n} of 6",
                pay("5.00", "api.openai.com"),
                pause_seconds=61 if n == 1 else 0,
            )
            for n in range(1, 7)
        ),
    ]


def run_demo(echo: Echo) -> None:
    clock = FrozenClock("2026-11-20T15:00:00+00:00")
    echo("paywarden demo: the seed scenarios, decided by the real policy engine")
    capfence = Warden.open(example_policy_text("fintech_policy.yaml"), clock=clock)
    decisions = _table(
        echo,
        "CapFence fintech_policy.yaml (loaded unchanged)",
        capfence,
        capfence_scenarios(),
        clock,
    )
    _approval_walkthrough(echo, capfence, decisions[-1], capfence_scenarios()[-1].intent)
    capfence.close()
    paysentry = Warden.open(PAYSENTRY_POLICY, clock=clock)
    decisions = _table(echo, _PAYSENTRY_TITLE, paysentry, paysentry_scenarios(), clock)
    counts = dict.fromkeys(_MARKS, 0)
    for decision in decisions:
        counts[decision.outcome] += 1
    echo(
        f"\nsummary: {counts['allow']} allowed, {counts['require_approval']} pending approval "
        f"(held while pending), {counts['deny']} blocked; holds count against budgets and "
        "the 5-per-minute velocity limit"
    )
    paysentry.close()


def _approval_walkthrough(
    echo: Echo, warden: Warden, pending: Decision, intent: PaymentIntent
) -> None:
    """The CapFence escalation done right: a bound, single-use human approval."""
    if pending.approval_id is None:
        return
    echo(f"\n    approval {pending.approval_id} is pending; the 2500.00 USD stays held")
    warden.add_operator("admin-user-01", name="Treasury operator")
    warden.approve(pending.approval_id, operator="admin-user-01", reason="invoice matched")
    echo("    admin-user-01 approves it (the agent itself could not)")
    retry = warden.authorize(intent)
    echo(
        f"    the agent sends the same intent again: {_MARKS[retry.outcome]} "
        f"[{retry.reason_code}] {retry.reason}"
    )
    again = warden.authorize(intent)
    echo(
        f"    and a third time: {_MARKS[again.outcome]} [{again.reason_code}]; an approval "
        "is used once, so this opens a new request"
    )


@click.group("demo", invoke_without_command=True)
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Run the seed scenarios (CapFence tiers, PaySentry controls) and print the decisions."""
    if ctx.invoked_subcommand is None:
        run_demo(click.echo)


@demo.command("agent")
def demo_agent() -> None:
    """Agents that pay: goals in words, the offline planner, the policy deciding."""
    from paywarden.entrypoints.cli.demo_agent import run_agent_demo

    run_agent_demo(click.echo)


@demo.command("x402")
def demo_x402() -> None:
    """A guarded x402 client paying a local paid API (needs the x402 extra)."""
    from paywarden.entrypoints.cli.main import require_extra

    module = "paywarden.entrypoints.cli.demo_x402"
    require_extra("paywarden demo x402", "x402", ("x402", "eth_account", "fastapi", module))
    from paywarden.entrypoints.cli.demo_x402 import run_x402_demo

    run_x402_demo(click.echo)
