"""The `paywarden` command line. Thin: every command calls the library and formats the result.

Commands load on first use. The root group knows each one only as the module that defines it
(`COMMANDS`), so `paywarden --version` loads no library code and `paywarden check` loads what
deciding needs and nothing else. `serve` and `mcp` need extras; without them they print one
line naming the extra and exit 2 (their `--help` still works).
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import click

from paywarden import __version__
from paywarden.errors import PaywardenError
from paywarden.extras import missing_extra, needs_extra_message

EXIT_INVALID = 2
_HERE = "paywarden.entrypoints.cli"


@dataclass(frozen=True, slots=True)
class LazyCommand:
    """Where a command is defined, and the extra it needs to run, if any."""

    module: str
    attribute: str
    extra: str | None = None
    # Imported before the command runs, so a missing extra is one line, not a traceback.
    needs: tuple[str, ...] = ()


COMMANDS: dict[str, LazyCommand] = {
    "agent": LazyCommand(f"{_HERE}.agent_cli", "agent"),
    "analytics": LazyCommand(f"{_HERE}.analytics_cli", "analytics"),
    "alerts": LazyCommand(f"{_HERE}.alerts_cli", "alerts"),
    "approvals": LazyCommand(f"{_HERE}.operator_cli", "approvals"),
    "audit": LazyCommand(f"{_HERE}.audit_cli", "audit"),
    "budgets": LazyCommand(f"{_HERE}.policy_cli", "budgets"),
    "check": LazyCommand(f"{_HERE}.check_cli", "check"),
    "db": LazyCommand(f"{_HERE}.db_cli", "db"),
    "demo": LazyCommand(f"{_HERE}.demo", "demo"),
    "disputes": LazyCommand(f"{_HERE}.workflow_cli", "disputes"),
    "grants": LazyCommand(f"{_HERE}.operator_cli", "grants"),
    "halt": LazyCommand(f"{_HERE}.operator_cli", "halt"),
    "keys": LazyCommand(f"{_HERE}.keys_cli", "keys"),
    "mcp": LazyCommand(
        "paywarden.entrypoints.mcp.cli",
        "mcp_command",
        extra="mcp",
        needs=("anyio", "paywarden.entrypoints.mcp.server"),
    ),
    "mcp-proxy": LazyCommand(
        "paywarden.entrypoints.mcp.proxy_cli",
        "mcp_proxy_command",
        extra="mcp",
        needs=("anyio", "paywarden.entrypoints.mcp.proxy"),
    ),
    "operators": LazyCommand(f"{_HERE}.operator_cli", "operators"),
    "payments": LazyCommand(f"{_HERE}.payments_cli", "payments"),
    "policy": LazyCommand(f"{_HERE}.policy_cli", "policy"),
    "reconcile": LazyCommand(f"{_HERE}.payments_cli", "reconcile"),
    "refund": LazyCommand(f"{_HERE}.workflow_cli", "refund"),
    "resume": LazyCommand(f"{_HERE}.operator_cli", "resume"),
    "scopes": LazyCommand(f"{_HERE}.workflow_cli", "scopes"),
    "serve": LazyCommand(
        f"{_HERE}.serve_cli",
        "serve",
        extra="server",
        needs=("uvicorn", "paywarden.entrypoints.rest.server", "paywarden.entrypoints.rest.app"),
    ),
    "sessions": LazyCommand(f"{_HERE}.workflow_cli", "sessions"),
}


def require_extra(feature: str, extra: str, modules: tuple[str, ...]) -> None:
    """Import `modules`; one of `extra`'s packages missing prints one line and exits 2."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            if not missing_extra(error, extra):
                raise  # a bug, not a missing extra: keep the traceback
            click.echo(f"error: {needs_extra_message(feature, extra)}", err=True)
            sys.exit(EXIT_INVALID)


def _load(name: str, lazy: LazyCommand) -> click.Command:
    command = getattr(importlib.import_module(lazy.module), lazy.attribute)
    if not isinstance(command, click.Command) or command.name != name:
        raise RuntimeError(f"{lazy.module}.{lazy.attribute} is not the `{name}` command")
    if lazy.extra is not None and command.callback is not None:
        command.callback = _requiring(f"paywarden {name}", lazy.extra, lazy.needs, command.callback)
    return command


def _requiring(
    feature: str, extra: str, modules: tuple[str, ...], callback: Callable[..., Any]
) -> Callable[..., Any]:
    """`callback`, run only once `modules` import (else the one-line error naming `extra`)."""

    @functools.wraps(callback)
    def checked(*args: Any, **kwargs: Any) -> Any:
        require_extra(feature, extra, modules)
        return callback(*args, **kwargs)

    return checked


class LazyCommands(MutableMapping[str, click.Command]):
    """A group's commands, each imported from its module the first time it is looked up.

    Listing names (`paywarden --help` lists them with their help, so that one loads them all)
    and membership tests load nothing.
    """

    def __init__(self, table: Mapping[str, LazyCommand]) -> None:
        self._table = dict(table)
        self._loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded:
            self._loaded[name] = _load(name, self._table[name])  # KeyError: no such command
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self._table and name not in self._loaded:
            raise KeyError(name)
        self._table.pop(name, None)
        self._loaded.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._table or name in self._loaded

    def __iter__(self) -> Iterator[str]:
        return iter(sorted({*self._table, *self._loaded}))

    def __len__(self) -> int:
        return len({*self._table, *self._loaded})


@click.group(
    commands=LazyCommands(COMMANDS),
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="paywarden")
def cli() -> None:
    """paywarden: the payment firewall for AI agents."""


def main() -> None:
    """Run the CLI; a paywarden error (unreadable database, bad key) exits 2 with one line."""
    try:
        cli(standalone_mode=True)
    except PaywardenError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_INVALID)


if __name__ == "__main__":  # `python -m paywarden.entrypoints.cli.main`
    main()
