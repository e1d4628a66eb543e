"""`paywarden db ...`: the database's schema: `status`, `migrate`, and `grant` (PostgreSQL).

Works on a SQLite file and on a PostgreSQL URL alike (`--database`, or `PAYWARDEN_DATABASE`).
Migrations are additive, so gateways of the previous version keep running while one host
migrates; a gateway refuses to open a schema newer than it knows.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click

from paywarden.adapters.storage.postgres_audit import SchemaStatus, is_url, schema_status
from paywarden.errors import PaywardenError

EXIT_BEHIND = 1
EXIT_USAGE = 2

_DATABASE = click.option(
    "--database",
    default="paywarden.db",
    show_default=True,
    envvar="PAYWARDEN_DATABASE",
    help="SQLite ledger file, or a PostgreSQL URL (postgresql://...).",
)


def _die(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _status(database: str) -> SchemaStatus:
    try:
        return schema_status(database)
    except PaywardenError as error:
        _die(str(error))
        raise  # unreachable: _die exits


@click.group()
def db() -> None:
    """The database schema: status, migrate, grant."""


@db.command()
@_DATABASE
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(database: str, as_json: bool) -> None:
    """Show the schema version and the migrations not applied yet. Exit 0 up to date, 1
    behind (run `paywarden db migrate`) or newer than this paywarden, 2 on error."""
    current = _status(database)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "store": current.kind,
                    "version": current.version,
                    "known": current.known,
                    "pending": list(current.pending),
                    "newer": current.newer,
                    "applied": [
                        {"version": version, "applied_us": applied_us}
                        for version, applied_us in current.applied
                    ],
                },
                indent=2,
            )
        )
    else:
        click.echo(f"store:   {current.kind}")
        click.echo(f"schema:  version {current.version} (this paywarden knows {current.known})")
        for version, applied_us in current.applied:
            when = datetime.fromtimestamp(applied_us / 1e6, UTC).isoformat(timespec="seconds")
            click.echo(f"  {version:>3}  applied {when}")
        if current.newer:
            click.echo("newer than this paywarden: upgrade it before opening this database")
        elif current.pending:
            pending = ", ".join(str(version) for version in current.pending)
            click.echo(f"pending: {pending} (run `paywarden db migrate`)")
        else:
            click.echo("up to date")
    sys.exit(EXIT_BEHIND if current.newer or current.pending else 0)


@db.command()
@_DATABASE
def migrate(database: str) -> None:
    """Apply the migrations not applied yet (additive: gateways of the previous version keep
    running). A database newer than this paywarden is refused and left unchanged."""
    from paywarden.bootstrap import open_store

    before = _status(database) if is_url(database) else None
    try:
        open_store(database, migrate=True).close()
    except PaywardenError as error:
        _die(str(error))
    after = _status(database)
    was = before.version if before is not None else None
    if was is not None and was == after.version:
        click.echo(f"schema already at version {after.version}: nothing to do")
    else:
        click.echo(f"schema at version {after.version}")


@db.command()
@click.argument("role")
@_DATABASE
def grant(role: str, database: str) -> None:
    """Give the gateway's PostgreSQL ROLE what it needs (run as the schema's owner): read and
    write every table except the audit log, which it may only read and append to."""
    if not is_url(database):
        _die("`paywarden db grant` needs a PostgreSQL URL (a SQLite file has no roles)")
    from paywarden.bootstrap import open_store

    try:
        store = open_store(database, migrate=False)
    except PaywardenError as error:
        _die(str(error))
        return
    from paywarden.adapters.storage.postgres import PostgresStore

    assert isinstance(store, PostgresStore)  # a PostgreSQL URL opens the PostgreSQL store
    try:
        for statement in store.grant(role):
            click.echo(statement)
    except PaywardenError as error:
        _die(str(error))
    finally:
        store.close()
