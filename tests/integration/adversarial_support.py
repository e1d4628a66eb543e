"""Shared parts of the adversarial tests (test_adversarial*.py): a rail that records the payee
it was asked to pay, readers of the raw database files and tables, and the MCP client harness.

Everything here uses real parts: a SQLite file under the test's tmp_path, the real sandbox rail
behind the recorder, the real MCP server driven by the SDK's in-process client.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp_types import CallToolResult

from paywarden import Warden
from paywarden.adapters.rails.sandbox import SandboxRail
from paywarden.adapters.storage.sqlite_audit import iter_audit_readonly
from paywarden.audit.chain import AuditEntry
from paywarden.entrypoints.mcp.server import build_server
from paywarden.payee import Payee
from paywarden.rails import RailPayment, Receipt

# Tables whose rows are state a refused request must never change.
STATE_TABLES = (
    "holds",
    "hold_charges",
    "budget_counters",
    "velocity_events",
    "payments",
    "approvals",
    "sessions",
    "grants",
)
REFUSED = "decision.refused"


class RecordingRail:
    """The sandbox rail, noting the exact payee of every `pay` it receives."""

    name = "sandbox"

    def __init__(self) -> None:
        self.inner = SandboxRail(sleep=lambda seconds: None)
        self.paid: list[Payee] = []

    def pay(self, payment: RailPayment) -> Receipt:
        self.paid.append(payment.payee)
        return self.inner.pay(payment)

    def status(self, payment: RailPayment) -> Receipt:
        return self.inner.status(payment)

    def refund(self, payment: RailPayment, amount_minor: int, refund_key: str) -> Receipt:
        return self.inner.refund(payment, amount_minor, refund_key)


def open_warden(policy: str, database: Path, **options: Any) -> Warden:
    """A Warden on a SQLite file, with no sleeping between rail retries."""
    options.setdefault("sleep", lambda seconds: None)
    return Warden.open(policy, database=database, **options)


# The raw database -------------------------------------------------------------------------------


def database_files(database: Path) -> list[Path]:
    """The database and its -wal / -shm companions, as they are on disk now."""
    return sorted(p for p in database.parent.iterdir() if p.name.startswith(database.name))


def leaks(database: Path, needles: Iterable[str]) -> list[tuple[str, str]]:
    """(file, needle) for every needle found anywhere in the bytes of the database files, as
    written or as JSON escapes it (a tab or line break inside a stored JSON text)."""
    found = []
    for path in database_files(database):
        data = path.read_bytes()
        for needle in needles:
            forms = {needle, json.dumps(needle)[1:-1], json.dumps(needle, ensure_ascii=False)[1:-1]}
            if needle and any(form.encode("utf-8") in data for form in forms):
                found.append((path.name, needle))
    return found


def rows(database: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(database)) as db:
        return db.execute(sql, args).fetchall()


def table_state(database: Path, tables: Iterable[str] = STATE_TABLES) -> dict[str, list[Any]]:
    """Every row of the state tables: compared before and after a refused request."""
    with closing(sqlite3.connect(database)) as db:
        return {
            table: sorted(map(repr, db.execute(f"SELECT * FROM {table}").fetchall()))
            for table in tables
        }


def entries(database: Path) -> list[AuditEntry]:
    return list(iter_audit_readonly(database))


def bodies(database: Path, kind: str) -> list[dict[str, Any]]:
    return [json.loads(entry.body) for entry in entries(database) if entry.kind == kind]


def audit_count(warden: Warden) -> int:
    return len(warden.audit_entries(0, 1000))


def new_entries(warden: Warden, before: int) -> list[AuditEntry]:
    return warden.audit_entries(before, 1000)


# MCP --------------------------------------------------------------------------------------------


def run_mcp(warden: Warden, secret: str, body: Callable[[Client], Awaitable[None]]) -> None:
    """Drive the real MCP server of `warden`, as the agent of the key `secret`."""
    server = build_server(warden, lambda: warden.authenticate(secret))

    async def main() -> None:
        async with Client(server, mode="legacy") as client:
            await body(client)

    anyio.run(main)


def mcp_call(warden: Warden, secret: str, tool: str, arguments: dict[str, Any]) -> CallToolResult:
    """One tool call, its whole result."""
    results: list[CallToolResult] = []

    async def body(client: Client) -> None:
        results.append(await client.call_tool(tool, arguments))

    run_mcp(warden, secret, body)
    return results[0]


def tool_text(result: CallToolResult) -> str:
    return "".join(getattr(part, "text", "") for part in result.content)


def pay_args(amount: object = "10.00", **changes: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "action": "payments.transfer",
        "amount": amount,
        "currency": "USD",
        "recipient": "vendor.example.com",
    }
    args.update(changes)
    return args
