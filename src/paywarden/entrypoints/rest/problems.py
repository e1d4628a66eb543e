"""Errors as RFC 9457 problem details (`application/problem+json`), mapped in one place.

Every error response carries `type`, `title`, `status`, `detail`, `instance` and `code`: the
paywarden error or reason code a client can branch on. Invalid requests are 4xx, never 500; the
only 5xx answers are 503, when the store is unavailable or busy (retry later), and 500 for a
fault paywarden did not expect, which never changes state and is logged.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from paywarden import errors

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://paywarden.dev/problems/"
log = logging.getLogger("paywarden.rest")

# Most specific first: the first class an error is an instance of decides the status.
_STATUS: tuple[tuple[type[errors.PaywardenError], int], ...] = (
    (errors.AuthenticationError, 401),
    (errors.ForbiddenError, 403),
    (errors.NotFoundError, 404),
    (errors.StateConflictError, 409),
    (errors.IdempotencyConflictError, 422),
    (errors.InvalidInputError, 422),
    (errors.PolicyError, 422),
    (errors.StoreError, 503),
)
_TITLES = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Unprocessable request",
    500: "Internal error",
    503: "Service unavailable",
}
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "body_too_large",
    415: "unsupported_media_type",
}


class Problem(BaseModel):
    """An RFC 9457 problem details object."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str
    code: str


class ApiProblem(Exception):
    """An error raised by the REST layer itself (not by the library)."""

    def __init__(
        self, status: int, code: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


class HoldExpiredError(errors.StateConflictError):
    """A hold whose deadline passed: its amount was released, nothing can be captured."""

    code = "hold_expired"


class HoldResolvedError(errors.StateConflictError):
    """A hold already captured or voided: it resolves exactly once."""

    code = "hold_already_resolved"


def problem_body(
    status: int, code: str, detail: str, instance: str, **extra: Any
) -> dict[str, Any]:
    return {
        "type": TYPE_BASE + code,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": instance,
        "code": code,
        **extra,
    }


def problem_response(
    status: int,
    code: str,
    detail: str,
    instance: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body = problem_body(status, code, detail, instance, **extra)
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def status_of(error: errors.PaywardenError) -> int:
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 400


def headers_of(error: errors.PaywardenError) -> dict[str, str]:
    if isinstance(error, errors.AuthenticationError):
        return {"WWW-Authenticate": 'Bearer realm="paywarden"'}
    if isinstance(error, errors.StoreError):
        return {"Retry-After": "1"}
    return {}


def render(error: errors.PaywardenError, instance: str) -> tuple[int, dict[str, Any]]:
    """The status and problem body of a library error."""
    extra: dict[str, Any] = {}
    if isinstance(error, errors.PolicyCompileError):
        extra["problems"] = [problem.to_dict() for problem in error.report.problems]
    if error.decision_id is not None:  # the refusal was recorded: the audit log has it
        extra["decision_id"] = error.decision_id
    return status_of(error), problem_body(
        status_of(error), error.code, str(error), instance, **extra
    )


def _library_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, errors.PaywardenError)
    status, body = render(error, request.url.path)
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers_of(error),
    )


def _api_problem(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiProblem)
    return problem_response(
        error.status, error.code, error.detail, request.url.path, headers=error.headers
    )


def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    details = [
        {"loc": [str(part) for part in item.get("loc", ())], "msg": str(item.get("msg", ""))}
        for item in error.errors()
    ]
    summary = "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in details[:5])
    extra: dict[str, Any] = {}
    decision_id = audit_refused_body(request, error.body, summary)
    if decision_id is not None:
        extra["decision_id"] = decision_id
    return problem_response(
        422,
        "invalid_input",
        summary or "invalid request",
        request.url.path,
        errors=details,
        **extra,
    )


# The routes where a request asks for a decision: a body that fails validation there is a
# refused request, recorded in the audit log like any other (when an agent key sent it).
DECISION_ROUTES = frozenset({("POST", "/v1/authorizations"), ("POST", "/v1/payments")})


def audit_refused_body(request: Request, body: object, summary: str) -> str | None:
    """Record a request to a decision route that failed before it could become an intent
    (invalid or oversized body), when an agent key sent it; the refusal's decision id."""
    if (request.method, request.url.path) not in DECISION_ROUTES:
        return None
    warden = getattr(request.app.state, "warden", None)
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if warden is None or scheme.lower() != "bearer" or not credentials:
        return None
    try:
        principal = warden.authenticate(credentials.strip())
    except errors.PaywardenError:
        return None  # not a caller whose requests are decisions: nothing to record
    if principal.role != "agent" or principal.agent is None:
        return None
    fields = dict(body) if isinstance(body, dict) else {"body": body}
    fields.pop("mandate", None)  # an AP2 token is never recorded (docs/ap2.md), redacted or not
    refusal = errors.InvalidInputError(summary or "invalid request")
    try:
        warden.refuse(agent=principal.agent, fields=fields, error=refusal, actor=principal.actor)
    except errors.PaywardenError as failure:
        log.warning("refused request not audited: %s", failure)
    return refusal.decision_id


def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    status, detail = error.status_code, str(error.detail)
    headers = dict(error.headers or {})
    if status == 400:  # a body that could not be read as JSON at all: invalid input, like any
        status, detail = 422, f"the request body could not be parsed: {detail}"
        return problem_response(status, "invalid_input", detail, request.url.path)
    if status == 405:
        allowed = _allowed_methods(request)
        if allowed:  # else keep the router's own `Allow`
            headers["Allow"] = ", ".join(allowed)
    code = _HTTP_CODES.get(status, "bad_request")
    extra: dict[str, Any] = {}
    if status == 413:  # a body that grew too large while read: a refused request too
        decision_id = audit_refused_body(request, {"body": "too large"}, detail)
        if decision_id is not None:
            extra["decision_id"] = decision_id
    return problem_response(status, code, detail, request.url.path, headers=headers, **extra)


# The methods a 405's `Allow` header may name: every method a route here can accept.
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# What a route match leaves in the scope; a probe starts without it.
_MATCH_KEYS = ("fastapi", "route", "endpoint", "path_params")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route accepts on this path (Starlette names only the first route's).
    Each method is tried against the app's routes through their public `matches`, so routers
    included as groups count too."""
    base = {key: value for key, value in request.scope.items() if key not in _MATCH_KEYS}
    allowed = []
    for method in _METHODS:
        probe = {**base, "method": method}
        if any(route.matches(dict(probe))[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


def _unexpected(request: Request, error: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem_response(500, "internal_error", "an unexpected internal error", request.url.path)


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.PaywardenError, _library_error)
    app.add_exception_handler(ApiProblem, _api_problem)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these error statuses (see `openapi.py`)."""
    return {
        status: {"model": Problem, "description": _TITLES.get(status, "Error")}
        for status in statuses
    }
