"""Analytics: what agents spent and were refused, computed in SQL on the ledger (issue 17).

Four reports over a half-open time range `[since, until)` of decision times, optionally one
agent's: `spend` grouped by agent, currency, recipient (the payee's canonical text), category,
action, or an hour or day bucket (UTC); `top-recipients` (the recipients with the most allowed
spend, per currency); `denials` by reason code; `turnaround` of approval requests (how long
operators took to decide). Money is exact and per currency: never summed across currencies.
The store reads `decision_facts` (one row per decision, written with it), so decisions
recorded before schema version 9 are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, get_args

from paywarden.clock import to_us
from paywarden.errors import InvalidInputError
from paywarden.money import DEFAULT_CURRENCIES, CurrencyTable, format_minor
from paywarden.ports import SpendRow, TurnaroundRow
from paywarden.runtime import Runtime

Report = Literal["spend", "top-recipients", "denials", "turnaround"]
SpendBy = Literal["agent", "currency", "recipient", "category", "action", "hour", "day"]
REPORTS: Final[tuple[str, ...]] = get_args(Report)
SPEND_BY: Final[tuple[str, ...]] = get_args(SpendBy)
TOP_MAX: Final = 1000
DEFAULT_RANGE: Final = timedelta(days=7)
_HOUR_US: Final = 3_600_000_000
_BUCKETS_US: Final = {"hour": _HOUR_US, "day": 24 * _HOUR_US}


@dataclass(frozen=True, slots=True)
class AnalyticsQuery:
    """Which report, over which range (`until` defaults to now, `since` to 7 days before it)."""

    report: Report
    since: datetime | None = None
    until: datetime | None = None
    agent: str | None = None
    by: SpendBy = "agent"  # `spend` only
    top: int = 10  # `top-recipients` only: recipients per currency


@dataclass(frozen=True, slots=True)
class SpendLine:
    """One group in one currency. `key` is the agent, currency, recipient, category (None
    when the intents gave none), action, or the bucket's start (ISO 8601, UTC). Amounts are
    decimal text in the currency's units, exact; `*_minor` the same in minor units."""

    key: str | None
    currency: str
    decisions: int
    allowed: int
    denied: int
    pending: int
    allowed_minor: int
    captured_minor: int
    allowed_amount: str
    captured_amount: str


@dataclass(frozen=True, slots=True)
class DenialLine:
    reason_code: str
    denials: int


@dataclass(frozen=True, slots=True)
class Turnaround:
    """Approval requests created in the range; the waits of those operators decided
    (approved, consumed or rejected), to the deciding vote, in seconds (nearest rank)."""

    requested: int
    approved: int
    rejected: int
    expired: int
    open: int
    median_seconds: float | None
    p90_seconds: float | None


@dataclass(frozen=True, slots=True)
class Analytics:
    """A report's answer: its lines (`spend`, `denials`) or `turnaround`."""

    report: Report
    since: datetime
    until: datetime
    agent: str | None
    by: SpendBy | None
    spend: tuple[SpendLine, ...] = ()
    denials: tuple[DenialLine, ...] = ()
    turnaround: Turnaround | None = None

    def records(self) -> list[dict[str, object]]:
        """The report as rows of one shape (table and CSV output, charts)."""
        if self.turnaround is not None:
            return [_fields(self.turnaround)]
        lines: tuple[SpendLine | DenialLine, ...] = (*self.spend, *self.denials)
        return [_fields(line) for line in lines]

    def to_dict(self) -> dict[str, object]:
        return {
            "report": self.report,
            "since": _iso(self.since),
            "until": _iso(self.until),
            "agent": self.agent,
            "by": self.by,
            "rows": self.records(),
        }


def analytics(rt: Runtime, query: AnalyticsQuery) -> Analytics:
    """The report `query` asks for, read in one snapshot of the store."""
    since, until = _range(rt, query)
    since_us, until_us, agent = to_us(since), to_us(until), query.agent
    if query.report in ("denials", "turnaround"):
        with rt.store.read() as tx:
            if query.report == "denials":
                denials = tx.facts.list_denials(since_us, until_us, agent)
                lines = tuple(DenialLine(row.reason_code, row.denials) for row in denials)
                return Analytics(query.report, since, until, agent, None, denials=lines)
            turnaround = _turnaround(tx.facts.get_turnaround(since_us, until_us, agent))
            return Analytics(query.report, since, until, agent, None, turnaround=turnaround)
    top = query.top if query.report == "top-recipients" else None
    by: SpendBy = query.by if top is None else "recipient"
    group, bucket_us = ("bucket", _BUCKETS_US[by]) if by in _BUCKETS_US else (by, _HOUR_US)
    with rt.store.read() as tx:
        rows = tx.facts.list_spend(group, since_us, until_us, agent, bucket_us, top)  # type: ignore[arg-type]
    table = rt.policy.currencies if rt.policy is not None else DEFAULT_CURRENCIES
    spend = tuple(_spend_line(row, table, group == "bucket") for row in rows)
    return Analytics(query.report, since, until, agent, by, spend=spend)


def _range(rt: Runtime, query: AnalyticsQuery) -> tuple[datetime, datetime]:
    if query.report not in REPORTS:
        raise InvalidInputError(f"unknown report `{query.report}` (reports: {', '.join(REPORTS)})")
    if query.by not in SPEND_BY:
        raise InvalidInputError(f"cannot group spend by `{query.by}` ({', '.join(SPEND_BY)})")
    if (
        isinstance(query.top, bool)
        or not isinstance(query.top, int)
        or not 1 <= query.top <= TOP_MAX
    ):
        raise InvalidInputError(f"`top` must be a whole number from 1 to {TOP_MAX}")
    until = query.until or rt.now()
    for name, instant in (("since", query.since), ("until", until)):
        if instant is not None and instant.tzinfo is None:
            raise InvalidInputError(f"`{name}` must be a time with a zone (such as `Z`)")
    try:  # a time near year 1 or 9999 may have no UTC date (or no date 7 days before)
        since = (query.since or until - DEFAULT_RANGE).astimezone(UTC)
        until = until.astimezone(UTC)
    except OverflowError:
        raise InvalidInputError("`since` and `until` must be times from year 1 to 9999") from None
    if since >= until:
        raise InvalidInputError("`since` must be before `until`")
    return since, until


def _spend_line(row: SpendRow, table: CurrencyTable, bucketed: bool) -> SpendLine:
    key = row.key
    if bucketed and isinstance(key, int):
        key = _iso(datetime.fromtimestamp(key / 1_000_000, UTC))
    return SpendLine(
        key=None if key is None else str(key),
        currency=row.currency,
        decisions=row.decisions,
        allowed=row.allowed,
        denied=row.denied,
        pending=row.pending,
        allowed_minor=row.allowed_minor,
        captured_minor=row.captured_minor,
        allowed_amount=_amount(row.allowed_minor, row.currency, table),
        captured_amount=_amount(row.captured_minor, row.currency, table),
    )


def _turnaround(row: TurnaroundRow) -> Turnaround:
    return Turnaround(
        requested=row.requested,
        approved=row.approved,
        rejected=row.rejected,
        expired=row.expired,
        open=row.open,
        median_seconds=None if row.median_us is None else row.median_us / 1_000_000,
        p90_seconds=None if row.p90_us is None else row.p90_us / 1_000_000,
    )


def _amount(amount_minor: int, currency: str, table: CurrencyTable) -> str:
    """Decimal text in the currency's units; minor units when the currency is unknown here."""
    try:
        return format_minor(amount_minor, table.exponent(currency))
    except InvalidInputError:
        return str(amount_minor)


def _fields(line: SpendLine | DenialLine | Turnaround) -> dict[str, object]:
    return {name: getattr(line, name) for name in line.__dataclass_fields__}


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")
