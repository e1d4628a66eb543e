"""Payments and disputes: the list with filters, one payment's whole story (decision and proof
trace, approval, rail state, refunds, disputes, audit entries), refunds, and a dispute's life
(open, review, resolve)."""

from __future__ import annotations

from typing import Annotated, Any, get_args

from fastapi import Query, Request
from starlette.responses import Response

from paywarden.entrypoints.console import web
from paywarden.errors import NotFoundError
from paywarden.ports.rows import DisputeStatus, PaymentState
from paywarden.warden import Warden

router = web.console_router()
PAYMENT_STATES = get_args(PaymentState)
DISPUTE_STATES = get_args(DisputeStatus)
REFUND = ("POST", "/v1/payments/{payment_id}/refund")
OPEN_DISPUTE = ("POST", "/v1/disputes")
REVIEW = ("POST", "/v1/disputes/{dispute_id}/review")
RESOLVE = ("POST", "/v1/disputes/{dispute_id}/resolve")
Filter = Annotated[str | None, Query(max_length=128)]


@router.get("/payments")
async def payments(request: Request, agent: Filter = None, state: Filter = None) -> Response:
    user = await web.user_of(request, ("GET", "/v1/payments"))
    rows = await web.blocking(
        web.warden(request).payments, agent=agent or None, state=state or None, limit=200
    )
    context = {"rows": rows, "agent": agent or "", "state": state or "", "states": PAYMENT_STATES}
    return web.render(request, "payments.html", user, context)


def _story(warden: Warden, payment_id: str) -> dict[str, Any]:
    row = warden.payment(payment_id)
    try:
        decision = warden.decision(row.decision_id)
    except NotFoundError:
        decision = None
    approvals = [
        view
        for view in warden.approvals(agent=row.agent, limit=200)
        if view.row.hold_id == row.hold_id
    ]
    trail = {entry.seq: entry for entry in warden.audit_trail(payment_id)}
    for ref in (row.decision_id, row.hold_id, *(view.approval_id for view in approvals)):
        trail.update({entry.seq: entry for entry in warden.audit_trail(ref)})
    return {
        "row": row,
        "decision": decision,
        "approvals": approvals,
        "refunds": warden.refunds(payment_id),
        "disputes": warden.disputes(payment_id=payment_id),
        "entries": [trail[seq] for seq in sorted(trail)],
    }


@router.get("/payments/{payment_id}")
async def payment(request: Request, payment_id: str) -> Response:
    user = await web.user_of(request, ("GET", "/v1/payments/{payment_id}"))
    story = await web.blocking(_story, web.warden(request), payment_id)
    return web.render(request, "payment.html", user, story)


def _operator_only(user: web.User, what: str) -> None:
    # The REST rule of these routes: an operator or the paying agent, never an admin key.
    web.ensure(user.principal.role == "operator", f"{what} need an operator key")


@router.post("/payments/{payment_id}/refund")
async def refund(request: Request, payment_id: str) -> Response:
    user, form = await web.posted(request, REFUND)
    _operator_only(user, "refunds")
    amount = web.field(form, "amount") or None
    return await web.act(
        user,
        f"/console/payments/{payment_id}",
        f"Refund of payment {payment_id} sent.",
        web.warden(request).refund,
        payment_id,
        amount,
        reason=web.field(form, "reason") or "requested",
        actor=user.principal.actor,
    )


@router.post("/payments/{payment_id}/disputes")
async def open_dispute(request: Request, payment_id: str) -> Response:
    user, form = await web.posted(request, OPEN_DISPUTE)
    _operator_only(user, "disputes")
    return await web.act(
        user,
        f"/console/payments/{payment_id}",
        f"Dispute opened on payment {payment_id}.",
        web.warden(request).open_dispute,
        payment_id,
        reason=web.field(form, "reason"),
        actor=user.principal.actor,
    )


@router.get("/disputes")
async def disputes(request: Request, status: Filter = None) -> Response:
    user = await web.user_of(request, ("GET", "/v1/disputes"))
    rows = await web.blocking(web.warden(request).disputes, status=status or None, limit=200)
    context = {"rows": rows, "status": status or "", "states": DISPUTE_STATES}
    return web.render(request, "disputes.html", user, context)


@router.post("/disputes/{dispute_id}/review")
async def review(request: Request, dispute_id: str) -> Response:
    user, form = await web.posted(request, REVIEW)
    warden = web.warden(request)
    row = await web.blocking(warden.dispute, dispute_id)
    return await web.act(
        user,
        f"/console/payments/{row.payment_id}",
        f"Dispute {dispute_id} is under review.",
        warden.review_dispute,
        dispute_id,
        operator=str(user.principal.operator),
        note=web.field(form, "note"),
    )


@router.post("/disputes/{dispute_id}/resolve")
async def resolve(request: Request, dispute_id: str) -> Response:
    user, form = await web.posted(request, RESOLVE)
    warden = web.warden(request)
    row = await web.blocking(warden.dispute, dispute_id)
    outcome = web.field(form, "outcome")
    return await web.act(
        user,
        f"/console/payments/{row.payment_id}",
        f"Dispute {dispute_id} resolved: {outcome}.",
        warden.resolve_dispute,
        dispute_id,
        outcome,
        operator=str(user.principal.operator),
        note=web.field(form, "note"),
        amount=web.field(form, "amount") or None,
    )
