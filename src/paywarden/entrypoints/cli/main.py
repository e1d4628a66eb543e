"""The `paywarden` command line. Thin: every command calls the library and formats the result."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click

from paywarden import __version__
from paywarden.entrypoints.cli.audit_cli import audit
from paywarden.entrypoints.cli.keys_cli import keys
from paywarden.entrypoints.cli.operator_cli import COMMANDS as OPERATOR_COMMANDS
from paywarden.entrypoints.cli.payments_cli import COMMANDS as PAYMENT_COMMANDS
from paywarden.entrypoints.cli.serve_cli import serve
from paywarden.entrypoints.cli.workflow_cli import COMMANDS as WORKFLOW_COMMANDS
from paywarden.entrypoints.mcp.cli import mcp_command
from paywarden.errors import InvalidInputError, PaywardenError
from paywarden.intent import PaymentIntent
from paywarden.money import format_minor
from paywarden.policy.compiler import check_policy
from paywarden.policy.decision import Decision
from paywarden.policy.workflow_settings import PHASES
from paywarden.warden import Warden

EXIT_INVALID = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="paywarden")
def cli() -> None:
    """paywarden: the payment firewall for AI agents."""


@cli.command()
@click.option(
    "--policy",
    "policy_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Policy YAML file.",
)
@click.option("--agent", required=True, help="Agent making the payment.")
@click.option("--action", required=True, help="Capability, e.g. payments.transfer.")
@click.option("--amount", required=True, help='Amount in major units as text, e.g. "120.50".')
@click.option("--currency", required=True, help="ISO 4217 code or token (USDC).")
@click.option("--recipient", required=True, help="Payee: account id, domain, e-mail or URL.")
@click.option("--environment", default=None, help="Environment (default: production).")
@click.option("--category", default=None, help="Spend category.")
@click.option("--phase", default=None, help="Agent session phase (EXPLORE, DECIDE, COMMIT).")
@click.option("--session", "session_id", default=None, help="Agent session id.")
@click.option(
    "--database",
    default=None,
    type=click.Path(dir_okay=False),
    help="SQLite ledger to decide against and record in (default: a throwaway in-memory "
    "ledger, so nothing is held).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
def check(
    policy_path: str,
    agent: str,
    action: str,
    amount: str,
    currency: str,
    recipient: str,
    environment: str | None,
    category: str | None,
    phase: str | None,
    session_id: str | None,
    database: str | None,
    as_json: bool,
) -> None:
    """Decide one payment intent against a policy and print the decision.

    Without --database this is a preview against an empty ledger. With --database the decision
    counts: an allowed intent holds its amount against the budgets recorded in that file.

    Exit status: 0 when a decision was made (whatever it is), 2 when the input is invalid.
    """
    try:
        intent = PaymentIntent(
            agent=agent,
            action=action,
            amount=amount,
            currency=currency,
            recipient=recipient,
            environment=environment,
            category=category,
            session_id=session_id,
        )
    except InvalidInputError as error:
        _fail(f"invalid intent: {error}", as_json, error.code)
    if phase is not None and database is not None:
        _fail(
            "--phase previews a phase; with --database the phase is the session's recorded one "
            "(paywarden sessions advance)",
            as_json,
            "invalid_input",
        )
    with Warden.open(
        Path(policy_path), database=database or ":memory:", environment=environment
    ) as warden:
        if phase is not None:
            intent = _in_previewed_phase(warden, intent, phase)
        decision = warden.authorize(intent)
    if as_json:
        click.echo(json.dumps(decision.to_dict(), indent=2, sort_keys=True))
    else:
        _print_decision(decision)


def _in_previewed_phase(warden: Warden, intent: PaymentIntent, phase: str) -> PaymentIntent:
    """Walk a throwaway in-memory session to `phase` so the preview decides in it."""
    if phase.upper() not in PHASES:
        _fail(f"unknown phase `{phase}` (EXPLORE, DECIDE, COMMIT)", False, "invalid_input")
    session_id = intent.session_id or "preview"
    warden.start_session(intent.agent, session_id)
    for step in PHASES[1 : PHASES.index(phase.upper()) + 1]:
        warden.advance_phase(intent.agent, session_id, step)
    return intent.replace(session_id=session_id)


def _fail(message: str, as_json: bool, code: str) -> None:
    if as_json:
        click.echo(json.dumps({"reason_code": "invalid_input", "error": code, "message": message}))
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_INVALID)


def _print_decision(decision: Decision) -> None:
    click.echo(f"outcome:     {decision.outcome}")
    click.echo(f"reason_code: {decision.reason_code}")
    click.echo(f"reason:      {decision.reason}")
    click.echo(f"rule_ids:    {', '.join(decision.rule_ids) or '-'}")
    click.echo(f"policy:      {decision.policy_version}")
    for warning in decision.warnings:
        click.echo(f"warning:     {warning}")


@cli.group()
def policy() -> None:
    """Validate and explain policy files."""


@policy.command("validate")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def policy_validate(path: str, as_json: bool) -> None:
    """Compile a policy and report every error and warning with its line.

    Exit status: 0 when the policy is valid (warnings allowed), 1 when it has errors.
    """
    text = _read_policy(path)
    compiled, report = check_policy(text, path)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "valid": compiled is not None,
                    "version": compiled.version if compiled else None,
                    "problems": [p.to_dict() for p in report.problems],
                },
                indent=2,
            )
        )
    else:
        for line in report.lines():
            click.echo(line)
        if compiled is not None:
            click.echo(f"{path}: valid ({len(compiled.rules)} rules, version {compiled.version})")
    sys.exit(0 if compiled is not None else 1)


@policy.command("explain")
@click.argument("path", type=click.Path(dir_okay=False))
def policy_explain(path: str) -> None:
    """Show how paywarden reads a policy: rules by precedence, their conditions, budgets."""
    text = _read_policy(path)
    compiled, report = check_policy(text, path)
    for line in report.lines():
        click.echo(line)
    if compiled is None:
        sys.exit(1)
    click.echo(f"policy {compiled.name!r} ({compiled.dialect} format), version {compiled.version}")
    click.echo(f"time zone {compiled.timezone.key}, default currency {compiled.currency}")
    click.echo(
        "precedence: any deny wins, then require_approval, then allow; nothing matched denies"
    )
    for effect, indexes in (
        ("deny", compiled.deny_rules),
        ("require_approval", compiled.approval_rules),
        ("allow", compiled.allow_rules),
    ):
        click.echo(f"\n{effect} rules:")
        for index in indexes:
            rule = compiled.rules[index]
            click.echo(
                f"  - {rule.rule_id} (line {rule.mark.line}): "
                f"{' and '.join(rule.conditions) or 'every intent'}"
            )
            click.echo(f"      reason: {rule.reason}")
        if not indexes:
            click.echo("  (none)")
    for budget in compiled.budgets:
        click.echo(
            f"\nbudget {budget.budget_id}: {budget.limit} per {budget.window}, scope {budget.scope}"
        )
    for limit in compiled.velocity:
        click.echo(
            f"\nvelocity {limit.velocity_id}: max {limit.max_count} per "
            f"{limit.window_seconds}s, cooldown {limit.cooldown_seconds}s, "
            f"scope {limit.scope}"
        )


def _read_policy(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        click.echo(f"error: cannot read `{path}`: {error}", err=True)
        sys.exit(EXIT_INVALID)


@cli.command()
@click.option(
    "--policy",
    "policy_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Policy YAML file that defines the budgets.",
)
@click.option(
    "--database",
    default="paywarden.db",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="SQLite ledger file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the budgets as JSON.")
def budgets(policy_path: str, database: str, as_json: bool) -> None:
    """Show each budget's spent, held, remaining and gate in its current window."""
    if not Path(database).exists():
        click.echo(f"error: no ledger at `{database}`", err=True)
        sys.exit(EXIT_INVALID)
    with Warden.open(Path(policy_path), database=database) as warden:
        if warden.policy is None:
            click.echo(f"error: {warden.loaded_policy.report.summary()}", err=True)
            sys.exit(1)
        rows = warden.budgets()
        exponents = {b.budget_id: b.limit.exponent for b in warden.policy.budgets}
    if as_json:
        click.echo(
            json.dumps(
                [
                    {**dataclasses.asdict(row), "remaining_minor": row.remaining_minor}
                    for row in rows
                ],
                indent=2,
            )
        )
        return
    click.echo(
        f"{'budget':<16} {'scope':<24} {'window':<16} {'spent':>12} {'held':>12} "
        f"{'remaining':>12} {'limit':>12}  gate"
    )
    for row in rows:
        exponent = exponents[row.budget_id]
        amounts = [
            format_minor(value, exponent)
            for value in (row.spent_minor, row.held_minor, row.remaining_minor, row.limit_minor)
        ]
        scope = f"{row.scope}:{row.scope_key}"
        click.echo(
            f"{row.budget_id:<16} {scope:<24} {row.window:<16} "
            + " ".join(f"{a:>12}" for a in amounts)
            + f"  {row.gate} {row.currency}"
        )
    if not rows:
        click.echo("(no spending recorded in the current windows)")


@cli.command()
def demo() -> None:
    """Run the seed scenarios (CapFence tiers, PaySentry controls) and print the decisions."""
    from paywarden.entrypoints.cli.demo import run_demo

    run_demo(click.echo)


cli.add_command(audit)
cli.add_command(mcp_command)
cli.add_command(keys)
cli.add_command(serve)
for _command in (*OPERATOR_COMMANDS, *PAYMENT_COMMANDS, *WORKFLOW_COMMANDS):
    cli.add_command(_command)


def main() -> None:
    """Run the CLI; a paywarden error (unreadable database, bad key) exits 2 with one line."""
    try:
        cli(standalone_mode=True)
    except PaywardenError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_INVALID)
