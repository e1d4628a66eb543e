"""Analytics for staff: spend, top recipients, denials and approval turnaround (issue 17).

Read-only, operators and admins (`StaffCaller`); each report is computed in SQL on the ledger
(`paywarden.actions.analytics`), money exact and per currency. `since` and `until` are ISO 8601
times with a zone; the range is `[since, until)`, by default the last 7 days.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from paywarden.actions.analytics import TOP_MAX, Analytics, Report, SpendBy
from paywarden.entrypoints.rest import models
from paywarden.entrypoints.rest.deps import StaffCaller, WardenDep
from paywarden.entrypoints.rest.problems import problem_responses
from paywarden.errors import InvalidInputError

router = APIRouter(prefix="/v1", tags=["analytics"])
_READ_ERRORS = problem_responses(401, 403, 422, 503)

Cell = str | int | float | None
Instant = Annotated[
    str | None,
    Query(
        max_length=64,
        json_schema_extra={"format": "date-time"},
        description="ISO 8601 with a zone, such as `2026-11-30T00:00:00Z`.",
    ),
]


class AnalyticsOut(BaseModel):
    report: Report
    since: str = Field(description="Start of the range (inclusive), ISO 8601 UTC.")
    until: str = Field(description="End of the range (exclusive), ISO 8601 UTC.")
    agent: str | None = Field(description="The one agent counted, or null for all.")
    by: SpendBy | None = Field(description="What `spend` rows are grouped by.")
    rows: list[dict[str, Cell]] = Field(
        description="The report's rows (docs/observability.md, Analytics, lists their fields)."
    )

    @classmethod
    def of(cls, answer: Analytics) -> AnalyticsOut:
        return cls.model_validate(answer.to_dict())


def _instant(text: str | None) -> datetime | None:
    """An ISO 8601 time (a number of seconds is refused: `0.5` is no date)."""
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(f"`{text}` is not an ISO 8601 time") from None


@router.get(
    "/analytics/{report}",
    response_model=AnalyticsOut,
    responses=_READ_ERRORS,
    summary="Spend, top recipients, denials or approval turnaround over a time range",
)
def get_analytics(
    report: Annotated[Report, Path()],
    principal: StaffCaller,
    warden: WardenDep,
    since: Instant = None,
    until: Instant = None,
    agent: Annotated[str | None, Query(max_length=128, pattern=models.IDENTIFIER_PATTERN)] = None,
    by: SpendBy = "agent",
    top: Annotated[int, Query(ge=1, le=TOP_MAX)] = 10,
) -> AnalyticsOut:
    """`by` groups `spend` (agent, currency, recipient, category, action, hour or day);
    `top` is how many recipients per currency `top-recipients` returns."""
    answer = warden.analytics(
        report, since=_instant(since), until=_instant(until), agent=agent, by=by, top=top
    )
    return AnalyticsOut.of(answer)
