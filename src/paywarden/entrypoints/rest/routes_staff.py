"""Rails and operators: a rail's breaker, reconciling open payments, the operator register.

Operators and admins read a rail's breaker and trigger a reconcile (it only asks the rails,
with the original keys, what became of payments and refunds already sent). Only admins list
and register the human operators that operator keys are bound to.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from paywarden import limits
from paywarden.entrypoints.rest import models
from paywarden.entrypoints.rest.deps import (
    AdminCaller,
    IdempotencyKey,
    SettingsDep,
    StaffCaller,
    WardenDep,
    idempotent,
)
from paywarden.entrypoints.rest.problems import problem_responses
from paywarden.errors import NotFoundError
from paywarden.ports import BreakerRow, OperatorRow
from paywarden.rails import available_rails

router = APIRouter(prefix="/v1", tags=["rails and operators"])
_WRITE_ERRORS = problem_responses(401, 403, 404, 409, 413, 422, 503)
_READ_ERRORS = problem_responses(401, 403, 404, 422, 503)
RailName = Annotated[str, Path(max_length=128, pattern=models.IDENTIFIER_PATTERN)]


class BreakerOut(BaseModel):
    rail: str
    state: Literal["closed", "open", "half_open"]
    consecutive_failures: int
    opened_us: int | None = Field(
        description="When it opened; while `half_open`, when the current probe was let through."
    )

    @classmethod
    def of(cls, row: BreakerRow) -> BreakerOut:
        return cls(
            rail=row.rail,
            state=row.state,
            consecutive_failures=row.consecutive_failures,
            opened_us=row.opened_us,
        )


class ReconcileOut(BaseModel):
    changed: list[models.PaymentOut] = Field(description="The payments whose state changed.")


class OperatorCreate(models.Strict):
    operator_id: str = Field(pattern=models.IDENTIFIER_PATTERN)
    name: str = Field(min_length=1, max_length=limits.free_text_chars_max)


class OperatorOut(BaseModel):
    operator_id: str
    name: str
    created_us: int
    disabled_us: int | None

    @classmethod
    def of(cls, row: OperatorRow) -> OperatorOut:
        return cls(
            operator_id=row.operator_id,
            name=row.name,
            created_us=row.created_us,
            disabled_us=row.disabled_us,
        )


@router.get(
    "/rails/{rail}/breaker",
    response_model=BreakerOut,
    responses=_READ_ERRORS,
    summary="A rail's circuit breaker",
)
def get_breaker(rail: RailName, principal: StaffCaller, warden: WardenDep) -> BreakerOut:
    """A rail that is not installed is a 404; an installed rail that never failed reads
    `closed`. Reading never loads or calls the rail."""
    if rail not in available_rails():
        raise NotFoundError(f"no rail `{rail}` is installed")
    return BreakerOut.of(warden.breaker(rail))


@router.post(
    "/reconcile",
    response_model=ReconcileOut,
    responses=_WRITE_ERRORS,
    summary="Settle submitted and unknown payments through their rails",
)
def reconcile(
    request: Request,
    principal: StaffCaller,
    warden: WardenDep,
    settings: SettingsDep,
    batch_max: Annotated[int, Query(ge=1, le=limits.reconcile_batch_max)] = (
        limits.reconcile_batch_max
    ),
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Asks each rail about payments still `submitted` or `unknown`, with their original keys,
    and re-sends open refunds the same way: nothing is paid twice."""

    def action() -> ReconcileOut:
        rows = warden.reconcile(batch_max)
        return ReconcileOut(changed=[models.PaymentOut.of(row) for row in rows])

    stale = settings.idempotency_stale_seconds
    body = {"batch_max": batch_max}
    return idempotent(request, warden, principal, idempotency_key, body, action, stale)


@router.get(
    "/operators",
    response_model=list[OperatorOut],
    responses=_READ_ERRORS,
    summary="List the registered operators",
)
def list_operators(principal: AdminCaller, warden: WardenDep) -> list[OperatorOut]:
    return [OperatorOut.of(row) for row in warden.operators()]


@router.post(
    "/operators",
    response_model=OperatorOut,
    responses=_WRITE_ERRORS,
    summary="Register a human operator",
)
def add_operator(
    request: Request,
    body: OperatorCreate,
    principal: AdminCaller,
    warden: WardenDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The operator can then get an operator key (`POST /v1/keys`) and decide approvals."""

    def action() -> OperatorOut:
        row = warden.add_operator(body.operator_id, name=body.name, actor=principal.actor)
        return OperatorOut.of(row)

    stale = settings.idempotency_stale_seconds
    return idempotent(request, warden, principal, idempotency_key, body, action, stale)
