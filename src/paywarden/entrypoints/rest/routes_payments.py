"""`/v1/authorizations`, `/v1/payments`, refunds and `/v1/decisions`: the agent's side."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from paywarden.entrypoints.rest import models
from paywarden.entrypoints.rest.deps import (
    AgentCaller,
    Caller,
    IdempotencyKey,
    RequiredIdempotencyKey,
    SettingsDep,
    WardenDep,
    idempotent,
    owned_by,
    settings_of,
    warden_of,
)
from paywarden.entrypoints.rest.direct_route import DirectRoute
from paywarden.entrypoints.rest.mandates import mandate_of
from paywarden.entrypoints.rest.problems import problem_responses
from paywarden.errors import ForbiddenError, InvalidInputError
from paywarden.intent import PaymentIntent
from paywarden.keys import Principal
from paywarden.warden import Warden

# The decision routes are direct routes (no per-request dependency solving); the others have
# path or query parameters and are served by FastAPI's own handler.
router = APIRouter(prefix="/v1", tags=["payments"], route_class=DirectRoute)
_WRITE_ERRORS = problem_responses(401, 403, 409, 413, 422, 503)
_READ_ERRORS = problem_responses(401, 403, 404, 422, 503)
PaymentState = Literal["authorized", "submitted", "settled", "failed", "unknown", "refunded"]


def intent_of(
    warden: Warden, body: models.PaymentRequest, principal: Principal, key: str | None
) -> PaymentIntent:
    """The intent: the body's fields, the key's agent and environment, the header's key. Fields
    that cannot become an intent are a refused request: audited, then answered with 422."""
    try:
        return _intent(body, principal, key)
    except InvalidInputError as error:
        warden.refuse(
            agent=str(principal.agent),
            fields=body.model_dump(exclude={"mandate"}),
            error=error,
            actor=principal.actor,
        )
        raise


def _intent(body: models.PaymentRequest, principal: Principal, key: str | None) -> PaymentIntent:
    return PaymentIntent(
        agent=str(principal.agent),
        environment=principal.environment,
        action=body.action,
        amount=body.amount,
        currency=body.currency,
        recipient=body.recipient,
        category=body.category,
        purpose=body.purpose,
        recipient_name=body.recipient_name,
        rail=body.rail,
        session_id=body.session_id,
        idempotency_key=key,
        metadata=body.metadata,
    )


@router.post(
    "/authorizations",
    response_model=models.DecisionOut,
    responses=_WRITE_ERRORS,
    summary="Decide a payment intent and hold its amount",
)
def create_authorization(
    request: Request,
    body: models.PaymentRequest,
    principal: AgentCaller,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Decide the intent against the policy: `allow` holds the amount (capture it once paid),
    `require_approval` holds it and opens an approval, `deny` holds nothing. A decision is a
    200 whatever its outcome; its `reason_code` says why."""
    warden, settings = warden_of(request), settings_of(request)

    def action() -> models.DecisionOut:
        intent = intent_of(warden, body, principal, idempotency_key)
        mandate = mandate_of(request, body.mandate, settings)
        decision = warden.authorize(intent, actor=principal.actor, mandate=mandate)
        return models.DecisionOut.of(decision)

    return idempotent(
        request,
        warden,
        principal,
        idempotency_key,
        body,
        action,
        settings.idempotency_stale_seconds,
    )


@router.post(
    "/payments",
    response_model=models.PaymentOutcomeOut,
    responses=_WRITE_ERRORS,
    summary="Authorize a payment intent and pay it on its rail",
)
def create_payment(
    request: Request,
    body: models.PaymentRequest,
    principal: AgentCaller,
    idempotency_key: RequiredIdempotencyKey,
) -> Response:
    """Authorize, then pay an allowed intent on its rail (`rail`, default `sandbox`). The
    `Idempotency-Key` header is required: a retry never pays twice."""
    warden, settings = warden_of(request), settings_of(request)

    def action() -> models.PaymentOutcomeOut:
        intent = intent_of(warden, body, principal, idempotency_key)
        mandate = mandate_of(request, body.mandate, settings)
        outcome = warden.pay(intent, actor=principal.actor, mandate=mandate)
        payment = models.PaymentOut.of(outcome.payment) if outcome.payment else None
        return models.PaymentOutcomeOut(
            state=outcome.state, decision=models.DecisionOut.of(outcome.decision), payment=payment
        )

    return idempotent(
        request,
        warden,
        principal,
        idempotency_key,
        body,
        action,
        settings.idempotency_stale_seconds,
    )


@router.get(
    "/payments",
    response_model=list[models.PaymentOut],
    responses=_READ_ERRORS,
    summary="List payments, newest first",
)
def list_payments(
    principal: Caller,
    warden: WardenDep,
    state: PaymentState | None = None,
    agent: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[models.PaymentOut]:
    """An agent sees only its own payments; operators and admins see all, or one `agent`'s."""
    if principal.role == "agent":
        agent = principal.agent
    rows = warden.payments(agent=agent, state=state, limit=limit)
    return [models.PaymentOut.of(row) for row in rows]


@router.get(
    "/payments/{payment_id}",
    response_model=models.PaymentOut,
    responses=_READ_ERRORS,
    summary="Read one payment",
)
def get_payment(payment_id: str, principal: Caller, warden: WardenDep) -> models.PaymentOut:
    row = warden.payment(payment_id)
    owned_by(principal, row.agent, f"payment `{payment_id}`")
    return models.PaymentOut.of(row)


@router.post(
    "/payments/{payment_id}/refund",
    response_model=models.RefundOut,
    responses={**_WRITE_ERRORS, **problem_responses(404)},
    summary="Refund a settled payment, in whole or in part",
)
def refund_payment(
    request: Request,
    payment_id: str,
    principal: Caller,
    warden: WardenDep,
    settings: SettingsDep,
    idempotency_key: RequiredIdempotencyKey,
    body: models.RefundRequest | None = None,
) -> Response:
    """An operator may refund any payment; an agent only its own. The `Idempotency-Key`
    header is required."""
    body = body or models.RefundRequest()

    def action() -> models.RefundOut:
        if principal.role == "admin":
            raise ForbiddenError("refunds need an operator key or the paying agent's key")
        owned_by(principal, warden.payment(payment_id).agent, f"payment `{payment_id}`")
        row = warden.refund(payment_id, body.amount, reason=body.reason, actor=principal.actor)
        return models.RefundOut.of(row)

    return idempotent(
        request,
        warden,
        principal,
        idempotency_key,
        body,
        action,
        settings.idempotency_stale_seconds,
    )


@router.get(
    "/decisions/{decision_id}",
    response_model=models.DecisionOut,
    responses=_READ_ERRORS,
    summary="Read a recorded decision with its proof trace",
)
def get_decision(decision_id: str, principal: Caller, warden: WardenDep) -> models.DecisionOut:
    if principal.role == "agent":
        owned_by(principal, warden.decision_agent(decision_id), f"decision `{decision_id}`")
    return models.DecisionOut.of(warden.decision(decision_id))
