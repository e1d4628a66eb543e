"""Signing in and out. An operator or admin key signs in (agent keys are refused, as an unknown
or revoked key is); the key stays on the server, the browser gets a session cookie."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import RedirectResponse, Response

from paywarden.entrypoints.console import security, web
from paywarden.entrypoints.rest.deps import settings_of
from paywarden.errors import AuthenticationError, ForbiddenError

router = web.console_router()


@router.get("")
async def home() -> Response:
    return RedirectResponse("/console/approvals", status_code=303)


@router.get("/login")
async def login_form(request: Request) -> Response:
    return web.render(request, "login.html", None)


@router.post("/login")
async def login(request: Request) -> Response:
    settings = settings_of(request)
    security.check_same_origin(settings, request)
    form = await request.form()
    key = web.field(form, "key")
    try:
        principal = await web.blocking(web.principal_for, request, key, web.SIGN_IN_ROLES)
    except AuthenticationError:
        return _refused(request, 401, "That key is not valid (unknown, revoked or mistyped).")
    except ForbiddenError:
        return _refused(request, 403, "Agent keys cannot sign in: use an operator or admin key.")
    store = web.store_of(request)
    store.revoke(request.cookies.get(security.COOKIE_NAME) or "")  # never two sessions per browser
    session = store.create(key)
    name = principal.operator or principal.role
    session.flash(f"Signed in as {name}.")
    response = RedirectResponse("/console/approvals", status_code=303)
    response.set_cookie(
        security.COOKIE_NAME,
        session.session_id,
        max_age=settings.console_session_max_seconds,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=security.secure_cookie(settings, request),
    )
    return response


def _refused(request: Request, status: int, message: str) -> Response:
    return web.render(request, "login.html", None, {"error": message}, status)


@router.post("/logout")
async def logout(request: Request) -> Response:
    user, _ = await web.posted(request, None)
    web.store_of(request).revoke(user.session.session_id)
    response = RedirectResponse(web.LOGIN_PATH, status_code=303)
    response.delete_cookie(security.COOKIE_NAME, path="/console")
    return response
