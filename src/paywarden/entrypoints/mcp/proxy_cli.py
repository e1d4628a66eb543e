"""`paywarden mcp-proxy`: serve an upstream payment MCP server's tools over stdio, with every
money-moving call decided by paywarden first (see `proxy.py` and docs/mcp.md)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from paywarden.adapters.storage.postgres_audit import database_missing
from paywarden.errors import PaywardenError

from .cli import EXIT_INVALID, KEY_ENV


@click.command("mcp-proxy")
@click.option("--upstream", required=True,
              help="The upstream MCP server's command line (started over stdio).")  # fmt: skip
@click.option("--mapping", "mapping_path", required=True, type=click.Path(dir_okay=False),
              help="The mapping file: which tools move money, and their arguments.")  # fmt: skip
@click.option("--policy", "policy_path", required=True, type=click.Path(dir_okay=False),
              help="Policy YAML file.")  # fmt: skip
@click.option("--database", default="paywarden.db", show_default=True,
              type=click.Path(dir_okay=False),
              help="SQLite ledger file or PostgreSQL URL (with the API keys).")  # fmt: skip
@click.option("--key", envvar=KEY_ENV, show_envvar=True, required=True,
              help=f"The agent's API key (prefer the {KEY_ENV} environment variable).")  # fmt: skip
@click.option("--timeout", "timeout_seconds", type=click.FloatRange(0.1, 600), default=30.0,
              show_default=True, help="Seconds to wait for an upstream payment tool; past it "
              "the payment is left unknown for an operator.")  # fmt: skip
def mcp_proxy_command(
    upstream: str,
    mapping_path: str,
    policy_path: str,
    database: str,
    key: str,
    timeout_seconds: float,
) -> None:
    """Front an existing payment MCP server: money-moving tools pass only when allowed.

    The client starts this command and talks MCP on stdin and stdout; this command starts the
    upstream server (`--upstream`) and forwards its tools, as the agent of the key. Exit
    status: 2 when the key, the ledger or the mapping cannot be used.
    """
    import anyio
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters
    from mcp.server.stdio import stdio_server

    from paywarden.warden import Warden

    from .agent_tools import caller_of
    from .proxy import RAIL_NAME, McpToolRail, build_proxy, load_mapping

    if database_missing(database):
        click.echo(f"error: no ledger at `{database}` (create it and an agent key first)", err=True)
        sys.exit(EXIT_INVALID)
    try:
        mapping = load_mapping(Path(mapping_path).read_text(encoding="utf-8"))
    except (OSError, PaywardenError) as error:
        click.echo(f"error: mapping `{mapping_path}`: {error}", err=True)
        sys.exit(EXIT_INVALID)
    command, *args = shlex.split(upstream)
    rail = McpToolRail(None, timeout_seconds)  # its upstream client is connected below
    with Warden.open(Path(policy_path), database=database, rails={RAIL_NAME: rail}) as warden:
        try:
            agent = caller_of(warden.authenticate(key)).agent
        except PaywardenError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(EXIT_INVALID)

        async def main() -> None:
            async with Client(StdioServerParameters(command=command, args=args)) as client:
                rail.upstream = client
                server = build_proxy(warden, client, mapping, rail, agent=agent)
                async with stdio_server() as (read, write):
                    await server.run(read, write, server.create_initialization_options())

        anyio.run(main)
