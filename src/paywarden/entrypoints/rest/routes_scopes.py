"""`/v1/scopes`: transaction scopes, whose paid steps are undone when the workflow fails.

A scope belongs to its agent: the agent opens it, pays its steps through it and either completes
it (nothing is undone) or fails it (its paid steps are refunded, newest first). Operators and
admins list scopes; an operator compensates one a crashed worker left open. A scope that ends
`compensation_failed` is for a human to follow up. Steps done outside paywarden cannot carry
their undo action over HTTP, so only payments are steps here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from paywarden import limits
from paywarden.entrypoints.rest import models
from paywarden.entrypoints.rest.deps import (
    AgentCaller,
    Caller,
    IdempotencyKey,
    OperatorCaller,
    RequiredIdempotencyKey,
    SettingsDep,
    StaffCaller,
    WardenDep,
    idempotent,
    owned_by,
)
from paywarden.entrypoints.rest.problems import problem_responses
from paywarden.entrypoints.rest.routes_payments import intent_of
from paywarden.errors import StateConflictError
from paywarden.keys import Principal
from paywarden.ports import ScopeRow, ScopeStepRow
from paywarden.warden import Warden

router = APIRouter(prefix="/v1", tags=["scopes"])
_WRITE_ERRORS = problem_responses(401, 403, 404, 409, 413, 422, 503)
_READ_ERRORS = problem_responses(401, 403, 404, 422, 503)
ScopeStatus = Literal["open", "committed", "compensated", "compensation_failed"]


# Bodies ---------------------------------------------------------------------------------------


class ScopePayment(models.PaymentRequest):
    label: str | None = Field(default=None, max_length=200, description="The step's label.")


class ScopeFail(models.Strict):
    reason: str = Field(min_length=1, max_length=limits.free_text_chars_max)


class ScopeStepOut(BaseModel):
    step: int
    payment_id: str | None
    label: str
    state: Literal["registered", "compensated", "failed"]
    error: str | None
    updated_us: int


class ScopeOut(BaseModel):
    scope_id: str
    agent: str
    status: ScopeStatus
    created_us: int
    updated_us: int
    steps: list[ScopeStepOut]

    @classmethod
    def of(cls, row: ScopeRow, steps: list[ScopeStepRow]) -> ScopeOut:
        return cls(
            scope_id=row.scope_id,
            agent=row.agent,
            status=row.status,
            created_us=row.created_us,
            updated_us=row.updated_us,
            steps=[
                ScopeStepOut(
                    step=s.step,
                    payment_id=s.payment_id,
                    label=s.label,
                    state=s.state,
                    error=s.error,
                    updated_us=s.updated_us,
                )
                for s in steps
            ],
        )


class ScopePaymentOut(BaseModel):
    scope: ScopeOut
    outcome: models.PaymentOutcomeOut


# Scopes ---------------------------------------------------------------------------------------


def _scope_out(warden: Warden, scope_id: str) -> ScopeOut:
    return ScopeOut.of(warden.scope(scope_id), warden.scope_steps(scope_id))


def _own_scope(warden: Warden, principal: Principal, scope_id: str) -> None:
    owned_by(principal, warden.scope(scope_id).agent, f"scope `{scope_id}`")


@router.post(
    "/scopes",
    response_model=ScopeOut,
    responses=_WRITE_ERRORS,
    summary="Open a transaction scope for the key's agent",
)
def open_scope(
    request: Request,
    principal: AgentCaller,
    warden: WardenDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    def action() -> ScopeOut:
        return _scope_out(warden, warden.transaction(str(principal.agent)).scope_id)

    stale = settings.idempotency_stale_seconds
    return idempotent(request, warden, principal, idempotency_key, {}, action, stale)


@router.get(
    "/scopes",
    response_model=list[ScopeOut],
    responses=_READ_ERRORS,
    summary="List scopes, newest first (`compensation_failed` needs a human)",
)
def list_scopes(
    principal: StaffCaller,
    warden: WardenDep,
    status: ScopeStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ScopeOut]:
    rows = warden.scopes(status, limit=limit)
    return [ScopeOut.of(row, warden.scope_steps(row.scope_id)) for row in rows]


@router.get(
    "/scopes/{scope_id}",
    response_model=ScopeOut,
    responses=_READ_ERRORS,
    summary="Read a scope with its steps",
)
def get_scope(scope_id: str, principal: Caller, warden: WardenDep) -> ScopeOut:
    _own_scope(warden, principal, scope_id)
    return _scope_out(warden, scope_id)


@router.post(
    "/scopes/{scope_id}/payments",
    response_model=ScopePaymentOut,
    responses=_WRITE_ERRORS,
    summary="Pay as a step of an open scope",
)
def pay_in_scope(
    request: Request,
    scope_id: str,
    body: ScopePayment,
    principal: AgentCaller,
    warden: WardenDep,
    settings: SettingsDep,
    idempotency_key: RequiredIdempotencyKey,
) -> Response:
    """Like `POST /v1/payments`; a payment that may have moved money becomes a step."""

    def action() -> ScopePaymentOut:
        _own_scope(warden, principal, scope_id)
        intent = intent_of(warden, body, principal, idempotency_key)
        outcome = warden.resume_scope(scope_id).pay(intent, label=body.label)
        payment = models.PaymentOut.of(outcome.payment) if outcome.payment else None
        paid = models.PaymentOutcomeOut(
            state=outcome.state, decision=models.DecisionOut.of(outcome.decision), payment=payment
        )
        return ScopePaymentOut(scope=_scope_out(warden, scope_id), outcome=paid)

    stale = settings.idempotency_stale_seconds
    return idempotent(request, warden, principal, idempotency_key, body, action, stale)


@router.post(
    "/scopes/{scope_id}/complete",
    response_model=ScopeOut,
    responses=_WRITE_ERRORS,
    summary="Complete a scope: nothing will be undone",
)
def complete_scope(
    request: Request,
    scope_id: str,
    principal: AgentCaller,
    warden: WardenDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    def action() -> ScopeOut:
        _own_scope(warden, principal, scope_id)
        warden.resume_scope(scope_id).commit()
        return _scope_out(warden, scope_id)

    stale = settings.idempotency_stale_seconds
    return idempotent(request, warden, principal, idempotency_key, {}, action, stale)


def _require_open(warden: Warden, scope_id: str) -> None:
    """`TransactionScope.compensate` refunds registered steps before it checks that the scope
    is still open: a completed scope must be refused here, before any refund."""
    status = warden.scope(scope_id).status
    if status != "open":
        raise StateConflictError(f"scope `{scope_id}` is {status}")


def _compensate(
    request: Request,
    scope_id: str,
    body: ScopeFail,
    principal: Principal,
    warden: Warden,
    key: str,
    stale: int,
) -> Response:
    def action() -> ScopeOut:
        _own_scope(warden, principal, scope_id)
        _require_open(warden, scope_id)
        warden.resume_scope(scope_id).compensate(body.reason, actor=principal.actor)
        return _scope_out(warden, scope_id)

    return idempotent(request, warden, principal, key, body, action, stale)


@router.post(
    "/scopes/{scope_id}/fail",
    response_model=ScopeOut,
    responses=_WRITE_ERRORS,
    summary="Fail a scope: its paid steps are refunded, newest first",
)
def fail_scope(
    request: Request,
    scope_id: str,
    body: ScopeFail,
    principal: AgentCaller,
    warden: WardenDep,
    settings: SettingsDep,
    idempotency_key: RequiredIdempotencyKey,
) -> Response:
    stale = settings.idempotency_stale_seconds
    return _compensate(request, scope_id, body, principal, warden, idempotency_key, stale)


@router.post(
    "/scopes/{scope_id}/compensate",
    response_model=ScopeOut,
    responses=_WRITE_ERRORS,
    summary="Compensate a scope left open (operator)",
)
def compensate_scope(
    request: Request,
    scope_id: str,
    body: ScopeFail,
    principal: OperatorCaller,
    warden: WardenDep,
    settings: SettingsDep,
    idempotency_key: RequiredIdempotencyKey,
) -> Response:
    """For a scope whose worker died: its paid steps are refunded; steps done outside
    paywarden are recorded as failed, for a human."""
    stale = settings.idempotency_stale_seconds
    return _compensate(request, scope_id, body, principal, warden, idempotency_key, stale)
