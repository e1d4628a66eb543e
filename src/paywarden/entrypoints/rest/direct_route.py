"""`DirectRoute`: an `APIRoute` served without FastAPI's generic dependency solving.

FastAPI solves a route's dependencies per request by walking its dependency tree, keying a
cache, inspecting each callable and building a `Response` placeholder; for the decision routes
that was a quarter of the gateway's CPU. A direct route keeps everything FastAPI derives from
the endpoint's signature (the OpenAPI operation, the body model, the header parameters and
their validation) and does the per-request part itself, in the same order and with the same
errors:

1. the body is read and, when its content type is JSON, parsed (bad JSON: 422 before
   anything else, as FastAPI does);
2. unknown or repeated query parameters are refused (`deps.reject_unknown_query`);
3. the header parameters and the body are validated by FastAPI's own functions, so a 422
   names the same fields with the same messages;
4. in one hop to the thread pool, the caller is authenticated (`deps.authenticated`: 401,
   403, before any 422 of step 3, as FastAPI orders them), so the event loop never waits for
   the store's read of the key; then the endpoint runs there and must return a `Response` it
   built itself (no `response_model` re-validation: `response_model` stays for the OpenAPI
   document).

A route whose signature has anything else (path, query or cookie parameters, other
dependencies) is served by FastAPI's own handler: `DirectRoute` is only ever an optimization.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, get_type_hints

from fastapi import Request
from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_body_to_args, request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic_core import PydanticUndefined
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from paywarden.entrypoints.rest import deps
from paywarden.keys import Role

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


@dataclass(frozen=True, slots=True)
class _Plan:
    """What a direct route's handler does, worked out once from the endpoint's signature."""

    endpoint: Callable[..., Any]
    dependant: Dependant
    caller: str  # the parameter that receives the authenticated caller
    roles: tuple[Role, ...]  # the roles that `deps.require` admits there
    embed_body_fields: bool
    strict_content_type: bool


class DirectRoute(APIRoute):
    """An `APIRoute` whose handler skips dependency solving (see the module's docstring)."""

    def get_route_handler(self) -> Handler:
        plan = _plan(self)
        if plan is None:
            return super().get_route_handler()
        return _handler(plan)


def _plan(route: APIRoute) -> _Plan | None:
    dependant = route.dependant
    simple = not (
        dependant.path_params
        or dependant.query_params
        or dependant.cookie_params
        or dependant.background_tasks_param_name
        or dependant.response_param_name
        or dependant.security_scopes_param_name
        or dependant.http_connection_param_name
        or dependant.websocket_param_name
    )
    if not simple or len(dependant.dependencies) != 1 or not dependant.request_param_name:
        return None
    caller = dependant.dependencies[0]
    roles = deps.roles_of(caller.call)
    if roles is None or caller.name is None:
        return None
    try:
        returns = get_type_hints(route.endpoint).get("return")
    except NameError:
        return None
    if not (isinstance(returns, type) and issubclass(returns, Response)):
        return None  # FastAPI serializes what the endpoint returns
    return _Plan(
        route.endpoint,
        dependant,
        caller.name,
        roles,
        route._embed_body_fields,
        _strict_content_type(route),
    )


def _strict_content_type(route: APIRoute) -> bool:
    """Whether a body without a content type stays unparsed (FastAPI's `strict_content_type`,
    on by default where it exists; older FastAPI parses such a body as JSON)."""
    strict = getattr(route, "strict_content_type", False)
    return bool(strict.value if isinstance(strict, DefaultPlaceholder) else strict)


def _handler(plan: _Plan) -> Handler:
    dependant = plan.dependant
    request_name = dependant.request_param_name
    assert request_name is not None  # checked by _plan

    async def app(request: Request) -> Response:
        body = PydanticUndefined
        if dependant.body_params:
            body = await _body(request, plan.strict_content_type)
        await deps.reject_unknown_query(request)
        credentials = await deps.bearer(request)
        values, errors = request_params_to_args(dependant.header_params, request.headers)
        if dependant.body_params:
            body_values, body_errors = await request_body_to_args(
                dependant.body_params, body, plan.embed_body_fields
            )
            values.update(body_values)
            errors.extend(body_errors)
        values[request_name] = request

        def run() -> Response:
            # In the worker thread: the key's read never holds up the event loop. A refused
            # key (401, 403) is answered before invalid input (422), as FastAPI orders them.
            values[plan.caller] = deps.authenticated(request, credentials, plan.roles)
            if errors:
                raise RequestValidationError(errors, body=body)
            response = plan.endpoint(**values)
            assert isinstance(response, Response), "a direct route builds its own response"
            return response

        return await run_in_threadpool(run)

    return app


async def _body(request: Request, strict_content_type: bool) -> Any:
    """The body as FastAPI reads it: JSON for a JSON content type, else the bytes (which fail
    validation); undefined when empty (a missing body). Bad JSON is FastAPI's `json_invalid`
    error."""
    try:
        raw = await request.body()
    except HTTPException:
        raise
    except Exception as error:
        raise HTTPException(400, "There was an error parsing the body") from error
    if not raw:
        return PydanticUndefined
    content_type = request.headers.get("content-type")
    if not (_is_json(content_type) if content_type else not strict_content_type):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        invalid = {
            "type": "json_invalid",
            "loc": ("body", error.pos),
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": error.msg},
        }
        raise RequestValidationError([invalid], body=error.doc) from error
    except UnicodeDecodeError as error:
        raise HTTPException(400, "There was an error parsing the body") from error


def _is_json(content_type: str) -> bool:
    """`application/json` or `application/*+json`, read as `email.message` reads the header
    (parameters dropped, case ignored, anything without exactly one `/` is `text/plain`)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind.count("/") != 1:
        return False
    main, sub = kind.split("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))
