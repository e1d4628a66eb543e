"""Shared parts of the adversarial tests (test_adversarial*.py): a rail that records the payee
it was asked to pay, and readers of the raw database files and state tables.

Everything here uses real parts: a SQLite file under the test's tmp_path, the real sandbox rail
behind the recorder. The helpers every test folder uses (audit readers, the MCP client, intent
bodies) are in the `support` package.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from paywarden.adapters.rails.sandbox import SandboxRail
from paywarden.payee import Payee
from paywarden.rails import RailPayment, Receipt
from support import ledger_file
from support.wardens import no_sleep

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
        self.inner = SandboxRail(sleep=no_sleep)
        self.paid: list[Payee] = []

    def pay(self, payment: RailPayment) -> Receipt:
        self.paid.append(payment.payee)
        return self.inner.pay(payment)

    def status(self, payment: RailPayment) -> Receipt:
        return self.inner.status(payment)

    def refund(self, payment: RailPayment, amount_minor: int, refund_key: str) -> Receipt:
        return self.inner.refund(payment, amount_minor, refund_key)


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


def table_state(database: Path, tables: Iterable[str] = STATE_TABLES) -> dict[str, list[Any]]:
    """Every row of the state tables: compared before and after a refused request."""
    return ledger_file.table_state(database, tables)
