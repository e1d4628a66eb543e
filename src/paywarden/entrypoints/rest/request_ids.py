"""`X-Request-Id`: each request's id, bound for its log lines and echoed in its response.

A client's `X-Request-Id` is kept when it is sane (1 to 64 of `A-Z a-z 0-9 . _ : -`, so it
cannot forge log fields or carry a secret-sized blob); otherwise, or when absent, the gateway
makes one (`req_` and 24 hex digits). The id opens the request's context in `paywarden.log_context`
for every log record made while the request runs (uvicorn's access line included: it also
carries the agent and decision id the request's decision noted), and is sent back in the
response's `X-Request-Id` header.
"""

from __future__ import annotations

import re
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paywarden import log_context

HEADER = b"x-request-id"
_SANE = re.compile(rb"[A-Za-z0-9._:-]{1,64}")


def request_id_of(scope: Scope) -> str:
    """The request's id: the client's when sane, else a new one."""
    for name, value in scope.get("headers", ()):
        if name == HEADER and _SANE.fullmatch(value):
            return bytes(value).decode("ascii")
    return f"req_{secrets.token_hex(12)}"


class RequestIds:
    """ASGI middleware: bind the request id and echo it in the response headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != HEADER
                ]
                headers.append((HEADER, request_id.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        with log_context.request(request_id):
            await self.app(scope, receive, send_with_id)
