"""Request dependencies: the Warden, the caller (from `Authorization: Bearer <key>`), role checks
and the `Idempotency-Key` header with Stripe's semantics.

Roles: an `agent` key authorizes and pays as its own agent and reads only its own objects; an
`operator` key decides approvals, grants and halts as its registered operator; an `admin` key
manages keys and policy. Operators and admins read everything; nobody else does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.dependencies.models import Dependant
from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from paywarden.admission import identifier_secret
from paywarden.audit.canonical import canonical_bytes
from paywarden.entrypoints.rest import problems
from paywarden.entrypoints.rest.settings import Settings
from paywarden.errors import (
    AuthenticationError,
    ForbiddenError,
    InvalidIntentError,
    NotFoundError,
    PaywardenError,
)
from paywarden.keys import Principal, Role
from paywarden.ports import IdempotencyRow
from paywarden.warden import Warden

bearer = HTTPBearer(auto_error=False, description="An API key: `paywarden keys create`.")
REPLAYED_HEADER = "Idempotent-Replayed"
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]{1,255}$"


def warden_of(request: Request) -> Warden:
    warden: Warden = request.app.state.warden
    return warden


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_warden(request: Request) -> Warden:
    return warden_of(request)


async def get_settings(request: Request) -> Settings:
    return settings_of(request)


def require(*roles: Role) -> Callable[..., Any]:
    """A dependency that authenticates the caller and admits only these roles (403 for the
    others). On FastAPI's routes it runs on the event loop: one primary-key read from the WAL
    snapshot and one HMAC (tens of microseconds) cost less than a hop to the thread pool, and
    one flat dependency keeps FastAPI's per-request dependency solving short. A direct route
    (direct_route.py) calls `authenticated` in the worker thread that runs its endpoint, so the
    event loop never waits for the store."""

    async def caller(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        return authenticated(request, credentials, roles)

    _CALLERS[caller] = roles
    return caller


def authenticated(
    request: Request, credentials: HTTPAuthorizationCredentials | None, roles: tuple[Role, ...]
) -> Principal:
    """The caller of `credentials`, if its role is one of `roles` (401, 403 otherwise)."""
    if credentials is None:
        raise AuthenticationError("send an API key as `Authorization: Bearer <key>`")
    principal = warden_of(request).authenticate(credentials.credentials)
    if principal.role not in roles:
        names = " or ".join(roles)
        raise ForbiddenError(f"this needs an {names} key, not an {principal.role} key")
    return principal


# The dependencies `require` made, with their roles: a direct route calls `authenticated`.
_CALLERS: dict[Callable[..., Any], tuple[Role, ...]] = {}


def roles_of(dependency: object) -> tuple[Role, ...] | None:
    """The roles a dependency that `require` made admits; None for any other dependency."""
    return _CALLERS.get(dependency) if callable(dependency) else None


Caller = Annotated[Principal, Depends(require("agent", "operator", "admin"))]
AgentCaller = Annotated[Principal, Depends(require("agent"))]
OperatorCaller = Annotated[Principal, Depends(require("operator"))]
AdminCaller = Annotated[Principal, Depends(require("admin"))]
StaffCaller = Annotated[Principal, Depends(require("operator", "admin"))]
WardenDep = Annotated[Warden, Depends(get_warden)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="Retry-safe key (printable ASCII, at most 255 characters): the same key "
        "and body replay the first response; another body gets 422; while the first request "
        "runs, 409.",
    ),
]
RequiredIdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="Required on routes that move money; see the optional header elsewhere.",
    ),
]


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for dependency in dependant.dependencies:
        names |= _query_names(dependency)
    return names


async def reject_unknown_query(request: Request) -> None:
    """Refuse query parameters a route does not declare (a typo must not be ignored) and any
    given twice (which value counts would be a guess)."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = _query_names(route.dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        names = ", ".join(f"`{name[:40]}`" for name in unknown[:5])
        raise problems.ApiProblem(422, "invalid_input", f"unknown query parameter(s): {names}")
    repeated = sorted(name for name in known if len(request.query_params.getlist(name)) > 1)
    if repeated:
        names = ", ".join(f"`{name}`" for name in repeated)
        raise problems.ApiProblem(422, "invalid_input", f"query parameter(s) given twice: {names}")


def owned_by(principal: Principal, agent: str, what: str) -> None:
    """Object-level authorization: an agent sees only its own objects. Another agent's object
    is reported as not found, so ids cannot be probed."""
    if principal.role == "agent" and principal.agent != agent:
        raise NotFoundError(f"no {what}")


# Idempotency ----------------------------------------------------------------------------------


IDEMPOTENCY_KEY_CONTEXT = b"paywarden idempotency v1"


def fingerprint(method: str, path: str, body: object, key: bytes) -> str:
    """The route and the parsed body (key order and spacing do not matter), as HMAC-SHA256
    under `key`, so the stored value says nothing about a body that may carry secrets."""
    canonical = canonical_bytes([method, path, jsonable_encoder(body)])
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def fingerprint_key_of(warden: Warden) -> bytes:
    """The fingerprint key of a deployment: derived from its server secret, for this use only."""
    return hmac.new(warden.server_secret(), IDEMPOTENCY_KEY_CONTEXT, hashlib.sha256).digest()


def fingerprint_key(request: Request) -> bytes:
    """The app's fingerprint key: derived once from the server secret of its Warden."""
    warden = warden_of(request)
    cached: tuple[Warden, bytes] | None = getattr(request.app.state, "fingerprint_key", None)
    if cached is None or cached[0] is not warden:
        cached = (warden, fingerprint_key_of(warden))
        request.app.state.fingerprint_key = cached
    return cached[1]


def _json(status: int, payload: object) -> Response:
    media = problems.PROBLEM_MEDIA_TYPE if status >= 400 else "application/json"
    if isinstance(payload, BaseModel):
        text = payload.model_dump_json()  # pydantic's serializer, in Rust
    else:
        text = json.dumps(jsonable_encoder(payload), separators=(",", ":"))
    return Response(text, status_code=status, media_type=media)


def _run(action: Callable[[], object], path: str) -> tuple[int, object, dict[str, str]]:
    try:
        return 200, action(), {}
    except PaywardenError as error:
        status, body = problems.render(error, path)
        return status, body, problems.headers_of(error)


def idempotent(
    request: Request,
    warden: Warden,
    principal: Principal,
    key: str | None,
    body: object,
    action: Callable[[], object],
    stale_seconds: int,
) -> Response:
    """Run `action` at most once per `(caller, Idempotency-Key)` and replay its response.

    The first request claims the key in the store (so this holds across restarts and
    processes); its response, success or 4xx problem, is stored and replayed byte for byte,
    with `Idempotent-Replayed: true`. The same key with another route or body is refused with
    422; while the first request still runs, 409. A 5xx is not stored: the claim is released
    so the client can retry.
    """
    path = request.url.path
    if key is None:
        status, payload, headers = _run(action, path)
        response = _json(status, payload)
        response.headers.update(headers)
        return response
    scope = principal.actor
    _refuse_secret_key(request, warden, principal, key, body)
    held = _claim(request, warden, scope, key, body, stale_seconds)
    if held is not None:
        same = hmac.compare_digest(held.fingerprint, _digest(request, body))
        return _replay_or_refuse(same, held.state, held.status, held.body)
    try:
        status, payload, headers = _run(action, path)
    except BaseException:
        warden.idempotency_abandon(scope, key)
        raise
    response = _json(status, payload)
    response.headers.update(headers)
    if status >= 500:
        warden.idempotency_abandon(scope, key)
    else:
        stored = bytes(response.body).decode("utf-8")
        if status >= 400:  # a problem may quote what was refused: kept without its secrets
            stored = _without_secrets(warden, stored)
        warden.idempotency_end(scope, key, status, stored)
    return response


def _refuse_secret_key(
    request: Request, warden: Warden, principal: Principal, key: str, body: object
) -> None:
    """An Idempotency-Key is stored as it is: one that looks like a secret is refused (and,
    on a route that asks for a decision, the refusal is audited) before anything is stored."""
    kind = identifier_secret(warden.redactor, key)
    if kind is None:
        return
    refusal = InvalidIntentError(
        f"the Idempotency-Key looks like a secret ({kind}); keys are stored as they are"
    )
    if principal.role == "agent" and principal.agent is not None:
        route = (request.method, request.url.path)
        if route in problems.DECISION_ROUTES:
            fields = dict(jsonable_encoder(body)) if isinstance(body, BaseModel) else {}
            warden.refuse(
                agent=principal.agent, fields=fields, error=refusal, actor=principal.actor
            )
    raise refusal


def _without_secrets(warden: Warden, text: str) -> str:
    """A problem body as it may be stored: every string value that holds a secret redacted."""
    clean, paths = warden.redactor.redact(json.loads(text))
    return json.dumps(clean, separators=(",", ":")) if paths else text


def _digest(request: Request, body: object) -> str:
    return fingerprint(request.method, request.url.path, body, fingerprint_key(request))


def _claim(
    request: Request, warden: Warden, scope: str, key: str, body: object, stale_seconds: int
) -> IdempotencyRow | None:
    """Claim `key` under this request's fingerprint: None when claimed, else the row that
    holds it (a finished response, another body, or a request in progress)."""
    return warden.idempotency_begin(scope, key, _digest(request, body), stale_seconds)


def _replay_or_refuse(same: bool, state: str, status: int | None, body: str | None) -> Response:
    if not same:
        raise problems.ApiProblem(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used with another route or request body",
        )
    if state != "done" or status is None or body is None:
        raise problems.ApiProblem(
            409,
            "idempotency_in_progress",
            "a request with this Idempotency-Key is still in progress; retry later",
            headers={"Retry-After": "1"},
        )
    media = problems.PROBLEM_MEDIA_TYPE if status >= 400 else "application/json"
    return Response(body, status_code=status, media_type=media, headers={REPLAYED_HEADER: "true"})
