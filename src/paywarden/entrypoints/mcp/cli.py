"""`paywarden mcp`: serve the agent tools over stdio to one MCP client, as one agent."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from paywarden.adapters.storage.postgres_audit import database_missing

KEY_ENV = "PAYWARDEN_AGENT_KEY"
EXIT_INVALID = 2


@click.command("mcp")
@click.option(
    "--policy",
    "policy_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Policy YAML file.",
)
@click.option(
    "--database",
    default="paywarden.db",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="SQLite ledger file or PostgreSQL URL (where the API keys were created).",
)
@click.option(
    "--environment",
    default=None,
    help="The deployment's environment (production when unset); payments are decided in it.",
)
@click.option(
    "--key",
    envvar=KEY_ENV,
    show_envvar=True,
    required=True,
    help=f"The agent's API key. Prefer the {KEY_ENV} environment variable: a flag is "
    "visible to other users of the machine.",
)
def mcp_command(policy_path: str, database: str, environment: str | None, key: str) -> None:
    """Serve paywarden's agent tools to an MCP client over stdio.

    The client starts this command and talks MCP on its stdin and stdout. Every tool acts as
    the agent of the key, which is checked at start and again on each call; operator and admin
    keys are refused. Exit status: 2 when the key or the ledger cannot be used.
    """
    import anyio  # the SDK loads only for this command

    from paywarden.warden import Warden

    from .agent_tools import caller_of
    from .server import build_server

    if database_missing(database):
        click.echo(f"error: no ledger at `{database}` (create it and an agent key first)", err=True)
        sys.exit(EXIT_INVALID)
    with Warden.open(Path(policy_path), database=database, environment=environment) as warden:
        caller_of(warden.authenticate(key))  # fail fast, before the client starts talking

        server = build_server(warden, lambda: warden.authenticate(key))
        anyio.run(server.run_stdio_async)
