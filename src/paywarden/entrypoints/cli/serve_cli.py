"""`paywarden serve`: run the REST gateway under uvicorn.

Settings come from defaults, then a config file (`--config` or `PAYWARDEN_CONFIG`), then
`PAYWARDEN_*` environment variables, then these options. A bad setting exits 2 before anything
starts; a missing or invalid policy starts the gateway not ready, denying every payment.

The REST package (FastAPI, uvicorn, the MCP SDK: the `server` extra) loads only when the command
runs, after `paywarden.entrypoints.cli.main` has checked that the extra is installed.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import click

from paywarden.adapters.storage.postgres_audit import redact_url
from paywarden.errors import InvalidInputError
from paywarden.policy.loading import load_policy

if TYPE_CHECKING:
    from paywarden.entrypoints.rest.settings import Settings

EXIT_USAGE = 2


@click.command()
@click.option(
    "--config",
    default=None,
    type=click.Path(dir_okay=False, exists=True),
    help="Settings file (TOML or YAML); also PAYWARDEN_CONFIG.",
)
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port to listen on (default 8000).")
@click.option(
    "--database",
    default=None,
    type=click.Path(dir_okay=False),
    help="SQLite ledger file (default ./paywarden.db), or a PostgreSQL URL.",
)
@click.option(
    "--policy",
    default=None,
    type=click.Path(dir_okay=False),
    help="Policy YAML file; watched and reloaded when it changes.",
)
@click.option("--environment", default=None, help="The deployment's environment name.")
@click.option("--workers", default=None, type=int, help="Worker processes (default 1).")
@click.option("--log-level", default=None, help="uvicorn log level (default info).")
@click.option(
    "--access-log/--no-access-log",
    default=None,
    help="Log every request, without its query string (default on).",
)
@click.option(
    "--connections-max",
    default=None,
    type=int,
    help="Open connections per process above which requests get 503 (default 1000).",
)
@click.option(
    "--header-timeout-seconds",
    default=None,
    type=float,
    help="Close a connection whose request line and headers take longer (default 10).",
)
@click.option(
    "--body-timeout-seconds",
    default=None,
    type=float,
    help="Answer 408 when a request body takes longer to arrive (default 30).",
)
@click.option(
    "--keep-alive-timeout-seconds",
    default=None,
    type=int,
    help="Close an idle keep-alive connection after this many seconds (default 5).",
)
@click.option(
    "--store-backlog-max",
    default=None,
    type=int,
    help="Writes waiting for the store at which a write gets 503 before it is taken "
    "(default 256; 0: never).",
)
def serve(
    config: str | None,
    host: str | None,
    port: int | None,
    database: str | None,
    policy: str | None,
    environment: str | None,
    workers: int | None,
    log_level: str | None,
    access_log: bool | None,
    connections_max: int | None,
    header_timeout_seconds: float | None,
    body_timeout_seconds: float | None,
    keep_alive_timeout_seconds: int | None,
    store_backlog_max: int | None,
) -> None:
    """Run the REST gateway (API keys, /v1 routes, OpenAPI at /docs) until interrupted."""
    from paywarden.entrypoints.rest.settings import load_settings

    overrides = {
        "host": host,
        "port": port,
        "database": database,
        "policy": policy,
        "environment": environment,
        "workers": workers,
        "log_level": log_level,
        "access_log": access_log,
        "connections_max": connections_max,
        "header_timeout_seconds": header_timeout_seconds,
        "body_timeout_seconds": body_timeout_seconds,
        "keep_alive_timeout_seconds": keep_alive_timeout_seconds,
        "store_backlog_max": store_backlog_max,
    }
    try:
        settings = load_settings(config, os.environ, overrides)
    except InvalidInputError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_USAGE)
    _print_banner(settings)
    run(settings, os.environ)


def _print_banner(settings: Settings) -> None:
    url = f"http://{settings.host}:{settings.port}"
    click.echo(f"paywarden gateway on {url}  (API docs at {url}/docs)")
    database = settings.database
    shown = redact_url(database) if "://" in database else Path(database).resolve()
    click.echo(f"ledger:  {shown}")
    loaded = load_policy(Path(settings.policy) if settings.policy else None)
    if loaded.policy is not None:
        click.echo(f"policy:  {loaded.source} (version {loaded.policy.version[:19]})")
    else:
        click.echo(f"policy:  NOT READY, every payment is denied: {loaded.report.summary()}")
    click.echo("get a key (shown once), then call the API with it:")
    click.echo(
        f"  paywarden keys create --database {settings.database} --role agent --agent my-agent"
    )
    click.echo(
        f"  curl -H 'Authorization: Bearer <key>' -H 'Idempotency-Key: order-1'"
        f" -H 'Content-Type: application/json' {url}/v1/payments -d"
        """ '{"action":"payments.transfer","amount":"25.00","currency":"USD","""
        """"recipient":"vendor.example.com"}'"""
    )


def run(settings: Settings, environ: Mapping[str, str]) -> None:
    """Serve until interrupted: one process, or `workers` processes sharing the ledger."""
    import uvicorn

    from paywarden.entrypoints.rest.server import uvicorn_options

    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s: %(message)s")
    options = uvicorn_options(settings)
    if settings.workers == 1:
        from paywarden.entrypoints.rest.app import create_app

        uvicorn.run(create_app(settings), **options)
        return
    os.environ.update({**environ, **settings.to_environ()})  # how the workers get them
    uvicorn.run(
        "paywarden.entrypoints.rest.app:create_app_from_environment",
        factory=True,
        workers=settings.workers,
        **options,
    )
