"""Keys (admin), grants and the kill switch (operators), and the policy (view; upload: admin).

A halt needs a reason and a ticked confirmation, checked on the server, so it works the same
without JavaScript. A policy upload is validated first: its problems are shown with line and
column, and the policy in force stays as it was."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from paywarden.actions.grants import GrantRequest
from paywarden.entrypoints.console import web
from paywarden.entrypoints.rest.policy_watch import PolicyWatcher
from paywarden.errors import InvalidInputError, PaywardenError, PolicyCompileError
from paywarden.money import Money

router = web.console_router()
CREATE_KEY = ("POST", "/v1/keys")
REVOKE_KEY = ("POST", "/v1/keys/{key_id}/revoke")
ADD_GRANT = ("POST", "/v1/grants")
REVOKE_GRANT = ("POST", "/v1/grants/{grant_id}/revoke")
HALT = ("POST", "/v1/halt")
RESUME = ("POST", "/v1/resume")
PUT_POLICY = ("PUT", "/v1/policy")


# Keys -----------------------------------------------------------------------------------------


async def _keys_page(request: Request, user: web.User, created: str | None = None) -> Response:
    rows = await web.blocking(web.warden(request).keys)
    return web.render(request, "keys.html", user, {"rows": rows, "created": created})


@router.get("/keys")
async def keys(request: Request) -> Response:
    return await _keys_page(request, await web.user_of(request, ("GET", "/v1/keys")))


@router.post("/keys")
async def create_key(request: Request) -> Response:
    """The new key is shown on this response only (never stored, never shown again)."""
    user, form = await web.posted(request, CREATE_KEY)
    try:
        secret, _ = await web.blocking(
            web.warden(request).create_key,
            role=web.field(form, "role"),
            agent=web.field(form, "agent") or None,
            operator=web.field(form, "operator") or None,
            environment=web.field(form, "environment") or None,
            actor=user.principal.actor,
        )
    except PaywardenError as error:
        return web.back(user, "/console/keys", f"Refused: {error}", "error")
    return await _keys_page(request, user, secret)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str) -> Response:
    user, _ = await web.posted(request, REVOKE_KEY)
    revoke = web.warden(request).revoke_key
    done = f"Key {key_id} revoked."
    return await web.act(user, "/console/keys", done, revoke, key_id, actor=user.principal.actor)


# Grants ---------------------------------------------------------------------------------------


@router.get("/grants")
async def grants(request: Request) -> Response:
    user = await web.user_of(request, ("GET", "/v1/grants"))
    rows = await web.blocking(web.warden(request).grants)
    can_grant = web.may(request, user, ADD_GRANT)
    return web.render(request, "grants.html", user, {"rows": rows, "can_grant": can_grant})


def _whole(text: str) -> bool:
    """ASCII digits only: `str.isdigit` is true for `²`, which `int` refuses."""
    return text.isascii() and text.isdigit()


def _grant_request(form: dict[str, str]) -> GrantRequest:
    currency = form.get("currency", "")
    uses, minutes = form.get("uses_max", ""), form.get("expires_in_minutes", "")
    if not _whole(minutes) or not (_whole(uses) or not uses):
        raise InvalidInputError("minutes and uses must be whole numbers")
    recipients = tuple(
        item.strip() for item in form.get("recipients", "").split(",") if item.strip()
    )
    return GrantRequest(
        agent=form.get("agent", ""),
        action=form.get("action", "") or "payments.*",
        per_payment=Money.parse(form.get("per_payment", ""), currency),
        total=Money.parse(form.get("total", ""), currency),
        expires_in_seconds=int(minutes) * 60,
        uses_max=int(uses) if uses else None,
        recipients=recipients,
    )


@router.post("/grants")
async def add_grant(request: Request) -> Response:
    user, form = await web.posted(request, ADD_GRANT)
    values = {name: web.field(form, name) for name in form}

    def grant() -> object:
        return web.warden(request).grant(
            _grant_request(values), operator=str(user.principal.operator)
        )

    return await web.act(user, "/console/grants", "Grant added.", grant)


@router.post("/grants/{grant_id}/revoke")
async def revoke_grant(request: Request, grant_id: str) -> Response:
    user, _ = await web.posted(request, REVOKE_GRANT)
    revoke = web.warden(request).revoke_grant
    operator = str(user.principal.operator)
    done = f"Grant {grant_id} revoked."
    return await web.act(user, "/console/grants", done, revoke, grant_id, operator=operator)


# Kill switch ----------------------------------------------------------------------------------


@router.get("/halts")
async def halts(request: Request) -> Response:
    user = await web.user_of(request, ("GET", "/v1/halts"))
    rows = await web.blocking(web.warden(request).halts)
    can_halt = web.may(request, user, HALT)
    return web.render(request, "halts.html", user, {"rows": rows, "can_halt": can_halt})


@router.post("/halt")
async def halt(request: Request) -> Response:
    user, form = await web.posted(request, HALT)
    if web.field(form, "confirm") != "yes":
        return web.back(user, "/console/halts", "Nothing halted: tick the confirmation.", "error")
    agent = web.field(form, "agent") or None
    return await web.act(
        user,
        "/console/halts",
        f"Halted {agent or 'every agent'}.",
        web.warden(request).halt,
        agent,
        reason=web.field(form, "reason"),
        actor=str(user.principal.operator),
        void_pending=web.field(form, "void_pending") == "yes",
    )


@router.post("/resume")
async def resume(request: Request) -> Response:
    user, form = await web.posted(request, RESUME)
    if web.field(form, "confirm") != "yes":
        return web.back(user, "/console/halts", "Nothing resumed: tick the confirmation.", "error")
    agent = web.field(form, "agent") or None
    operator = str(user.principal.operator)
    resumed = await web.blocking(web.warden(request).resume, agent, actor=operator)
    message = f"Resumed {agent or 'every agent'}." if resumed else "There was no such halt."
    return web.back(user, "/console/halts", message, "ok" if resumed else "error")


# Policy ---------------------------------------------------------------------------------------


async def _policy_page(
    request: Request,
    user: web.User,
    draft: str | None = None,
    error: PolicyCompileError | None = None,
) -> Response:
    loaded = web.warden(request).loaded_policy
    context = {
        "loaded": loaded,
        "draft": draft if draft is not None else (loaded.text or ""),
        "problems": [problem.to_dict() for problem in error.report.problems] if error else [],
        "can_upload": web.may(request, user, PUT_POLICY),
    }
    return web.render(request, "policy.html", user, context, 422 if error else 200)


@router.get("/policy")
async def policy(request: Request) -> Response:
    return await _policy_page(request, await web.user_of(request, ("GET", "/v1/policy")))


@router.post("/policy")
async def upload_policy(request: Request) -> Response:
    user, form = await web.posted(request, PUT_POLICY)
    text = str(form.get("policy") or "")
    watcher: PolicyWatcher = request.app.state.policy_watcher
    try:
        loaded = await web.blocking(watcher.upload, text, user.principal.actor)
    except PolicyCompileError as error:
        return await _policy_page(request, user, text, error)
    except PaywardenError as error:
        return web.back(user, "/console/policy", f"Refused: {error}", "error")
    version = loaded.policy.version if loaded.policy else "none"
    return web.back(user, "/console/policy", f"Policy {version} is in force.")
