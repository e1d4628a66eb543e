"""The audit log, API keys, the policy, and health: the administrator's side.

Operators and admins read the audit log and the policy; only admins create or revoke keys and
upload a policy. `/healthz` and `/readyz` need no key.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response

from paywarden.entrypoints.rest import models
from paywarden.entrypoints.rest.deps import AdminCaller, StaffCaller, WardenDep
from paywarden.entrypoints.rest.overload import OverloadGate
from paywarden.entrypoints.rest.policy_watch import PolicyWatcher
from paywarden.entrypoints.rest.problems import ApiProblem, problem_responses
from paywarden.policy.loading import LoadedPolicy

router = APIRouter(prefix="/v1", tags=["administration"])
health_router = APIRouter(tags=["health"])
_READ_ERRORS = problem_responses(401, 403, 422, 503)
_WRITE_ERRORS = problem_responses(401, 403, 404, 409, 413, 422, 503)


# Audit ----------------------------------------------------------------------------------------


@router.get(
    "/audit",
    response_model=list[models.AuditEntryOut],
    responses=_READ_ERRORS,
    summary="Read audit entries in sequence order",
)
def list_audit(
    principal: StaffCaller,
    warden: WardenDep,
    after_seq: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[models.AuditEntryOut]:
    """Page with `after_seq` = the last `seq` seen."""
    return [models.AuditEntryOut.of(entry) for entry in warden.audit_entries(after_seq, limit)]


@router.get(
    "/audit/verify",
    response_model=models.VerifyOut,
    responses=_READ_ERRORS,
    summary="Recompute the audit chain (read-only)",
)
def verify_audit(principal: StaffCaller, warden: WardenDep) -> models.VerifyOut:
    return models.VerifyOut.of(warden.verify_audit())


# Keys -----------------------------------------------------------------------------------------


@router.get(
    "/keys",
    response_model=list[models.KeyOut],
    responses=_READ_ERRORS,
    summary="List API keys (never the keys themselves)",
)
def list_keys(principal: AdminCaller, warden: WardenDep) -> list[models.KeyOut]:
    rows = warden.keys()
    return [models.KeyOut.of(row) for row in rows]


@router.post(
    "/keys",
    status_code=201,
    response_model=models.KeyCreated,
    responses=_WRITE_ERRORS,
    summary="Create an API key; the key is in this response only",
)
def create_key(
    body: models.KeyCreate,
    principal: AdminCaller,
    warden: WardenDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Refused here: a replay would need the key stored, and it never is.",
        ),
    ] = None,
) -> models.KeyCreated:
    if idempotency_key is not None:
        raise ApiProblem(
            422,
            "idempotency_not_supported",
            "key creation is not replayable, because the key is never stored; leave out "
            "Idempotency-Key and list keys to see what was created",
        )
    secret, row = warden.create_key(
        role=body.role,
        agent=body.agent,
        operator=body.operator,
        environment=body.environment,
        actor=principal.actor,
    )
    return models.KeyCreated(key=secret, details=models.KeyOut.of(row))


@router.post(
    "/keys/{key_id}/revoke",
    response_model=models.KeyOut,
    responses=_WRITE_ERRORS,
    summary="Revoke an API key at once",
)
def revoke_key(key_id: str, principal: AdminCaller, warden: WardenDep) -> models.KeyOut:
    return models.KeyOut.of(warden.revoke_key(key_id, actor=principal.actor))


# Policy ---------------------------------------------------------------------------------------


def _policy_out(loaded: LoadedPolicy) -> models.PolicyOut:
    return models.PolicyOut(
        loaded=loaded.policy is not None,
        version=loaded.policy.version if loaded.policy else None,
        source=loaded.source,
        reason_code=loaded.reason_code,
        problems=[problem.to_dict() for problem in loaded.report.problems],
    )


@router.get(
    "/policy",
    response_model=models.PolicyOut,
    responses=_READ_ERRORS,
    summary="The policy in force: its version and any warnings",
)
def get_policy(principal: StaffCaller, warden: WardenDep) -> models.PolicyOut:
    return _policy_out(warden.loaded_policy)


@router.put(
    "/policy",
    response_model=models.PolicyOut,
    responses=_WRITE_ERRORS,
    summary="Upload a new policy: validated, versioned and audited",
)
def put_policy(
    request: Request, body: models.PolicyUpload, principal: AdminCaller
) -> models.PolicyOut:
    """An invalid policy is refused with 422 and its problems; the previous one stays."""
    watcher: PolicyWatcher = request.app.state.policy_watcher
    return _policy_out(watcher.upload(body.policy, principal.actor))


# Health ---------------------------------------------------------------------------------------


@health_router.get("/healthz", response_model=models.Health, summary="The process is up")
async def healthz() -> models.Health:
    return models.Health(status="ok")


@health_router.get(
    "/readyz",
    response_model=models.Readiness,
    responses={503: {"model": models.Readiness, "description": "Not ready: payments are denied"}},
    summary="Ready to decide: a valid policy and a reachable store",
)
def readyz(request: Request, warden: WardenDep) -> Response:
    problems = warden.ready()
    policy = warden.policy
    gate: OverloadGate | None = getattr(request.app.state, "overload", None)
    body = models.Readiness(
        status="not_ready" if problems else "ready",
        problems=problems,
        policy_version=policy.version if policy else None,
        store_backlog=warden.backlog(),
        overload_refusals=gate.refusals if gate is not None else 0,
    )
    return JSONResponse(body.model_dump(), status_code=503 if problems else 200)
