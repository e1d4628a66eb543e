"""`paywarden operators|approvals|grants|halt|resume`: the human side, over the library API."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import click

from paywarden.actions.approvals import (
    APPROVALS_OFFSET_MAX,
    APPROVALS_PAGE_DEFAULT,
    APPROVALS_PAGE_MAX,
)
from paywarden.actions.grants import GrantRequest, to_dict
from paywarden.adapters.storage.postgres_audit import database_missing
from paywarden.approval_request import ApprovalView
from paywarden.errors import InvalidInputError, PaywardenError
from paywarden.money import Money
from paywarden.policy.budgets import parse_window
from paywarden.warden import Warden

EXIT_REFUSED = 1
EXIT_USAGE = 2


def _database_option(function: Callable[..., None]) -> Callable[..., None]:
    return click.option(
        "--database",
        default="paywarden.db",
        show_default=True,
        type=click.Path(dir_okay=False),
        help="SQLite ledger file, or a PostgreSQL URL (postgresql://...).",
    )(function)


def _policy_option(required: bool) -> Callable[[Callable[..., None]], Callable[..., None]]:
    if required:  # no default: click enforces `required` only when there is none
        return click.option(
            "--policy",
            "policy_path",
            required=True,
            type=click.Path(dir_okay=False),
            help="Policy YAML file: deny rules and budgets are checked again when the last "
            "needed approval is given.",
        )
    return click.option(
        "--policy",
        "policy_path",
        default=None,
        type=click.Path(dir_okay=False),
        help="Policy YAML file (not needed to reject).",
    )


def _usage_error(message: str) -> NoReturn:
    """Invalid input: one line on standard error, exit 2, before the ledger is opened."""
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USAGE)


@contextmanager
def _warden(database: str, policy_path: str | None) -> Iterator[Warden]:
    """Open the ledger; a refusal (forbidden, expired, conflict, a blank reason, grant bounds)
    exits 1 with one line, and the refused command changed nothing."""
    if database_missing(database):
        click.echo(f"error: no ledger at `{database}`", err=True)
        sys.exit(EXIT_USAGE)
    try:
        with Warden.open(Path(policy_path) if policy_path else None, database=database) as warden:
            yield warden
    except PaywardenError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_REFUSED)


def _time(us: int | None) -> str:
    if us is None:
        return "-"
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _print_approval(view: ApprovalView) -> None:
    data = view.to_dict()
    intent = data["intent"]
    assert isinstance(intent, dict)
    click.echo(
        f"{view.approval_id}  {view.status:<9} {view.row.agent} -> {intent['recipient']}"
        f"  {intent['amount_minor']} minor {intent['currency']} ({intent['action']},"
        f" {intent['environment']})  expires {_time(view.row.expires_us)}"
        f"  approvals {len(view.approved_by)}/{view.row.required}"
    )


@click.group()
def operators() -> None:
    """Human operators who approve, reject and grant."""


@operators.command("add")
@click.argument("operator_id")
@click.option("--name", required=True, help="The person's name, shown in the audit log.")
@_database_option
def operators_add(operator_id: str, name: str, database: str) -> None:
    """Register a human operator."""
    with _warden(database, None) as warden:
        warden.add_operator(operator_id, name=name)
    click.echo(f"operator {operator_id} added")


@operators.command("list")
@_database_option
def operators_list(database: str) -> None:
    """List operators."""
    with _warden(database, None) as warden:
        for row in warden.operators():
            state = "disabled" if row.disabled_us else "active"
            click.echo(f"{row.operator_id}  {row.name}  {state}  since {_time(row.created_us)}")


@click.group()
def approvals() -> None:
    """Approval requests: list, show, approve, reject."""


@approvals.command("list")
@click.option(
    "--status",
    default=None,
    type=click.Choice(["pending", "approved", "rejected", "expired", "consumed", "voided"]),
    help="Only this status.",
)
@click.option("--agent", default=None, help="Only this agent's requests.")
@click.option(
    "--limit",
    default=APPROVALS_PAGE_DEFAULT,
    show_default=True,
    type=click.IntRange(1, APPROVALS_PAGE_MAX),
    help="At most this many requests (one page).",
)
@click.option(
    "--offset",
    default=0,
    show_default=True,
    type=click.IntRange(0, APPROVALS_OFFSET_MAX),
    help="Skip this many requests first (the next page starts at the offset it prints).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_database_option
def approvals_list(
    status: str | None, agent: str | None, limit: int, offset: int, as_json: bool, database: str
) -> None:
    """List approval requests: pending first, agents taking turns (each agent's oldest
    pending request before any agent's second), then the others from the newest."""
    with _warden(database, None) as warden:
        page = warden.approvals_page(status, agent, limit=limit, offset=offset)
    if as_json:
        click.echo(json.dumps([view.to_dict() for view in page.views], indent=2))
    else:
        for view in page.views:
            _print_approval(view)
        if not page.views:
            click.echo("(no approval requests)")
    if page.next_offset is not None:
        click.echo(f"more requests follow: run again with --offset {page.next_offset}", err=True)


@approvals.command("show")
@click.argument("approval_id")
@_database_option
def approvals_show(approval_id: str, database: str) -> None:
    """Show one request with its intent, rules and votes (JSON)."""
    with _warden(database, None) as warden:
        click.echo(json.dumps(warden.approval(approval_id).to_dict(), indent=2))


def _decide(choice: str) -> Callable[..., None]:
    @_database_option
    @_policy_option(required=choice == "approve")
    @click.option("--reason", required=True, help="Why; recorded in the audit log.")
    @click.option("--operator", required=True, help="Your operator id.")
    @click.argument("approval_id")
    def command(
        approval_id: str, operator: str, reason: str, policy_path: str | None, database: str
    ) -> None:
        with _warden(database, policy_path) as warden:
            act = warden.approve if choice == "approve" else warden.reject
            view = act(approval_id, operator=operator, reason=reason)
        _print_approval(view)

    command.__doc__ = (
        "Approve a request (a second, distinct operator is needed above the four-eyes amount)."
        if choice == "approve"
        else "Reject a request and release its hold."
    )
    return command


approvals.command("approve")(_decide("approve"))
approvals.command("reject")(_decide("reject"))


@click.group()
def grants() -> None:
    """Standing, bounded pre-approvals for one agent."""


@grants.command("add")
@click.option("--agent", required=True, help="The agent the grant covers (only this one).")
@click.option("--action", required=True, help="Action or glob, e.g. payments.transfer.")
@click.option("--max-per-payment", required=True, help="Ceiling for one payment, e.g. 2500.")
@click.option("--total", required=True, help="Ceiling for all payments under the grant.")
@click.option("--currency", required=True, help="Currency of both ceilings.")
@click.option("--uses", type=int, default=None, help="At most this many payments.")
@click.option("--recipient", "recipients", multiple=True, help="Allowed recipient (repeatable).")
@click.option("--expires-in", required=True, help="Lifetime, e.g. 1h, 7d.")
@click.option("--operator", required=True, help="Your operator id.")
@_database_option
def grants_add(
    agent: str,
    action: str,
    max_per_payment: str,
    total: str,
    currency: str,
    uses: int | None,
    recipients: tuple[str, ...],
    expires_in: str,
    operator: str,
    database: str,
) -> None:
    """Grant an agent bounded permission in place of per-payment approvals.

    Text that is not a duration, an amount or a currency is invalid input (exit 2, as in
    `check`); bounds the grant refuses, an unknown operator or a self-grant exit 1."""
    window = parse_window(expires_in)
    if window is None or window.kind != "rolling":
        _usage_error("--expires-in must be a duration such as 1h or 7d")
    try:
        per_payment = Money.parse(max_per_payment, currency)
        ceiling = Money.parse(total, currency)
    except InvalidInputError as error:
        _usage_error(str(error))
    request = GrantRequest(agent, action, per_payment, ceiling, window.seconds, uses, recipients)
    with _warden(database, None) as warden:  # bounds are checked in the grant's transaction
        row = warden.grant(request, operator=operator)
    click.echo(json.dumps(to_dict(row), indent=2))


@grants.command("list")
@click.option("--agent", default=None, help="Only this agent's grants.")
@click.option("--active", is_flag=True, help="Only grants in force now.")
@_database_option
def grants_list(agent: str | None, active: bool, database: str) -> None:
    """List grants with their use so far."""
    with _warden(database, None) as warden:
        rows = warden.grants(agent, active_only=active)
    click.echo(json.dumps([to_dict(row) for row in rows], indent=2))


@grants.command("revoke")
@click.argument("grant_id")
@click.option("--operator", required=True, help="Your operator id.")
@_database_option
def grants_revoke(grant_id: str, operator: str, database: str) -> None:
    """Revoke a grant at once."""
    with _warden(database, None) as warden:
        warden.revoke_grant(grant_id, operator=operator)
    click.echo(f"grant {grant_id} revoked")


@click.command()
@click.option("--agent", default=None, help="Halt only this agent (default: everyone).")
@click.option("--reason", required=True, help="Why; shown in every denied decision.")
@click.option("--actor", required=True, help="Who halts (operator id).")
@click.option("--void-pending", is_flag=True, help="Also void pending approval requests.")
@_database_option
def halt(agent: str | None, reason: str, actor: str, void_pending: bool, database: str) -> None:
    """Kill switch: deny every new authorization until `paywarden resume`."""
    with _warden(database, None) as warden:
        halt = warden.halt(agent, reason=reason, actor=actor, void_pending=void_pending)
    scope = "all agents" if halt.scope == "*" else f"agent {halt.scope}"
    click.echo(f"halted {scope}: {halt.reason} (by {halt.actor})")


@click.command()
@click.option("--agent", default=None, help="Resume only this agent's halt.")
@click.option("--actor", required=True, help="Who resumes (operator id).")
@_database_option
def resume(agent: str | None, actor: str, database: str) -> None:
    """Lift a halt."""
    with _warden(database, None) as warden:
        cleared = warden.resume(agent, actor=actor)
    click.echo("resumed" if cleared else "nothing was halted for that scope")
    sys.exit(0 if cleared else EXIT_REFUSED)
