"""`paywarden alerts list|sweep`: the alerts the policy's `alerts:` rules raised."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from paywarden.actions.alerts import view
from paywarden.entrypoints.cli.operator_cli import _database_option, _warden
from paywarden.policy.alert_settings import KINDS
from paywarden.ports import AlertRow


def _print(rows: list[AlertRow], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([view(row) for row in rows], indent=2))
        return
    if not rows:
        click.echo("no alerts")
    for row in rows:
        when = datetime.fromtimestamp(row.created_us / 1_000_000, UTC).isoformat(timespec="seconds")
        click.echo(f"{row.alert_id}  {when}  {row.kind:<18} {row.rule_id}: {row.text}")


@click.group()
def alerts() -> None:
    """Alerts raised by the policy's `alerts:` rules (docs/observability.md)."""


@alerts.command("list")
@click.option("--kind", type=click.Choice(sorted(KINDS)), default=None, help="Only this kind.")
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=50,
    show_default=True,
    help="At most this many.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_database_option
def alerts_list(kind: str | None, limit: int, as_json: bool, database: str) -> None:
    """Recent alerts, newest first."""
    with _warden(database, None) as warden:
        rows = warden.alerts(kind, limit=limit)
    _print(rows, as_json)


@alerts.command("sweep")
@click.option(
    "--policy",
    "policy_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Policy YAML file whose `alerts:` rules apply.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_database_option
def alerts_sweep(policy_path: str, as_json: bool, database: str) -> None:
    """Raise the swept alerts now (breaker opened, halt, approval waiting), as the gateway
    does every few seconds; prints the alerts this run raised."""
    with _warden(database, policy_path) as warden:
        rows = warden.sweep_alerts()
    _print(rows, as_json)
