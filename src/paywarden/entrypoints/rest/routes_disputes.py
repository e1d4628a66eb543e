"""`/v1/disputes`: cases on settled payments, with their evidence frozen.

A dispute is opened by the paying agent or an operator, on a settled or refunded payment;
operators review and resolve it (a `refund` resolution moves money, so it needs an
`Idempotency-Key`). Operators and admins list and read every case; an agent reads its own.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from paywarden import limits
from paywarden.entrypoints.rest import models
from paywarden.entrypoints.rest.deps import (
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
from paywarden.errors import ForbiddenError
from paywarden.keys import Principal
from paywarden.ports import DisputeRow
from paywarden.warden import Warden

router = APIRouter(prefix="/v1", tags=["disputes"])
_WRITE_ERRORS = problem_responses(401, 403, 404, 409, 413, 422, 503)
_READ_ERRORS = problem_responses(401, 403, 404, 422, 503)
DisputeStatus = Literal["open", "under_review", "refunded", "rejected", "withdrawn"]


# Bodies ---------------------------------------------------------------------------------------


class DisputeOpen(models.Strict):
    payment_id: str = Field(max_length=128, pattern=models.IDENTIFIER_PATTERN)
    reason: str = Field(min_length=1, max_length=limits.free_text_chars_max)


class DisputeReview(models.Strict):
    note: str = Field(default="", max_length=limits.free_text_chars_max)


class DisputeResolve(models.Strict):
    outcome: Literal["refund", "reject", "withdraw"]
    note: str = Field(default="", max_length=limits.free_text_chars_max)
    amount: str | None = Field(
        default=None,
        pattern=models.AMOUNT_PATTERN,
        max_length=limits.amount_text_chars_max,
        description="For `refund`: major units as text; all that is left when left out.",
    )


class DisputeOut(BaseModel):
    dispute_id: str
    payment_id: str
    status: DisputeStatus
    reason: str
    evidence: dict[str, Any] = Field(description="The proof trace and audit entries, frozen.")
    opened_by: str
    resolution: str | None
    refund_id: str | None
    created_us: int
    updated_us: int

    @classmethod
    def of(cls, row: DisputeRow) -> DisputeOut:
        data = {name: getattr(row, name) for name in cls.model_fields if name != "evidence"}
        return cls(**data, evidence=json.loads(row.evidence))


# Disputes -------------------------------------------------------------------------------------


@router.post(
    "/disputes",
    response_model=DisputeOut,
    responses=_WRITE_ERRORS,
    summary="Open a dispute on a settled payment",
)
def open_dispute(
    request: Request,
    body: DisputeOpen,
    principal: Caller,
    warden: WardenDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The paying agent or an operator; one active case per payment."""

    def action() -> DisputeOut:
        if principal.role == "admin":
            raise ForbiddenError("disputes need an operator key or the paying agent's key")
        owned_by(principal, warden.payment(body.payment_id).agent, f"payment `{body.payment_id}`")
        row = warden.open_dispute(body.payment_id, reason=body.reason, actor=principal.actor)
        return DisputeOut.of(row)

    stale = settings.idempotency_stale_seconds
    return idempotent(request, warden, principal, idempotency_key, body, action, stale)


@router.get(
    "/disputes",
    response_model=list[DisputeOut],
    responses=_READ_ERRORS,
    summary="List disputes, newest first",
)
def list_disputes(
    principal: StaffCaller,
    warden: WardenDep,
    payment_id: Annotated[str | None, Query(max_length=128)] = None,
    status: DisputeStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DisputeOut]:
    rows = warden.disputes(payment_id=payment_id, status=status, limit=limit)
    return [DisputeOut.of(row) for row in rows]


def _own_dispute(warden: Warden, principal: Principal, dispute_id: str) -> DisputeRow:
    row = warden.dispute(dispute_id)
    if principal.role == "agent":
        owned_by(principal, warden.payment(row.payment_id).agent, f"dispute `{dispute_id}`")
    return row


@router.get(
    "/disputes/{dispute_id}",
    response_model=DisputeOut,
    responses=_READ_ERRORS,
    summary="Read a dispute with its evidence",
)
def get_dispute(dispute_id: str, principal: Caller, warden: WardenDep) -> DisputeOut:
    """An agent reads the cases on its own payments; operators and admins read all."""
    return DisputeOut.of(_own_dispute(warden, principal, dispute_id))


@router.post(
    "/disputes/{dispute_id}/review",
    response_model=DisputeOut,
    responses=_WRITE_ERRORS,
    summary="Take a dispute as the key's operator: open -> under_review",
)
def review_dispute(
    request: Request,
    dispute_id: str,
    principal: OperatorCaller,
    warden: WardenDep,
    settings: SettingsDep,
    body: DisputeReview | None = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    body = body or DisputeReview()

    def action() -> DisputeOut:
        operator = str(principal.operator)
        return DisputeOut.of(warden.review_dispute(dispute_id, operator=operator, note=body.note))

    stale = settings.idempotency_stale_seconds
    return idempotent(request, warden, principal, idempotency_key, body, action, stale)


@router.post(
    "/disputes/{dispute_id}/resolve",
    response_model=DisputeOut,
    responses=_WRITE_ERRORS,
    summary="Close a dispute: refund, reject or withdraw",
)
def resolve_dispute(
    request: Request,
    dispute_id: str,
    body: DisputeResolve,
    principal: OperatorCaller,
    warden: WardenDep,
    settings: SettingsDep,
    idempotency_key: RequiredIdempotencyKey,
) -> Response:
    """`refund` refunds through the rail (all that is left, or `amount`); a refund not settled
    yet leaves the case `under_review`: resolve again after a reconcile."""

    def action() -> DisputeOut:
        row = warden.resolve_dispute(
            dispute_id,
            body.outcome,
            operator=str(principal.operator),
            note=body.note,
            amount=body.amount,
        )
        return DisputeOut.of(row)

    stale = settings.idempotency_stale_seconds
    return idempotent(request, warden, principal, idempotency_key, body, action, stale)
