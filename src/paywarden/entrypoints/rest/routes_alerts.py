"""`GET /v1/alerts`: recent alerts raised by the policy's `alerts:` rules (operators, admins).

The gateway also runs the alert sweep (`AlertSweeper`): every few seconds, in a thread of its
own, `warden.sweep_alerts()` raises the swept kinds (breaker opened, halt, approval waiting).
Several gateways sweeping one store raise each alert once (docs/observability.md, "Alerts").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from paywarden.actions.alerts import view
from paywarden.entrypoints.rest.deps import StaffCaller, WardenDep
from paywarden.entrypoints.rest.problems import problem_responses
from paywarden.policy.alert_settings import KINDS
from paywarden.ports import AlertRow
from paywarden.warden import Warden

router = APIRouter(prefix="/v1", tags=["oversight"])
log = logging.getLogger("paywarden.alerts")
# How often the gateway sweeps for alerts that no transaction raises by itself.
SWEEP_SECONDS = 5.0
_KIND_PATTERN = "^(" + "|".join(KINDS) + ")$"


class AlertOut(BaseModel):
    alert_id: str
    rule_id: str = Field(description="The alert rule of the policy that raised it.")
    kind: str = Field(description="budget_threshold, large_transaction, rate_spike, ...")
    ref_id: str = Field(description="What it is about: a decision, budget, rail, scope ...")
    text: str = Field(description="One line for humans (as sent to Slack).")
    details: dict[str, Any]
    created_us: int

    @classmethod
    def of(cls, row: AlertRow) -> AlertOut:
        return cls.model_validate(view(row))


@router.get(
    "/alerts",
    response_model=list[AlertOut],
    responses=problem_responses(401, 403, 422, 503),
    summary="Recent alerts, newest first (operator or admin key)",
)
def list_alerts(
    principal: StaffCaller,
    warden: WardenDep,
    kind: Annotated[str | None, Query(pattern=_KIND_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlertOut]:
    """Alerts the policy's `alerts:` rules raised, newest first, optionally of one `kind`."""
    return [AlertOut.of(row) for row in warden.alerts(kind, limit=limit)]


class AlertSweeper:
    """A daemon thread that runs the alert sweep every `SWEEP_SECONDS` until stopped."""

    def __init__(self, warden_of: Callable[[], Warden | None], seconds: float = SWEEP_SECONDS):
        self._warden_of, self._seconds = warden_of, seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="paywarden-alerts", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._seconds):
            warden = self._warden_of()
            try:
                if warden is not None:
                    warden.sweep_alerts()
            except Exception:  # the next sweep tries again; decisions never wait on this
                log.exception("alert sweep failed")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
