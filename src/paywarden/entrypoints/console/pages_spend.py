"""Spend: each budget's used, held and limit in its current window with its gate state, then
the analytics of the last days (`Warden.analytics`): allowed spend over time as a bar chart
(server-rendered SVG, one per currency, no script), spend per agent, the top recipients, the
denials by reason code and how long approvals took."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Query, Request
from starlette.responses import Response

from paywarden.actions.analytics import SpendBy, SpendLine
from paywarden.entrypoints.console import web
from paywarden.warden import Warden

router = web.console_router()
RANGES = (1, 7, 30)  # days the page offers
CHART_WIDTH, CHART_HEIGHT = 720, 160


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    amount: str


@dataclass(frozen=True, slots=True)
class Chart:
    """One currency's allowed spend per bucket, laid out for an inline SVG."""

    currency: str
    bars: tuple[Bar, ...]
    peak: str
    first: str
    last: str


def charts(
    lines: tuple[SpendLine, ...], since: datetime, until: datetime, step: int
) -> list[Chart]:
    """Bar charts of `spend` lines bucketed by `step` seconds (an hour or a day) from `since`
    to `until`, one per currency; a bucket with no spend is an empty slot."""
    first = int(since.timestamp()) // step * step
    slots = max((int(until.timestamp()) - first + step - 1) // step, 1)
    width = CHART_WIDTH / slots
    result = []
    for currency in sorted({line.currency for line in lines}):
        mine = [line for line in lines if line.currency == currency]
        peak = max(mine, key=lambda line: line.allowed_minor)
        bars = []
        for line in mine:
            start = datetime.fromisoformat(line.key or "").timestamp()
            index = min(max(int(start - first) // step, 0), slots - 1)
            height = CHART_HEIGHT * line.allowed_minor / (peak.allowed_minor or 1)
            bars.append(
                Bar(
                    index * width + 1,
                    CHART_HEIGHT - height,
                    max(width - 2, 1),
                    height,
                    line.key or "",
                    line.allowed_amount,
                )
            )
        label = datetime.fromtimestamp(first, UTC).strftime("%Y-%m-%d %H:%M")
        result.append(
            Chart(
                currency, tuple(bars), peak.allowed_amount, label, until.strftime("%Y-%m-%d %H:%M")
            )
        )
    return result


def _reports(warden: Warden, days: int) -> dict[str, Any]:
    until = warden.runtime.now()
    since = until - timedelta(days=days)
    bucket: SpendBy = "hour" if days <= 2 else "day"
    step = 3600 if bucket == "hour" else 86_400
    over_time = warden.analytics("spend", since=since, until=until, by=bucket)
    return {
        "budgets": warden.budgets(),
        "charts": charts(over_time.spend, since, until, step),
        "bucket": bucket,
        "by_agent": warden.analytics("spend", since=since, until=until, by="agent").spend,
        "recipients": warden.analytics("top-recipients", since=since, until=until).spend,
        "denials": warden.analytics("denials", since=since, until=until).denials,
        "turnaround": warden.analytics("turnaround", since=since, until=until).turnaround,
        "since": since,
        "until": until,
    }


@router.get("/spend")
async def spend(request: Request, days: Annotated[int, Query(ge=1, le=90)] = 7) -> Response:
    user = await web.user_of(request, ("GET", "/v1/analytics/{report}"))
    context = await web.blocking(_reports, web.warden(request), days)
    context.update(days=days, ranges=RANGES, width=CHART_WIDTH, height=CHART_HEIGHT)
    return web.render(request, "spend.html", user, context)
