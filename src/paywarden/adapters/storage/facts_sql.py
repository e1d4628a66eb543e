"""The SQL of decision facts (`decision_facts`, issue 17), written once for both stores.

Statements use named parameters in SQLite's style (`:since_us`); `for_postgres` rewrites them
in psycopg's (`%(since_us)s`). Only portable SQL: integer arithmetic for time buckets
(microseconds since the epoch, UTC), CASE sums, window functions for ranks and percentiles, and
a CAST on every parameter that may be NULL, so PostgreSQL knows its type. Money is summed per
currency only, and every sum is of integers (minor units).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

from paywarden.ports import (
    AgentActivity,
    DenialRow,
    NewDecision,
    SpendGroup,
    SpendRow,
    TurnaroundRow,
)

# The groups of a spend query and the column (or expression) each groups by.
SPEND_KEYS: Final[Mapping[str, str]] = {
    "agent": "f.agent",
    "currency": "f.currency",
    "recipient": "f.recipient",
    "category": "f.category",
    "action": "f.action",
    "bucket": "(f.created_us / CAST(:bucket_us AS BIGINT)) * CAST(:bucket_us AS BIGINT)",
}

_RANGE = (
    "f.created_us >= :since_us AND f.created_us < :until_us"
    " AND (CAST(:agent AS TEXT) IS NULL OR f.agent = :agent)"
)

# Captured spend: what the holds of allowed decisions captured (a pending decision's hold is
# the one its approval's allowed decision cites, so it is counted there, once).
_SPEND_COLUMNS = (
    "f.currency AS currency, COUNT(*) AS decisions,"
    " SUM(CASE WHEN f.outcome = 'allow' THEN 1 ELSE 0 END) AS allowed,"
    " SUM(CASE WHEN f.outcome = 'deny' THEN 1 ELSE 0 END) AS denied,"
    " SUM(CASE WHEN f.outcome = 'require_approval' THEN 1 ELSE 0 END) AS pending,"
    " SUM(CASE WHEN f.outcome = 'allow' THEN f.amount_minor ELSE 0 END) AS allowed_minor,"
    " SUM(COALESCE(h.captured_minor, 0)) AS captured_minor"
)
_SPEND_FROM = (
    " FROM decision_facts f LEFT JOIN holds h ON f.outcome = 'allow'"
    " AND h.hold_id = f.hold_id AND h.state = 'captured'"
)


def spend_sql(group: str, top: bool) -> str:
    """Spend grouped by `group` and currency; with `top`, only the `:top` groups of each
    currency with the most allowed spend (ties by key, no key last)."""
    grouped = (
        f"SELECT {SPEND_KEYS[group]} AS group_key, {_SPEND_COLUMNS}{_SPEND_FROM}"
        f" WHERE {_RANGE} GROUP BY 1, 2"
    )
    if not top:
        return grouped
    return (
        "SELECT * FROM (SELECT g.*, ROW_NUMBER() OVER (PARTITION BY currency ORDER BY"
        " allowed_minor DESC, group_key IS NULL, group_key) AS position"
        f" FROM ({grouped}) g) ranked WHERE position <= :top"
    )


DENIALS_SQL: Final = (
    "SELECT f.reason_code AS reason_code, COUNT(*) AS denials FROM decision_facts f"
    f" WHERE {_RANGE} AND f.outcome = 'deny' GROUP BY 1"
)

_APPROVAL_RANGE = (
    "a.created_us >= :since_us AND a.created_us < :until_us"
    " AND (CAST(:agent AS TEXT) IS NULL OR a.agent = :agent)"
)
APPROVAL_COUNTS_SQL: Final = (
    f"SELECT a.status, COUNT(*) FROM approvals a WHERE {_APPROVAL_RANGE} GROUP BY 1"
)
# How long each decided request waited: to its last vote (an approved request's `decided_us`
# moves when it is consumed), else to `decided_us`. Nearest-rank percentiles: the p-quantile of
# n values is the value of rank ceil(p * n).
TURNAROUND_SQL: Final = (
    "WITH waits AS (SELECT COALESCE(MAX(v.created_us), a.decided_us) - a.created_us AS waited"
    " FROM approvals a LEFT JOIN approval_votes v ON v.approval_id = a.approval_id"
    f" WHERE {_APPROVAL_RANGE} AND a.status IN ('approved', 'consumed', 'rejected')"
    " GROUP BY a.approval_id, a.created_us, a.decided_us),"
    " ranked AS (SELECT waited, ROW_NUMBER() OVER (ORDER BY waited) AS position,"
    " COUNT(*) OVER () AS total FROM waits)"
    " SELECT MIN(CASE WHEN position * 2 >= total THEN waited END),"
    " MIN(CASE WHEN position * 10 >= total * 9 THEN waited END) FROM ranked"
)

# Anomaly facts: one agent's history, read inside the decision's transaction.
AMOUNTS_SQL: Final = (
    "SELECT amount_minor FROM decision_facts WHERE agent = :agent AND currency = :currency"
    " AND outcome = 'allow' ORDER BY created_us DESC, decision_id DESC LIMIT :limit"
)
PAID_SQL: Final = (
    "SELECT 1 FROM decision_facts WHERE agent = :agent AND recipient = :recipient"
    " AND outcome = 'allow' LIMIT 1"
)
ANOMALIES_SQL: Final = (
    "SELECT COUNT(*) FROM decision_facts WHERE agent = :agent AND created_us >= :since_us"
    " AND anomalous = 1"
)
ACTIVITY_SQL: Final = (
    "SELECT COUNT(*), SUM(CASE WHEN created_us >= :recent_us THEN 1 ELSE 0 END)"
    " FROM decision_facts WHERE agent = :agent AND created_us >= :baseline_us"
)

_NAMED = re.compile(r"(?<![:\w]):([a-z_]+)")


def for_postgres(sql: str) -> str:
    """`sql` with psycopg's named parameters (`:name` becomes `%(name)s`)."""
    return _NAMED.sub(r"%(\1)s", sql)


def fact_values(row: NewDecision) -> tuple[object, ...]:
    """The fact row of a decision, in the column order of the INSERTs."""
    return (
        row.decision_id,
        row.created_us,
        row.agent,
        row.action,
        row.category,
        row.currency,
        row.amount_minor,
        row.recipient,
        row.outcome,
        row.reason_code,
        row.hold_id,
        int(row.anomalous),
    )


class FactQueries:
    """The `FactRepository` methods, on any store that runs the statements of this module
    (`_query`: a cursor over the result rows)."""

    __slots__ = ()

    def _query(self, sql: str, params: Mapping[str, object]) -> Any:
        raise NotImplementedError

    def list_spend(
        self,
        group: SpendGroup,
        since_us: int,
        until_us: int,
        agent: str | None,
        bucket_us: int,
        top: int | None,
    ) -> list[SpendRow]:
        params = {**_range(since_us, until_us, agent), "bucket_us": bucket_us, "top": top}
        rows = self._query(spend_sql(group, top is not None), params).fetchall()
        spend = [_spend_row(row) for row in rows]
        return sorted(spend, key=lambda r: (r.currency, -r.allowed_minor, r.key is None, r.key))

    def list_denials(self, since_us: int, until_us: int, agent: str | None) -> list[DenialRow]:
        rows = self._query(DENIALS_SQL, _range(since_us, until_us, agent)).fetchall()
        denials = [DenialRow(str(code), _int(count)) for code, count in rows]
        return sorted(denials, key=lambda row: (-row.denials, row.reason_code))

    def get_turnaround(self, since_us: int, until_us: int, agent: str | None) -> TurnaroundRow:
        params = _range(since_us, until_us, agent)
        counts = {str(k): _int(v) for k, v in self._query(APPROVAL_COUNTS_SQL, params).fetchall()}
        return _turnaround_row(counts, self._query(TURNAROUND_SQL, params).fetchone())

    def list_amounts(self, agent: str, currency: str, limit: int) -> list[int]:
        params = {"agent": agent, "currency": currency, "limit": limit}
        return [row[0] for row in self._query(AMOUNTS_SQL, params).fetchall()]  # BIGINT: ints

    def get_recipient_paid(self, agent: str, recipient: str) -> bool:
        params = {"agent": agent, "recipient": recipient}
        return self._query(PAID_SQL, params).fetchone() is not None

    def get_anomaly_count(self, agent: str, since_us: int) -> int:
        params = {"agent": agent, "since_us": since_us}
        return _int(self._query(ANOMALIES_SQL, params).fetchone()[0])

    def get_activity(self, agent: str, recent_us: int, baseline_us: int) -> AgentActivity:
        params = {"agent": agent, "recent_us": recent_us, "baseline_us": baseline_us}
        baseline, recent = self._query(ACTIVITY_SQL, params).fetchone()
        return AgentActivity(recent=_int(recent), baseline=_int(baseline))


def _range(since_us: int, until_us: int, agent: str | None) -> dict[str, object]:
    return {"since_us": since_us, "until_us": until_us, "agent": agent}


def _spend_row(values: Sequence[object]) -> SpendRow:
    """A result row of `spend_sql` (PostgreSQL sums are NUMERIC: made exact ints)."""
    key = values[0]
    counts = [_int(value) for value in values[2:8]]
    return SpendRow(
        key if key is None or isinstance(key, str) else _int(key), str(values[1]), *counts
    )


def _turnaround_row(
    counts: Mapping[str, int], percentiles: Iterable[object] | None
) -> TurnaroundRow:
    median, p90 = tuple(percentiles) if percentiles is not None else (None, None)
    return TurnaroundRow(
        requested=sum(counts.values()),
        approved=counts.get("approved", 0) + counts.get("consumed", 0),
        rejected=counts.get("rejected", 0),
        expired=counts.get("expired", 0),
        open=counts.get("pending", 0),
        median_us=None if median is None else _int(median),
        p90_us=None if p90 is None else _int(p90),
    )


def _int(value: object) -> int:
    """A count or sum as an exact int (NULL, from an empty sum, is 0)."""
    if value is None:
        return 0
    if isinstance(value, int | Decimal):
        return int(value)
    raise TypeError(f"expected an integer from the store, got {type(value).__name__}")
