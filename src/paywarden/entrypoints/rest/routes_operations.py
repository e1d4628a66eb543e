"""Approvals, grants, budgets and the kill switch: the operator's side.

Only operator keys decide: approve, reject, grant, revoke a grant, halt and resume, each as the
registered operator the key is bound to, so every decision is attributed to a person. An agent
reads only its own approvals, grants and budgets.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from paywarden.actions.approvals import (
    APPROVALS_OFFSET_MAX,
    APPROVALS_PAGE_DEFAULT,
    APPROVALS_PAGE_MAX,
)
from paywarden.actions.grants import GrantRequest
from paywarden.entrypoints.rest import models
from paywarden.entrypoints.rest.deps import (
    Caller,
    IdempotencyKey,
    OperatorCaller,
    SettingsDep,
    WardenDep,
    idempotent,
    owned_by,
)
from paywarden.entrypoints.rest.problems import problem_responses
from paywarden.keys import Principal
from paywarden.money import Money

router = APIRouter(prefix="/v1", tags=["operations"])
# Where the next page of a paged list starts; absent on the last page.
NEXT_OFFSET_HEADER = "Next-Offset"
_WRITE_ERRORS = problem_responses(401, 403, 404, 409, 413, 422, 503)
_READ_ERRORS = problem_responses(401, 403, 404, 422, 503)
ApprovalStatus = Literal["pending", "approved", "rejected", "expired", "consumed", "voided"]


def _operator(principal: Principal) -> str:
    return str(principal.operator)


# Approvals ------------------------------------------------------------------------------------


_NEXT_OFFSET_DOC = {
    "description": "The `offset` of the next page; absent on the last page.",
    "schema": {"type": "integer", "minimum": 1},
}


@router.get(
    "/approvals",
    response_model=list[models.ApprovalOut],
    responses={**_READ_ERRORS, 200: {"headers": {NEXT_OFFSET_HEADER: _NEXT_OFFSET_DOC}}},
    summary="List approval requests: pending first, agents taking turns",
)
def list_approvals(
    response: Response,
    principal: Caller,
    warden: WardenDep,
    status: ApprovalStatus | None = None,
    agent: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=APPROVALS_PAGE_MAX)] = APPROVALS_PAGE_DEFAULT,
    offset: Annotated[int, Query(ge=0, le=APPROVALS_OFFSET_MAX)] = 0,
) -> list[models.ApprovalOut]:
    """One page of requests in a fair order: pending first, each agent's oldest pending
    request before any agent's second, so one agent's flood never hides another's request.
    When more follow, the `Next-Offset` header says where the next page starts. An agent sees
    only its own requests; operators and admins see all."""
    if principal.role == "agent":
        agent = principal.agent
    page = warden.approvals_page(status, agent, limit=limit, offset=offset)
    if page.next_offset is not None:
        response.headers[NEXT_OFFSET_HEADER] = str(page.next_offset)
    return [models.ApprovalOut.of(view) for view in page.views]


@router.get(
    "/approvals/{approval_id}",
    response_model=models.ApprovalOut,
    responses=_READ_ERRORS,
    summary="Read one approval request",
)
def get_approval(approval_id: str, principal: Caller, warden: WardenDep) -> models.ApprovalOut:
    view = warden.approval(approval_id)
    owned_by(principal, view.row.agent, f"approval `{approval_id}`")
    return models.ApprovalOut.of(view)


def _vote(
    request: Request,
    approval_id: str,
    body: models.VoteRequest,
    principal: Principal,
    warden: WardenDep,
    settings: SettingsDep,
    key: str | None,
    approve: bool,
) -> Response:
    def action() -> models.ApprovalOut:
        decide = warden.approve if approve else warden.reject
        view = decide(approval_id, operator=_operator(principal), reason=body.reason)
        return models.ApprovalOut.of(view)

    stale = settings.idempotency_stale_seconds
    return idempotent(request, warden, principal, key, body, action, stale)


@router.post(
    "/approvals/{approval_id}/approve",
    response_model=models.ApprovalOut,
    responses=_WRITE_ERRORS,
    summary="Approve a request as the key's operator",
)
def approve(
    request: Request,
    approval_id: str,
    body: models.VoteRequest,
    principal: OperatorCaller,
    warden: WardenDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Above the policy's four-eyes amount a second, distinct operator must approve too."""
    return _vote(request, approval_id, body, principal, warden, settings, idempotency_key, True)


@router.post(
    "/approvals/{approval_id}/reject",
    response_model=models.ApprovalOut,
    responses=_WRITE_ERRORS,
    summary="Reject a request as the key's operator; its hold is released",
)
def reject(
    request: Request,
    approval_id: str,
    body: models.VoteRequest,
    principal: OperatorCaller,
    warden: WardenDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    return _vote(request, approval_id, body, principal, warden, settings, idempotency_key, False)


# Grants ---------------------------------------------------------------------------------------


@router.get(
    "/grants",
    response_model=list[models.GrantOut],
    responses=_READ_ERRORS,
    summary="List grants",
)
def list_grants(
    principal: Caller,
    warden: WardenDep,
    agent: Annotated[str | None, Query(max_length=128)] = None,
    active: bool = False,
) -> list[models.GrantOut]:
    if principal.role == "agent":
        agent = principal.agent
    return [models.GrantOut.of(row) for row in warden.grants(agent, active_only=active)]


@router.post(
    "/grants",
    response_model=models.GrantOut,
    responses=_WRITE_ERRORS,
    summary="Pre-approve an agent within bounds",
)
def create_grant(
    request: Request,
    body: models.GrantCreate,
    principal: OperatorCaller,
    warden: WardenDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    def action() -> models.GrantOut:
        grant = GrantRequest(
            agent=body.agent,
            action=body.action,
            per_payment=Money.parse(body.per_payment, body.currency),
            total=Money.parse(body.total, body.currency),
            expires_in_seconds=body.expires_in_seconds,
            uses_max=body.uses_max,
            recipients=tuple(body.recipients),
        )
        return models.GrantOut.of(warden.grant(grant, operator=_operator(principal)))

    stale = settings.idempotency_stale_seconds
    return idempotent(request, warden, principal, idempotency_key, body, action, stale)


@router.post(
    "/grants/{grant_id}/revoke",
    response_model=models.GrantOut,
    responses=_WRITE_ERRORS,
    summary="Revoke a grant",
)
def revoke_grant(
    request: Request,
    grant_id: str,
    principal: OperatorCaller,
    warden: WardenDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    def action() -> models.GrantOut:
        return models.GrantOut.of(warden.revoke_grant(grant_id, operator=_operator(principal)))

    stale = settings.idempotency_stale_seconds
    return idempotent(request, warden, principal, idempotency_key, {}, action, stale)


# Budgets and the kill switch ------------------------------------------------------------------


@router.get(
    "/budgets",
    response_model=list[models.BudgetOut],
    responses=_READ_ERRORS,
    summary="Each budget's spent, held and remaining in its current window",
)
def list_budgets(principal: Caller, warden: WardenDep) -> list[models.BudgetOut]:
    """An agent sees the global budgets and its own agent-scoped ones."""
    rows = warden.budgets()
    if principal.role == "agent":
        rows = [
            row
            for row in rows
            if row.scope == "global" or (row.scope == "agent" and row.scope_key == principal.agent)
        ]
    return [models.BudgetOut.of(row) for row in rows]


@router.post(
    "/halt",
    response_model=models.HaltOut,
    responses=_WRITE_ERRORS,
    summary="Halt payments (of one agent, or of everyone) until resumed",
)
def halt(
    request: Request,
    body: models.HaltRequest,
    principal: OperatorCaller,
    warden: WardenDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    def action() -> models.HaltOut:
        row = warden.halt(
            body.agent,
            reason=body.reason,
            actor=_operator(principal),
            void_pending=body.void_pending,
        )
        return models.HaltOut.of(row)

    stale = settings.idempotency_stale_seconds
    return idempotent(request, warden, principal, idempotency_key, body, action, stale)


@router.post(
    "/resume",
    response_model=models.ResumeOut,
    responses=_WRITE_ERRORS,
    summary="Lift a halt",
)
def resume(
    request: Request,
    principal: OperatorCaller,
    warden: WardenDep,
    settings: SettingsDep,
    body: models.ResumeRequest | None = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    body = body or models.ResumeRequest()

    def action() -> models.ResumeOut:
        return models.ResumeOut(resumed=warden.resume(body.agent, actor=_operator(principal)))

    stale = settings.idempotency_stale_seconds
    return idempotent(request, warden, principal, idempotency_key, body, action, stale)
