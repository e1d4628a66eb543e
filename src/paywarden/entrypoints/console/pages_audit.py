"""The audit log: browse (after a sequence number, by kind, or about one object), open an entry
with its hash links, verify the chain, and sign a checkpoint (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request
from starlette.responses import Response

from paywarden.audit.chain import AuditEntry
from paywarden.audit.checkpoint import SigningKeyMissingError
from paywarden.entrypoints.console import web
from paywarden.errors import NotFoundError
from paywarden.warden import Warden

router = web.console_router()
LIST = ("GET", "/v1/audit")
CHECKPOINT = ("POST", "/v1/audit/checkpoints")
PAGE = 100


def _browse(warden: Warden, after: int, kind: str, ref: str) -> list[AuditEntry]:
    entries = warden.audit_trail(ref) if ref else warden.audit_entries(after, PAGE * 10)
    if kind:
        entries = [entry for entry in entries if entry.kind.startswith(kind)]
    return entries[:PAGE]


@router.get("/audit")
async def audit(
    request: Request,
    after: Annotated[int, Query(ge=0)] = 0,
    kind: Annotated[str, Query(max_length=64)] = "",
    ref: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    user = await web.user_of(request, LIST)
    entries = await web.blocking(_browse, web.warden(request), after, kind, ref)
    context = {
        "entries": entries,
        "after": after,
        "kind": kind,
        "ref": ref,
        "next_after": entries[-1].seq if len(entries) == PAGE and not ref else None,
        "can_checkpoint": web.may(request, user, CHECKPOINT),
    }
    return web.render(request, "audit.html", user, context)


@router.get("/audit/verify")
async def verify(request: Request) -> Response:
    """Recompute the whole chain (read-only) and show the result."""
    user = await web.user_of(request, ("GET", "/v1/audit/verify"))
    result = await web.blocking(web.warden(request).verify_audit)
    return web.render(request, "verify.html", user, {"result": result})


@router.post("/audit/checkpoint")
async def checkpoint(request: Request) -> Response:
    user, _ = await web.posted(request, CHECKPOINT)
    try:
        signed = await web.blocking(web.warden(request).checkpoint)
    except SigningKeyMissingError:
        message = (
            "No checkpoint signed: no audit signing key is configured (paywarden audit keygen)."
        )
        return web.back(user, "/console/audit", message, "error")
    point = signed.checkpoint
    done = (
        f"Checkpoint signed at seq {point.seq} (head {point.head_hash[:16]}, key {signed.key_id})."
    )
    return web.back(user, "/console/audit", done)


def _entry(warden: Warden, seq: int) -> tuple[AuditEntry, AuditEntry | None]:
    found = warden.audit_entries(max(seq - 2, 0), 3)
    by_seq = {entry.seq: entry for entry in found}
    if seq not in by_seq:
        raise NotFoundError(f"no audit entry {seq}")
    return by_seq[seq], by_seq.get(seq + 1)


@router.get("/audit/{seq}")
async def entry(request: Request, seq: int) -> Response:
    user = await web.user_of(request, LIST)
    found, following = await web.blocking(_entry, web.warden(request), seq)
    return web.render(request, "audit_entry.html", user, {"e": found, "following": following})
