"""What every console page shares: templates (autoescaped), the signed-in user, the role rules
of the REST route each page mirrors, form posts (same origin, CSRF token) and rendering.

Role rules are not restated here: a console page names the REST route it does the work of
(`("POST", "/v1/halt")`), and the roles that route's `require(...)` dependency admits are the
roles the page admits (looked up once from the app's routes; see `deps.roles_of`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import jinja2
from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute

from paywarden.entrypoints.console import security
from paywarden.entrypoints.console.sessions import ConsoleSession, SessionStore
from paywarden.entrypoints.rest import problems
from paywarden.entrypoints.rest.deps import authenticated, roles_of, settings_of, warden_of
from paywarden.errors import AuthenticationError, ForbiddenError, PaywardenError
from paywarden.keys import Principal, Role
from paywarden.money import CurrencyTable, format_minor
from paywarden.warden import Warden

HERE = Path(__file__).resolve().parent
LOGIN_PATH = "/console/login"
T = TypeVar("T")
# Operators and admins sign in; the pages each need the roles of their REST route.
SIGN_IN_ROLES: tuple[Role, ...] = ("operator", "admin")
_CURRENCIES = CurrencyTable()


class SignInRequired(Exception):
    """No live session: the page redirects to the sign-in form."""


def _money(amount_minor: int, currency: str) -> str:
    try:
        exponent = _CURRENCIES.exponent(currency)
    except (KeyError, PaywardenError):
        exponent = 2
    return f"{format_minor(amount_minor, exponent)} {currency}"


def _when(micros: int | None) -> str:
    if micros is None:
        return ""
    return datetime.fromtimestamp(micros / 1_000_000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pretty(text: str | Mapping[str, Any] | list[Any]) -> str:
    data = json.loads(text) if isinstance(text, str) else text
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)


def _intent_amount(intent: Mapping[str, Any]) -> str:
    minor, exponent = int(intent["amount_minor"]), int(intent.get("exponent", 2))
    return f"{format_minor(minor, exponent)} {intent['currency']}"


def _actor(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    return str(data.get("actor", "")) if isinstance(data, dict) else ""


def _duration(seconds: int) -> str:
    if seconds <= 0:
        return "expired"
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h {rest // 60:02d}m" if hours else f"{rest // 60}m {rest % 60:02d}s"


# Autoescaping everywhere: what agents wrote (purpose, recipient, metadata) is shown as text.
templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, auto_reload=False
    )
)
templates.env.filters.update(
    money=_money,
    when=_when,
    pretty=_pretty,
    intent_amount=_intent_amount,
    duration=_duration,
    actor=_actor,
)


@dataclass(frozen=True, slots=True)
class User:
    """The signed-in person: their session and the principal their key authenticates as."""

    session: ConsoleSession
    principal: Principal

    @property
    def name(self) -> str:
        return self.principal.operator or f"admin ({self.principal.key_id})"


def store_of(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.console_sessions
    return store


async def blocking(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a Warden call in a worker thread, as the REST routes do (they are sync routes)."""
    return await run_in_threadpool(function, *args, **kwargs)


def principal_for(request: Request, secret: str, roles: tuple[Role, ...]) -> Principal:
    """The REST rule: authenticate the key and admit only `roles` (401, 403 otherwise)."""
    credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=secret)
    return authenticated(request, credentials, roles)


def _api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    """Every APIRoute under `routes`, in included routers too (FastAPI keeps an included router
    whole, as `original_router`, since 0.16x; older versions copy its routes in)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


def rest_roles(request: Request, method: str, path: str) -> tuple[Role, ...]:
    """The roles the REST route `method path` admits (its `require(...)` dependency)."""
    cache: dict[tuple[str, str], tuple[Role, ...]] = request.app.state.console_roles
    if (method, path) not in cache:
        for route in _api_routes(request.app.routes):
            if route.path == path and method in (route.methods or ()):
                for dependency in route.dependant.dependencies:
                    roles = roles_of(dependency.call)
                    if roles is not None:
                        cache[(method, path)] = roles
        if (method, path) not in cache:
            raise LookupError(f"no REST route {method} {path} with a role rule")
    return cache[(method, path)]


def may(request: Request, user: User, route: tuple[str, str]) -> bool:
    """Whether the signed-in user's role may do what the REST `route` does (to show its form)."""
    return user.principal.role in rest_roles(request, *route)


async def user_of(request: Request, route: tuple[str, str] | None = None) -> User:
    """The signed-in user, admitted by the roles of the REST `route` (sign-in roles if None).
    Raises SignInRequired without a live session (or when its key was revoked)."""
    store = store_of(request)
    session = store.get(request.cookies.get(security.COOKIE_NAME))
    if session is None:
        raise SignInRequired()
    roles = rest_roles(request, *route) if route else SIGN_IN_ROLES
    allowed = tuple(role for role in roles if role in SIGN_IN_ROLES)
    try:
        principal = await blocking(principal_for, request, session.secret, SIGN_IN_ROLES)
    except AuthenticationError:
        store.revoke(session.session_id)
        raise SignInRequired() from None
    if principal.role not in allowed:
        names = " or ".join(allowed) or "agent"
        raise ForbiddenError(f"this page needs an {names} key, not an {principal.role} key")
    return User(session, principal)


async def posted(request: Request, route: tuple[str, str] | None) -> tuple[User, FormData]:
    """A form post: same origin, signed in with a role `route` admits, the session's token."""
    security.check_same_origin(settings_of(request), request)
    user = await user_of(request, route)
    form = await request.form()
    token = form.get("csrf")
    security.check_token(user.session.csrf, token if isinstance(token, str) else None)
    return user, form


def field(form: FormData, name: str, default: str = "") -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else default


def warden(request: Request) -> Warden:
    return warden_of(request)


def render(
    request: Request,
    name: str,
    user: User | None,
    context: Mapping[str, Any] | None = None,
    status: int = 200,
    fragment: bool = False,
) -> Response:
    """A page (or, with `fragment`, a part of one that htmx swaps in: it leaves the messages
    for the next page)."""
    values: dict[str, Any] = {"user": user, "flashes": [], "csrf": ""}
    if user is not None:
        values["flashes"] = [] if fragment else user.session.take_flashes()
        values["csrf"] = user.session.csrf
    values.update(context or {})
    response = templates.TemplateResponse(request, name, values, status_code=status)
    response.headers.update(security.SECURITY_HEADERS)
    return response


def back(user: User, path: str, message: str, kind: str = "ok") -> Response:
    """After a post: say what happened on the next page and go there (303: a GET)."""
    user.session.flash(message, kind)
    return RedirectResponse(path, status_code=303)


async def act(
    user: User, path: str, done: str, function: Callable[..., object], *args: Any, **kwargs: Any
) -> Response:
    """Run a Warden action (in a thread) for a form post, then go back to `path` saying what
    happened: `done`, or why it was refused (state unchanged)."""
    try:
        await blocking(function, *args, **kwargs)
    except PaywardenError as error:
        return back(user, path, f"Refused: {error}", "error")
    return back(user, path, done)


def ensure(condition: bool, message: str) -> None:
    if not condition:
        raise ForbiddenError(message)


class ConsoleRoute(APIRoute):
    """A console route: no session sends the browser to the sign-in form; a refusal renders
    an HTML page with the reason (never problem+json)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                response: Response = await handler(request)
                return response
            except SignInRequired:
                if request.headers.get("hx-request") == "true":  # a refresh: reload the page
                    return Response(status_code=204, headers={"HX-Redirect": LOGIN_PATH})
                return RedirectResponse(LOGIN_PATH, status_code=303)
            except PaywardenError as error:
                status = problems.status_of(error)
                context = {"status": status, "message": str(error)}
                return render(request, "error.html", None, context, status)

        return guarded


def console_router() -> APIRouter:
    return APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)
