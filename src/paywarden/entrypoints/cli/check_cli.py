"""`paywarden check`: decide one payment intent against a policy and print the decision."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from paywarden.errors import InvalidInputError
from paywarden.intent import PaymentIntent
from paywarden.policy.decision import Decision
from paywarden.policy.workflow_settings import PHASES
from paywarden.warden import Warden

EXIT_INVALID = 2


@click.command()
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
