"""The approvals inbox: pending requests with what an operator needs to decide (amount, agent,
recipient, purpose, the rule that asked, the proof trace, the budget after the payment, time
left, four-eyes state), approve or reject with a reason. htmx refreshes the list every few
seconds; without JavaScript, reloading the page does."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Query, Request
from starlette.responses import Response

from paywarden.approval_request import ApprovalView
from paywarden.entrypoints.console import web
from paywarden.errors import NotFoundError
from paywarden.policy.decision import Decision
from paywarden.warden import Warden

router = web.console_router()
LIST = ("GET", "/v1/approvals")
APPROVE = ("POST", "/v1/approvals/{approval_id}/approve")
REJECT = ("POST", "/v1/approvals/{approval_id}/reject")
INBOX_MAX = 50


@dataclass(frozen=True, slots=True)
class Item:
    """One request as the inbox shows it."""

    view: ApprovalView
    decision: Decision | None
    seconds_left: int
    approved_by: tuple[str, ...]
    needed: int

    @property
    def intent(self) -> dict[str, object]:
        return self.view.to_dict()["intent"]  # type: ignore[return-value]


def _item(warden: Warden, view: ApprovalView, now_us: int) -> Item:
    try:
        decision: Decision | None = warden.decision(view.row.decision_id)
    except NotFoundError:  # no recorded decision (a copied store): show the request anyway
        decision = None
    approved = view.approved_by
    return Item(
        view,
        decision,
        max((view.row.expires_us - now_us) // 1_000_000, 0),
        approved,
        max(view.row.required - len(approved), 0),
    )


def _items(warden: Warden, status: str | None) -> list[Item]:
    now_us = time.time_ns() // 1000
    views = warden.approvals(status, limit=INBOX_MAX)
    return [_item(warden, view, now_us) for view in views]


async def _inbox_context(request: Request, user: web.User, status: str | None) -> dict[str, object]:
    items = await web.blocking(_items, web.warden(request), status)
    return {
        "items": items,
        "status": status or "",
        "can_decide": web.may(request, user, APPROVE),
    }


@router.get("/approvals")
async def inbox(
    request: Request, status: Annotated[str | None, Query(max_length=16)] = "pending"
) -> Response:
    user = await web.user_of(request, LIST)
    context = await _inbox_context(request, user, status or None)
    return web.render(request, "approvals.html", user, context)


@router.get("/approvals/live")
async def inbox_live(request: Request) -> Response:
    """The pending list alone: what htmx swaps in every few seconds."""
    user = await web.user_of(request, LIST)
    context = await _inbox_context(request, user, "pending")
    return web.render(request, "approvals_list.html", user, context, fragment=True)


@router.get("/approvals/{approval_id}")
async def approval(request: Request, approval_id: str) -> Response:
    user = await web.user_of(request, ("GET", "/v1/approvals/{approval_id}"))
    warden = web.warden(request)
    view = await web.blocking(warden.approval, approval_id)
    item = await web.blocking(_item, warden, view, time.time_ns() // 1000)
    can_decide = web.may(request, user, APPROVE)
    return web.render(request, "approval.html", user, {"item": item, "can_decide": can_decide})


async def _vote(request: Request, approval_id: str, approve: bool) -> Response:
    user, form = await web.posted(request, APPROVE if approve else REJECT)
    warden = web.warden(request)
    decide = warden.approve if approve else warden.reject
    verb = "Approved" if approve else "Rejected"
    back = web.field(form, "back") == "detail"
    path = f"/console/approvals/{approval_id}" if back else "/console/approvals"
    return await web.act(
        user,
        path,
        f"{verb} {approval_id}.",
        decide,
        approval_id,
        operator=str(user.principal.operator),
        reason=web.field(form, "reason"),
    )


@router.post("/approvals/{approval_id}/approve")
async def approve(request: Request, approval_id: str) -> Response:
    return await _vote(request, approval_id, True)


@router.post("/approvals/{approval_id}/reject")
async def reject(request: Request, approval_id: str) -> Response:
    return await _vote(request, approval_id, False)
