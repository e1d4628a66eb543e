"""`paywarden serve`: run the REST gateway under uvicorn.

Settings come from defaults, then a config file (`--config` or `PAYWARDEN_CONFIG`), then
`PAYWARDEN_*` environment variables, then these options. A bad setting exits 2 before anything
starts; the port is bound next (0: any free port), and a busy one exits 3 before the banner,
which then prints the real port and commands that work as printed. A missing or invalid policy
starts the gateway not ready, denying every payment.

The REST package (FastAPI, uvicorn, the MCP SDK: the `server` extra) loads only when the command
runs, after `paywarden.entrypoints.cli.main` has checked that the extra is installed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shlex
import shutil
import socket
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
# The gateway could not start (docs/cli.md): the port is in use or cannot be bound (before any
# banner), or the app failed at startup (its log says why); uvicorn's own status for both.
EXIT_PORT = 3
EXIT_STARTUP = 3


@click.command()
@click.option(
    "--config",
    default=None,
    type=click.Path(dir_okay=False, exists=True),
    help="Settings file (TOML or YAML); also PAYWARDEN_CONFIG.",
)
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option(
    "--port",
    default=None,
    type=int,
    help="Port to listen on (default 8000; 0: any free port, printed at start).",
)
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
    help="Policy YAML file to upload to the ledger (watched, uploaded again when it changes);"
    " without it, the ledger's policy in force.",
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
@click.option(
    "--metrics/--no-metrics",
    "metrics_enabled",
    default=None,
    help="Serve Prometheus metrics at /metrics to operator and admin keys (default on).",
)
@click.option(
    "--log-format",
    default=None,
    type=click.Choice(["text", "json"]),
    help="Log lines as text or as JSON objects (default text); also PAYWARDEN_LOG_FORMAT.",
)
@click.option(
    "--public-url",
    default=None,
    help="The URL people open the gateway at; the console takes form posts from it only "
    "(https: a Secure session cookie).",
)
@click.option(
    "--trusted-proxies",
    default=None,
    help="Comma-separated IPs or networks of proxies whose X-Forwarded-Proto/-For count.",
)
@click.option(
    "--console-session-idle-seconds",
    default=None,
    type=int,
    help="A console session unused this long ends (default 1800).",
)
@click.option(
    "--console-session-max-seconds",
    default=None,
    type=int,
    help="A console session ends this long after sign-in (default 43200).",
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
    metrics_enabled: bool | None,
    log_format: str | None,
    **console: object,  # --public-url, --trusted-proxies and the console session limits
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
        "metrics_enabled": metrics_enabled,
        "log_format": log_format,
        **console,
    }
    try:
        settings = load_settings(config, os.environ, overrides)
    except InvalidInputError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_USAGE)
    listener = _listen(settings)
    settings = dataclasses.replace(settings, port=listener.getsockname()[1])
    _print_banner(settings)
    run(settings, os.environ, listener)


def _listen(settings: Settings) -> socket.socket:
    """Bind the port first: a busy port ends here, before any banner, with `EXIT_PORT`."""
    from paywarden.entrypoints.rest.server import bind_listener

    try:
        return bind_listener(settings.host, settings.port)
    except OSError as error:
        reason = error.strerror or str(error)
        click.echo(
            f"error: cannot listen on {settings.host}:{settings.port}: {reason}; "
            "pick another --port (0: any free port)",
            err=True,
        )
        sys.exit(EXIT_PORT)


def command_prefix(argv0: str, path_lookup: str | None) -> str:
    """How to run this same `paywarden` again from the current directory: `paywarden` when
    that name on PATH is this program, else the path it was started by (`.venv/bin/paywarden`
    after `make run`)."""
    started = Path(argv0)
    if started.name != "paywarden":  # not the console script (`python -m`, a test harness)
        started = Path(sys.executable).with_name("paywarden")
        if not started.exists():
            return "paywarden"
    if path_lookup and Path(path_lookup).resolve() == started.resolve():
        return "paywarden"
    return shlex.quote(str(started))


def _print_banner(settings: Settings) -> None:
    url = f"http://{_url_host(settings.host)}:{settings.port}"
    click.echo(f"paywarden gateway on {url}  (API docs at {url}/docs)")
    database = settings.database
    shown = redact_url(database) if "://" in database else Path(database).resolve()
    click.echo(f"ledger:  {shown}")
    loaded = load_policy(Path(settings.policy) if settings.policy else None)
    if settings.policy is None:
        click.echo(
            "policy:  the one in force in the ledger"
            " (none there: not ready, every payment is denied)"
        )
    elif loaded.policy is not None:
        click.echo(f"policy:  {loaded.source} (version {loaded.policy.version[:19]})")
    else:
        click.echo(f"policy:  NOT READY, every payment is denied: {loaded.report.summary()}")
    program = command_prefix(sys.argv[0], shutil.which("paywarden"))
    click.echo("get a key (shown once), then call the API with it:")
    click.echo(
        f"  {program} keys create --database {shlex.quote(database)} --role agent --agent my-agent"
    )
    click.echo(
        f"  curl -H 'Authorization: Bearer <key>' -H 'Idempotency-Key: order-1'"
        f" -H 'Content-Type: application/json' {url}/v1/payments -d"
        """ '{"action":"payments.transfer","amount":"25.00","currency":"USD","""
        """"recipient":"vendor.example.com"}'"""
    )


def _url_host(host: str) -> str:
    """The host as a URL names it: IPv6 in brackets; the wildcard as loopback (reachable)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def run(settings: Settings, environ: Mapping[str, str], listener: socket.socket) -> None:
    """Serve on `listener` until interrupted: one process, or `workers` processes sharing the
    socket and the ledger."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from paywarden.entrypoints.rest.logs import root_handler
    from paywarden.entrypoints.rest.server import uvicorn_options

    logging.basicConfig(
        level=settings.log_level.upper(), handlers=[root_handler(settings.log_format)]
    )
    options = uvicorn_options(settings)
    if settings.workers == 1:
        from paywarden.entrypoints.rest.app import create_app

        server = uvicorn.Server(uvicorn.Config(create_app(settings), **options))
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[listener])
        if not server.started:
            sys.exit(EXIT_STARTUP)
        return
    os.environ.update({**environ, **settings.to_environ()})  # how the workers get them
    config = uvicorn.Config(
        "paywarden.entrypoints.rest.app:create_app_from_environment",
        factory=True,
        workers=settings.workers,
        **options,
    )
    with contextlib.suppress(KeyboardInterrupt):
        Multiprocess(config, sockets=[listener]).run()
