"""The ASGI guard in front of every route: unambiguous framing, overload, body size and deadline.

One middleware (`HttpGuard`), so each request pays for one wrapper around `receive`, not three.
In order, before any route runs:

1. Framing. A request whose body length could be read two ways (request smuggling) is refused
   before anything reads it: `Content-Length` together with `Transfer-Encoding`, more than one
   `Content-Length` or `Transfer-Encoding` header, a `Transfer-Encoding` other than `chunked`,
   or a `Content-Length` that is not a plain decimal number. The answer is 400 problem+json with
   `Connection: close`, so nothing after the ambiguous body is read as another request.
2. Overload. A request that would write (any method but GET, HEAD and OPTIONS, under `/v1/`)
   while the store's queue is at `store_backlog_max` or more is answered 503 `store_overloaded`
   with `Retry-After` before its body is read: it is not taken, so no decision is made and
   nothing is audited. Each such answer is counted (`GET /readyz` shows the count).
3. Size. A body above `body_bytes_max` gets 413: a declared `Content-Length` before reading
   anything, a chunked body as soon as it grows past the limit.
4. Deadline. A request's whole body must arrive within `body_timeout_seconds` of the request
   reaching the app; a client that sends half a body and stops gets 408 with
   `Connection: close`.

All of it works under any ASGI server; `paywarden serve` adds the header deadline in the server
itself (see server.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio.to_thread
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paywarden.entrypoints.rest import overload, problems

CLOSE_HEADERS = {"Connection": "close"}
# The paths whose body may be larger (`policy_body_bytes_max`): the policy uploads (REST, the
# shadow policy, the console's form).
POLICY_PATHS = frozenset(("/v1/policy", "/v1/policy/shadow", "/console/policy"))


def framing_problem(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Why these request headers do not frame the body unambiguously, or None."""
    lengths = [value for name, value in headers if name.lower() == b"content-length"]
    codings = [value for name, value in headers if name.lower() == b"transfer-encoding"]
    if lengths and codings:
        return "a request may not carry both Content-Length and Transfer-Encoding"
    if len(lengths) > 1:
        return "a request may carry one Content-Length header"
    if len(codings) > 1:
        return "a request may carry one Transfer-Encoding header"
    if codings and codings[0].strip().lower() != b"chunked":
        return "the only Transfer-Encoding accepted is `chunked`"
    if lengths and not (lengths[0].isascii() and lengths[0].strip().isdigit()):
        return "Content-Length must be a decimal number"
    return None


class HttpGuard:
    """Framing, overload, body size and body deadline (see the module's docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        body_bytes_max: int,
        policy_body_bytes_max: int,
        body_timeout_seconds: float,
    ) -> None:
        self.app = app
        self.body_bytes_max = body_bytes_max
        self.policy_body_bytes_max = policy_body_bytes_max
        self.body_timeout_seconds = body_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        problem = framing_problem(headers)
        if problem is not None:
            await _answer(scope, send, 400, "bad_request", problem, CLOSE_HEADERS)
            return
        refusal = overload.refusal(scope)
        if refusal is not None:
            await _answer(scope, send, 503, "store_overloaded", refusal, overload.HEADERS)
            return
        path = scope["path"]
        limit = self.policy_body_bytes_max if path in POLICY_PATHS else self.body_bytes_max
        for name, value in headers:
            if name.lower() == b"content-length" and int(value) > limit:
                await _refuse_declared(scope, send, limit, value.decode("latin-1"))
                return
        await self.app(scope, self._guarded(receive, limit), send)

    def _guarded(self, receive: Receive, limit: int) -> Receive:
        """`receive`, with the body's size limit and deadline, until the body is complete."""
        deadline = asyncio.get_running_loop().time() + self.body_timeout_seconds
        received = 0
        complete = False

        async def guarded() -> Message:
            nonlocal received, complete
            if complete:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                detail = f"the request body did not arrive within {self.body_timeout_seconds} s"
                raise HTTPException(408, detail, headers=CLOSE_HEADERS) from None
            if message["type"] != "http.request":
                complete = True
                return message
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413, f"bodies are limited to {limit} bytes")
            complete = not message.get("more_body", False)
            return message

        return guarded


async def _answer(
    scope: Scope, send: Send, status: int, code: str, detail: str, headers: dict[str, str]
) -> None:
    response = problems.problem_response(
        status, code, detail, str(scope.get("path", "")), headers=headers
    )
    await response(scope, _no_body, send)


async def _refuse_declared(scope: Scope, send: Send, limit: int, declared: str) -> None:
    """413 for a declared `Content-Length` above the limit, before reading anything."""
    detail = f"bodies are limited to {limit} bytes"
    # A payment request too large to read is still a refused request: audited.
    decision_id = await anyio.to_thread.run_sync(
        problems.audit_refused_body,
        Request(scope),
        {"content_length": declared[:32]},
        detail,
    )
    extra: dict[str, Any] = {} if decision_id is None else {"decision_id": decision_id}
    response = problems.problem_response(
        413, "body_too_large", detail, str(scope.get("path", "")), **extra
    )
    await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}
