"""`paywarden keys create|list|revoke`: API keys for the gateway, over the library API.

Keys are hashed under the server secret (`PAYWARDEN_KEY_SECRET`, else `<database>.keysecret`),
so run these with the same environment and database as `paywarden serve`.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import click

from paywarden.errors import PaywardenError
from paywarden.keys import ROLES
from paywarden.ports import KeyRow
from paywarden.warden import Warden

EXIT_REFUSED = 1
_DATABASE = click.option(
    "--database",
    default="paywarden.db",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="SQLite ledger file or PostgreSQL URL the gateway serves.",
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in some containers
        return "cli"


@contextmanager
def _warden(database: str) -> Iterator[Warden]:
    """Open the ledger (created if needed); a refusal exits 1 with one line."""
    try:
        with Warden.open(None, database=database) as warden:
            yield warden
    except PaywardenError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_REFUSED)


def _row(row: KeyRow) -> dict[str, object]:
    return {
        "key_id": row.key_id,
        "prefix": row.prefix,
        "role": row.role,
        "agent": row.agent,
        "operator": row.operator,
        "environment": row.environment,
        "created_by": row.created_by,
        "created_us": row.created_us,
        "revoked_us": row.revoked_us,
    }


def _time(us: int | None) -> str:
    if us is None:
        return "-"
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@click.group()
def keys() -> None:
    """API keys for the REST gateway: create (shown once), list, revoke."""


@keys.command("create")
@click.option("--role", required=True, type=click.Choice(ROLES), help="What the key may do.")
@click.option("--agent", default=None, help="The agent an agent key acts as (required for it).")
@click.option(
    "--operator",
    default=None,
    help="The registered operator an operator key acts as (required for it).",
)
@click.option(
    "--environment",
    default=None,
    help="Pin an agent key to one environment (default: the gateway's).",
)
@_DATABASE
@_JSON
def keys_create(
    role: str,
    agent: str | None,
    operator: str | None,
    environment: str | None,
    database: str,
    as_json: bool,
) -> None:
    """Create an API key and print it. It is shown only this once: store it now.

    Exit status: 0 when created, 1 when refused (an unregistered operator, a missing --agent).
    """
    with _warden(database) as warden:
        secret, row = warden.create_key(
            role=role, agent=agent, operator=operator, environment=environment, actor=_actor()
        )
    if as_json:
        click.echo(json.dumps({"key": secret, **_row(row)}, indent=2))
        return
    who = row.agent or row.operator or "keys and policy"
    click.echo(f"key:    {secret}")
    click.echo(f"id:     {row.key_id} ({row.role} for {who})")
    click.echo("This key is shown only once. Send it as `Authorization: Bearer <key>`.")


@keys.command("list")
@_DATABASE
@_JSON
def keys_list(database: str, as_json: bool) -> None:
    """List keys (their ids and prefixes, never the keys)."""
    with _warden(database) as warden:
        rows = warden.keys()
    if as_json:
        click.echo(json.dumps([_row(row) for row in rows], indent=2))
        return
    for row in rows:
        status = "revoked " + _time(row.revoked_us) if row.revoked_us else "active"
        who = row.agent or row.operator or "-"
        click.echo(f"{row.key_id}  {row.role:<8} {who:<20} {row.prefix}...  {status}")
    if not rows:
        click.echo("(no keys)")


@keys.command("revoke")
@click.argument("key_id")
@_DATABASE
def keys_revoke(key_id: str, database: str) -> None:
    """Revoke a key at once; the next request made with it gets 401."""
    with _warden(database) as warden:
        row = warden.revoke_key(key_id, actor=_actor())
    click.echo(f"revoked {row.key_id} at {_time(row.revoked_us)}")
