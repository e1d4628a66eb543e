"""ASGI guards in front of every route: unambiguous message framing and a body deadline.

`FramingGuard` refuses, before anything reads the request, a request whose body length could be
read two ways (request smuggling): `Content-Length` together with `Transfer-Encoding`, more than
one `Content-Length` or `Transfer-Encoding` header, a `Transfer-Encoding` other than `chunked`,
or a `Content-Length` that is not a plain decimal number. The answer is 400 problem+json with
`Connection: close`, so nothing after the ambiguous body is read as another request.

`BodyDeadline` gives a request's whole body `body_timeout_seconds` from the moment its headers
were read; a client that sends half a body and stops gets 408 with `Connection: close`.

Both work under any ASGI server; `paywarden serve` adds the header deadline in the server
itself (see server.py).
"""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paywarden.entrypoints.rest import problems

CLOSE_HEADERS = {"Connection": "close"}


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


class FramingGuard:
    """Refuse requests with ambiguous framing (400, connection closed) before any reading."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = framing_problem(list(scope["headers"]))
        if problem is None:
            await self.app(scope, receive, send)
            return
        response = problems.problem_response(
            400, "bad_request", problem, str(scope.get("path", "")), headers=CLOSE_HEADERS
        )
        await response(scope, _no_body, send)


class BodyDeadline:
    """Answer 408 (connection closed) when a request's body is not complete within
    `body_timeout_seconds` of the request reaching the app. Once the body is complete, reads
    pass through untouched (a streaming response may wait for the client to disconnect)."""

    def __init__(self, app: ASGIApp, body_timeout_seconds: float) -> None:
        self.app = app
        self.body_timeout_seconds = body_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_seconds
        complete = False

        async def timed() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            remaining = deadline - loop.time()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(remaining, 0.0))
            except TimeoutError:
                detail = f"the request body did not arrive within {self.body_timeout_seconds} s"
                raise HTTPException(408, detail, headers=CLOSE_HEADERS) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        await self.app(scope, timed, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}
