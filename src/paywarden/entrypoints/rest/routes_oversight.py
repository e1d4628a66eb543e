"""Shadow policy, halts, a payment's refunds, one object's audit trail, signed checkpoints.

Admins set, clear and read the shadow policy (a candidate evaluated beside the enforced one,
never enforced) and sign audit checkpoints; operators and admins list halts and read one
object's audit trail; a payment's refunds are read by the paying agent or staff.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from paywarden.audit.checkpoint import SigningKeyMissingError
from paywarden.entrypoints.rest import models
from paywarden.entrypoints.rest.deps import (
    AdminCaller,
    Caller,
    StaffCaller,
    WardenDep,
    owned_by,
)
from paywarden.entrypoints.rest.problems import ApiProblem, problem_responses

router = APIRouter(prefix="/v1", tags=["oversight"])
_READ_ERRORS = problem_responses(401, 403, 404, 422, 503)
_WRITE_ERRORS = problem_responses(401, 403, 409, 413, 422, 503)
# The library's words when no signing key is configured (audit/service.py).


class ShadowStatsOut(BaseModel):
    evaluated_total: int = Field(description="Decisions this process evaluated in shadow.")
    shadow_flips_total: int = Field(description="Those whose shadow outcome differs.")
    errors_total: int = Field(description="Shadow evaluations that failed.")
    flips: dict[str, int] = Field(description="Flips by kind, `enforced -> shadow`.")


class ShadowOut(BaseModel):
    active: bool = Field(description="Whether a shadow policy is set.")
    version: str | None = Field(description="The shadow policy's version, when set.")
    name: str | None
    stats: ShadowStatsOut


class ShadowCleared(BaseModel):
    cleared: bool = Field(description="False when no shadow policy was set.")


class CheckpointOut(BaseModel):
    origin: str
    seq: int
    head_hash: str
    time_us: int
    key_id: str
    signature: str = Field(description="Base64 Ed25519 signature of the checkpoint.")


def _shadow_out(warden: WardenDep) -> ShadowOut:
    shadow, stats = warden.shadow_policy(), warden.shadow_stats()
    return ShadowOut(
        active=shadow is not None,
        version=shadow.version if shadow else None,
        name=shadow.name if shadow else None,
        stats=ShadowStatsOut(
            evaluated_total=stats.evaluated_total,
            shadow_flips_total=stats.shadow_flips_total,
            errors_total=stats.errors_total,
            flips=dict(stats.flips),
        ),
    )


@router.get(
    "/policy/shadow",
    response_model=ShadowOut,
    responses=_READ_ERRORS,
    summary="The shadow policy, if any, and what it counted",
)
def get_shadow(principal: AdminCaller, warden: WardenDep) -> ShadowOut:
    """The counts are this process's since it started (each worker counts its own)."""
    return _shadow_out(warden)


@router.put(
    "/policy/shadow",
    response_model=ShadowOut,
    responses=_WRITE_ERRORS,
    summary="Evaluate a candidate policy beside the enforced one (never enforced)",
)
def put_shadow(body: models.PolicyUpload, principal: AdminCaller, warden: WardenDep) -> ShadowOut:
    """An invalid policy is a 422 and changes nothing; setting it is audited."""
    text = body.policy if body.policy.endswith("\n") else body.policy + "\n"  # text, not a path
    warden.set_shadow_policy(text, actor=principal.actor)
    return _shadow_out(warden)


@router.delete(
    "/policy/shadow",
    response_model=ShadowCleared,
    responses=_WRITE_ERRORS,
    summary="Stop evaluating the shadow policy",
)
def delete_shadow(principal: AdminCaller, warden: WardenDep) -> ShadowCleared:
    """Audited when a shadow policy was set; `cleared` is false (nothing done) otherwise."""
    return ShadowCleared(cleared=warden.clear_shadow_policy(actor=principal.actor))


@router.get(
    "/halts",
    response_model=list[models.HaltOut],
    responses=_READ_ERRORS,
    summary="The halts in force",
)
def list_halts(principal: StaffCaller, warden: WardenDep) -> list[models.HaltOut]:
    return [models.HaltOut.of(row) for row in warden.halts()]


@router.get(
    "/payments/{payment_id}/refunds",
    response_model=list[models.RefundOut],
    responses=_READ_ERRORS,
    summary="A payment's refunds, oldest first",
)
def list_refunds(payment_id: str, principal: Caller, warden: WardenDep) -> list[models.RefundOut]:
    """An agent reads only its own payments' refunds; another agent's payment is a 404."""
    if principal.role == "agent":
        owned_by(principal, warden.payment(payment_id).agent, f"payment `{payment_id}`")
    else:
        warden.payment(payment_id)  # an unknown payment is a 404, not an empty list
    return [models.RefundOut.of(row) for row in warden.refunds(payment_id)]


@router.get(
    "/audit/trail",
    response_model=list[models.AuditEntryOut],
    responses=_READ_ERRORS,
    summary="The audit entries about one object, oldest first",
)
def audit_trail(
    principal: StaffCaller,
    warden: WardenDep,
    ref_id: Annotated[str, Query(min_length=1, max_length=256)],
) -> list[models.AuditEntryOut]:
    """`ref_id` names a decision, hold, payment (with its refunds and disputes), approval,
    scope, `agent/session` or policy version; unknown ids read as an empty list."""
    return [models.AuditEntryOut.of(entry) for entry in warden.audit_trail(ref_id)]


@router.post(
    "/audit/checkpoints",
    response_model=CheckpointOut,
    responses=_WRITE_ERRORS,
    summary="Sign the audit head now",
)
def create_checkpoint(principal: AdminCaller, warden: WardenDep) -> CheckpointOut:
    """Needs an audit signing key in the Warden's audit options; without one, a 409
    `audit_signing_key_missing`. Written to the checkpoint directory too, if configured."""
    try:
        signed = warden.checkpoint()
    except SigningKeyMissingError as error:
        raise ApiProblem(
            409,
            "audit_signing_key_missing",
            "no audit signing key is configured, so no checkpoint can be signed "
            "(create one with `paywarden audit keygen`)",
        ) from error
    point = signed.checkpoint
    return CheckpointOut(
        origin=point.origin,
        seq=point.seq,
        head_hash=point.head_hash,
        time_us=point.time_us,
        key_id=signed.key_id,
        signature=signed.signature,
    )
