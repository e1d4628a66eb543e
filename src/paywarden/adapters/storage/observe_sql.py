"""The SQL of the observability repositories (alerts, metric gauges), shared by both stores.

Statements are written with `?` placeholders (SQLite's); the PostgreSQL store swaps them for
`%s` (`postgres_text`). Every gauge is an aggregate over an indexed or small table, read at
scrape time in one read transaction, never on a decision's path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from paywarden.ports import AlertRow, StateCount, StoreGauges

ALERT_COLUMNS = "alert_id, dedup_key, rule_id, kind, ref_id, text, body, created_us"
INSERT_ALERT = (
    f"INSERT INTO alerts ({ALERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (dedup_key) DO NOTHING"
)
LIST_ALERTS = f"SELECT {ALERT_COLUMNS} FROM alerts ORDER BY created_us DESC, alert_id DESC LIMIT ?"
LIST_ALERTS_OF_KIND = (
    f"SELECT {ALERT_COLUMNS} FROM alerts WHERE kind = ?"
    " ORDER BY created_us DESC, alert_id DESC LIMIT ?"
)
# One statement per gauge group; each answers rows of (group, state, count) or plain counts.
APPROVALS_PENDING = "SELECT COUNT(*), MIN(created_us) FROM approvals WHERE status = 'pending'"
HOLDS_OPEN = "SELECT COUNT(*) FROM holds WHERE state = 'held'"
PAYMENTS = "SELECT rail, state, COUNT(*) FROM payments GROUP BY rail, state ORDER BY rail, state"
BREAKERS = "SELECT rail, state, 1 FROM breakers ORDER BY rail"
# A delivered event took `attempts` tries, the last a success; an undelivered one failed each.
OUTBOX = (
    "SELECT COALESCE(SUM(attempts), 0) - COUNT(delivered_us), COUNT(*) - COUNT(delivered_us)"
    " FROM outbox"
)
ALERTS_BY_KIND = "SELECT kind, 'raised', COUNT(*) FROM alerts GROUP BY kind ORDER BY kind"


def postgres_text(statement: str) -> str:
    return statement.replace("?", "%s")


def alert_params(row: AlertRow) -> tuple[object, ...]:
    return (
        row.alert_id,
        row.dedup_key,
        row.rule_id,
        row.kind,
        row.ref_id,
        row.text,
        row.body,
        row.created_us,
    )


def alert_rows(rows: Sequence[Sequence[Any]]) -> list[AlertRow]:
    return [AlertRow(*row) for row in rows]


def read_gauges(fetch: Callable[[str], list[tuple[Any, ...]]]) -> StoreGauges:
    """Every gauge, each statement run by `fetch` (which answers its rows)."""

    def counts(statement: str) -> tuple[StateCount, ...]:
        return tuple(StateCount(str(a), str(b), int(c)) for a, b, c in fetch(statement))

    pending, oldest = fetch(APPROVALS_PENDING)[0]
    failures, undelivered = fetch(OUTBOX)[0]
    return StoreGauges(
        approvals_pending=int(pending),
        approval_oldest_us=None if oldest is None else int(oldest),
        holds_open=int(fetch(HOLDS_OPEN)[0][0]),
        payments=counts(PAYMENTS),
        breakers=counts(BREAKERS),
        webhook_failures=int(failures),
        webhook_undelivered=int(undelivered),
        alerts=counts(ALERTS_BY_KIND),
    )
