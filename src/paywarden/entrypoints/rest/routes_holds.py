"""`/v1/holds` and `/v1/sessions`: what an agent does around its own decisions.

An allowed authorization holds its amount; the agent that owns the hold captures it once paid
(all of it, or less, which frees the rest) or voids it. A hold resolves exactly once: a retry
after it expired, was captured or was voided is refused with its own code. Another agent's
hold reads as not found. A session's phase moves forward only, EXPLORE -> DECIDE -> COMMIT, and
is keyed by its agent, so an agent reads and advances only its own sessions.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
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
)
from paywarden.entrypoints.rest.problems import (
    HoldExpiredError,
    HoldResolvedError,
    problem_responses,
)
from paywarden.errors import StateConflictError
from paywarden.keys import Principal
from paywarden.ports import HoldRow
from paywarden.warden import Warden

router = APIRouter(prefix="/v1", tags=["holds and sessions"])
_WRITE_ERRORS = problem_responses(401, 403, 404, 409, 413, 422, 503)
_READ_ERRORS = problem_responses(401, 403, 404, 422, 503)
SessionId = Annotated[str, Path(max_length=128, pattern=models.IDENTIFIER_PATTERN)]


# Holds ----------------------------------------------------------------------------------------


def _own_hold(warden: Warden, principal: Principal, hold_id: str) -> HoldRow:
    """The hold, if the caller may see it: another agent's hold is not found."""
    hold = warden.hold(hold_id)
    owned_by(principal, hold.agent, f"hold `{hold_id}`")
    return hold


def _resolved(warden: Warden, hold_id: str, error: StateConflictError) -> StateConflictError:
    """The refusal of a capture or void, with a code that says why when the hold was no longer
    held (expired, or already captured or voided); any other conflict as it was."""
    state = warden.hold(hold_id).state
    if state == "expired":
        return HoldExpiredError(f"hold `{hold_id}` expired; its amount was released")
    if state in ("captured", "voided"):
        return HoldResolvedError(str(error))
    return error


@router.get(
    "/holds/{hold_id}",
    response_model=models.HoldOut,
    responses=_READ_ERRORS,
    summary="Read one hold",
)
def get_hold(hold_id: str, principal: Caller, warden: WardenDep) -> models.HoldOut:
    """An agent reads only its own holds; operators and admins read all."""
    return models.HoldOut.of(_own_hold(warden, principal, hold_id))


@router.post(
    "/holds/{hold_id}/capture",
    response_model=models.HoldOut,
    responses=_WRITE_ERRORS,
    summary="Capture a held amount, in whole or in part",
)
def capture_hold(
    request: Request,
    hold_id: str,
    principal: AgentCaller,
    warden: WardenDep,
    settings: SettingsDep,
    idempotency_key: RequiredIdempotencyKey,
    body: models.CaptureRequest | None = None,
) -> Response:
    """Spend what an allowed decision held: all of it, or a smaller `amount` that frees the
    rest. Only the agent that owns the hold may capture it. `Idempotency-Key` is required."""
    body = body or models.CaptureRequest()

    def action() -> models.HoldOut:
        _own_hold(warden, principal, hold_id)
        try:
            row = warden.capture(hold_id, body.amount, actor=principal.actor)
        except StateConflictError as error:
            raise _resolved(warden, hold_id, error) from error
        return models.HoldOut.of(row)

    stale = settings.idempotency_stale_seconds
    return idempotent(request, warden, principal, idempotency_key, body, action, stale)


@router.post(
    "/holds/{hold_id}/void",
    response_model=models.HoldOut,
    responses=_WRITE_ERRORS,
    summary="Release a held amount without spending it",
)
def void_hold(
    request: Request,
    hold_id: str,
    principal: AgentCaller,
    warden: WardenDep,
    settings: SettingsDep,
    idempotency_key: RequiredIdempotencyKey,
) -> Response:
    """Only the agent that owns the hold may void it; the hold of a pending approval request
    closes that request too. `Idempotency-Key` is required."""

    def action() -> models.HoldOut:
        _own_hold(warden, principal, hold_id)
        try:
            row = warden.void(hold_id, actor=principal.actor)
        except StateConflictError as error:
            raise _resolved(warden, hold_id, error) from error
        return models.HoldOut.of(row)

    stale = settings.idempotency_stale_seconds
    return idempotent(request, warden, principal, idempotency_key, {}, action, stale)


# Sessions -------------------------------------------------------------------------------------


@router.post(
    "/sessions",
    response_model=models.SessionOut,
    responses=_WRITE_ERRORS,
    summary="Start a session of the key's agent, in phase EXPLORE",
)
def start_session(
    request: Request,
    principal: AgentCaller,
    warden: WardenDep,
    settings: SettingsDep,
    body: models.SessionStart | None = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """A new id when `session_id` is left out; an id the agent already used is a 409."""
    body = body or models.SessionStart()

    def action() -> models.SessionOut:
        row = warden.start_session(str(principal.agent), body.session_id, actor=principal.actor)
        return models.SessionOut.of(row)

    stale = settings.idempotency_stale_seconds
    return idempotent(request, warden, principal, idempotency_key, body, action, stale)


@router.get(
    "/sessions/{session_id}",
    response_model=models.SessionOut,
    responses=_READ_ERRORS,
    summary="Read a session of the key's agent",
)
def get_session(
    session_id: SessionId, principal: AgentCaller, warden: WardenDep
) -> models.SessionOut:
    return models.SessionOut.of(warden.session(str(principal.agent), session_id))


@router.post(
    "/sessions/{session_id}/advance",
    response_model=models.SessionOut,
    responses=_WRITE_ERRORS,
    summary="Move a session to its next phase: EXPLORE -> DECIDE -> COMMIT",
)
def advance_session(
    request: Request,
    session_id: SessionId,
    body: models.PhaseAdvance,
    principal: AgentCaller,
    warden: WardenDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Forward only, one step at a time: any other move is a 409 `phase_transition_invalid`."""

    def action() -> models.SessionOut:
        row = warden.advance_phase(
            str(principal.agent), session_id, body.phase, actor=principal.actor
        )
        return models.SessionOut.of(row)

    stale = settings.idempotency_stale_seconds
    return idempotent(request, warden, principal, idempotency_key, body, action, stale)
