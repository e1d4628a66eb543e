"""`paywarden refund|sessions|disputes|scopes`: refunds, phases, disputes and scopes."""

from __future__ import annotations

import dataclasses
import json

import click

from paywarden.entrypoints.cli.operator_cli import _database_option, _time, _warden
from paywarden.ports import DisputeRow, RefundRow, ScopeRow, SessionRow


def _policy_option(function: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--policy",
        "policy_path",
        default=None,
        type=click.Path(dir_okay=False),
        help="Policy YAML file (its `refunds:` and `compensation:` settings apply).",
    )(function)


def _emit(row: object, as_json: bool, line: str) -> None:
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(row), sort_keys=True))  # type: ignore[call-overload]
    else:
        click.echo(line)


def _refund_line(row: RefundRow) -> str:
    error = f"  ({row.error})" if row.error else ""
    return (
        f"{row.refund_id}  {row.state:<9} {row.amount_minor} minor {row.currency}"
        f"  payment {row.payment_id}  key {row.rail_key}{error}"
    )


@click.command()
@click.argument("payment_id")
@click.option("--amount", default=None, help="Amount to refund (default: all that is left).")
@click.option("--reason", default="requested", show_default=True, help="Why, for the audit log.")
@click.option("--actor", default="admin", show_default=True, help="Who asks, for the audit log.")
@_policy_option
@_database_option
@click.option("--json", "as_json", is_flag=True, help="Print the refund as JSON.")
def refund(
    payment_id: str,
    amount: str | None,
    reason: str,
    actor: str,
    policy_path: str | None,
    database: str,
    as_json: bool,
) -> None:
    """Refund a settled payment through its rail (all that is left, or --amount)."""
    with _warden(database, policy_path) as warden:
        row = warden.refund(payment_id, amount, reason=reason, actor=actor)
    _emit(row, as_json, _refund_line(row))


@click.group()
def sessions() -> None:
    """Agent session phases: EXPLORE -> DECIDE -> COMMIT."""


def _session_line(row: SessionRow) -> str:
    return f"{row.agent}/{row.session_id}  {row.phase}  since {_time(row.updated_us)}"


@sessions.command("start")
@click.option("--agent", required=True, help="The agent.")
@click.option("--session", "session_id", default=None, help="Session id (default: a new one).")
@_database_option
@click.option("--json", "as_json", is_flag=True, help="Print the session as JSON.")
def sessions_start(agent: str, session_id: str | None, database: str, as_json: bool) -> None:
    """Start tracking a session, in EXPLORE."""
    with _warden(database, None) as warden:
        row = warden.start_session(agent, session_id, actor="cli")
    _emit(row, as_json, _session_line(row))


@sessions.command("advance")
@click.option("--agent", required=True, help="The agent.")
@click.option("--session", "session_id", required=True, help="Session id.")
@click.option("--phase", required=True, help="The next phase: DECIDE or COMMIT.")
@_database_option
@click.option("--json", "as_json", is_flag=True, help="Print the session as JSON.")
def sessions_advance(agent: str, session_id: str, phase: str, database: str, as_json: bool) -> None:
    """Move a session to its next phase."""
    with _warden(database, None) as warden:
        row = warden.advance_phase(agent, session_id, phase, actor="cli")
    _emit(row, as_json, _session_line(row))


@sessions.command("show")
@click.option("--agent", required=True, help="The agent.")
@click.option("--session", "session_id", required=True, help="Session id.")
@_database_option
@click.option("--json", "as_json", is_flag=True, help="Print the session as JSON.")
def sessions_show(agent: str, session_id: str, database: str, as_json: bool) -> None:
    """Show a session's phase."""
    with _warden(database, None) as warden:
        row = warden.session(agent, session_id)
    _emit(row, as_json, _session_line(row))


@click.group()
def disputes() -> None:
    """Dispute cases on payments, with their evidence."""


def _dispute_line(row: DisputeRow) -> str:
    refund = f"  refund {row.refund_id}" if row.refund_id else ""
    return (
        f"{row.dispute_id}  {row.status:<12} payment {row.payment_id}  by {row.opened_by}"
        f"  {row.reason}{refund}"
    )


@disputes.command("open")
@click.argument("payment_id")
@click.option("--reason", required=True, help="What is disputed.")
@click.option("--actor", required=True, help="Who opens the case, e.g. operator:alice.")
@_database_option
@click.option("--json", "as_json", is_flag=True, help="Print the case (with evidence) as JSON.")
def disputes_open(payment_id: str, reason: str, actor: str, database: str, as_json: bool) -> None:
    """Open a case on a settled payment; its proof trace and audit entries are attached."""
    with _warden(database, None) as warden:
        row = warden.open_dispute(payment_id, reason=reason, actor=actor)
    _emit(row, as_json, _dispute_line(row))


@disputes.command("review")
@click.argument("dispute_id")
@click.option("--operator", required=True, help="Registered operator id.")
@click.option("--note", default="", help="Note for the audit log.")
@_database_option
@click.option("--json", "as_json", is_flag=True, help="Print the case as JSON.")
def disputes_review(
    dispute_id: str, operator: str, note: str, database: str, as_json: bool
) -> None:
    """Take a case: open -> under_review."""
    with _warden(database, None) as warden:
        row = warden.review_dispute(dispute_id, operator=operator, note=note)
    _emit(row, as_json, _dispute_line(row))


@disputes.command("resolve")
@click.argument("dispute_id")
@click.option(
    "--outcome",
    required=True,
    type=click.Choice(["refund", "reject", "withdraw"]),
    help="refund through the rail, reject, or withdraw.",
)
@click.option("--operator", required=True, help="Registered operator id.")
@click.option("--amount", default=None, help="With refund: amount (default: all that is left).")
@click.option("--note", default="", help="Resolution note.")
@_policy_option
@_database_option
@click.option("--json", "as_json", is_flag=True, help="Print the case as JSON.")
def disputes_resolve(
    dispute_id: str,
    outcome: str,
    operator: str,
    amount: str | None,
    note: str,
    policy_path: str | None,
    database: str,
    as_json: bool,
) -> None:
    """Close a case with a refund, a rejection or a withdrawal."""
    with _warden(database, policy_path) as warden:
        row = warden.resolve_dispute(
            dispute_id, outcome, operator=operator, note=note, amount=amount
        )
    _emit(row, as_json, _dispute_line(row))


@disputes.command("list")
@click.option("--payment", "payment_id", default=None, help="Only this payment's cases.")
@click.option("--status", default=None, help="Only cases in this status.")
@_database_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def disputes_list(payment_id: str | None, status: str | None, database: str, as_json: bool) -> None:
    """List cases, newest first."""
    with _warden(database, None) as warden:
        rows = warden.disputes(payment_id=payment_id, status=status)
    for row in rows:
        _emit(row, as_json, _dispute_line(row))


@disputes.command("show")
@click.argument("dispute_id")
@_database_option
def disputes_show(dispute_id: str, database: str) -> None:
    """Print one case with its evidence, as JSON."""
    with _warden(database, None) as warden:
        row = warden.dispute(dispute_id)
    data = dataclasses.asdict(row)
    data["evidence"] = json.loads(row.evidence)
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@click.group()
def scopes() -> None:
    """Compensation scopes of multi-step workflows."""


def _scope_line(row: ScopeRow) -> str:
    return f"{row.scope_id}  {row.status:<20} agent {row.agent}  {_time(row.updated_us)}"


@scopes.command("list")
@click.option("--status", default=None, help="e.g. compensation_failed: what needs a human.")
@_database_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def scopes_list(status: str | None, database: str, as_json: bool) -> None:
    """List scopes, newest first."""
    with _warden(database, None) as warden:
        rows = warden.scopes(status)
    for row in rows:
        _emit(row, as_json, _scope_line(row))


@scopes.command("show")
@click.argument("scope_id")
@_database_option
def scopes_show(scope_id: str, database: str) -> None:
    """Print a scope and its steps, as JSON."""
    with _warden(database, None) as warden:
        row = warden.scope(scope_id)
        steps = warden.scope_steps(scope_id)
    data = {**dataclasses.asdict(row), "steps": [dataclasses.asdict(step) for step in steps]}
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@scopes.command("compensate")
@click.argument("scope_id")
@click.option("--reason", default="compensated from the command line", help="Why.")
@_policy_option
@_database_option
def scopes_compensate(scope_id: str, reason: str, policy_path: str | None, database: str) -> None:
    """Compensate an open scope left by a crashed worker (refunds its paid steps)."""
    with _warden(database, policy_path) as warden:
        row = warden.resume_scope(scope_id).compensate(reason)
    click.echo(_scope_line(row))
