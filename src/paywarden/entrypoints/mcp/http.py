"""The MCP server over streamable HTTP, with one agent API key per request.

`McpHttpApp(warden)` is an ASGI app. Every HTTP request must carry `Authorization: Bearer
<agent key>`: the key is checked on each request (a revoked key stops working at once) and the
tools act as the key's agent. A missing or unknown key gets 401, an operator or admin key 403,
before any MCP processing. A session opened with one key answers only to that key (the SDK
binds each session to the credential that created it).

The SDK's session manager needs a running task group: serve the app on its own (it answers the
ASGI lifespan protocol), or, mounted inside another app, enter `app.lifespan()` in the host
app's lifespan. The app ignores its path, so it can be routed at `/mcp` directly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar

import anyio.to_thread
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import Receive, Scope, Send

from paywarden.errors import AuthenticationError, PaywardenError
from paywarden.keys import Principal

from .agent_tools import WardenSource, caller_of, resolve
from .server import build_server

__all__ = ["McpHttpApp", "request_principal"]

_PRINCIPAL: ContextVar[Principal | None] = ContextVar("paywarden_mcp_principal", default=None)


def request_principal() -> Principal:
    """The principal of the HTTP request being served (the tools' identity source)."""
    principal = _PRINCIPAL.get()
    if principal is None:
        raise AuthenticationError("no API key on this request")
    return principal


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            text = value.decode("latin-1")
            scheme, _, token = text.partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="paywarden"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class McpHttpApp:
    """ASGI app serving paywarden's MCP tools over streamable HTTP, authenticated per request.

    `warden` is a Warden, or a function returning it at request time (such as
    `lambda: app.state.warden` in a host app that opens its Warden in its lifespan).

    `host` is the host the server is reached at: for 127.0.0.1, localhost and ::1 the SDK's
    DNS-rebinding protection is on (only those Host headers are accepted); pass
    `transport_security` to choose the allowed hosts and origins yourself.
    """

    def __init__(
        self,
        warden: WardenSource,
        *,
        host: str = "127.0.0.1",
        json_response: bool = False,
        stateless: bool = False,
        allowed_hosts: Sequence[str] | None = None,
    ) -> None:
        self._warden = warden
        self.server = build_server(warden, request_principal)
        security = None
        if allowed_hosts is not None:
            security = TransportSecuritySettings(
                enable_dns_rebinding_protection=True,
                allowed_hosts=list(allowed_hosts),
                allowed_origins=[f"http://{h}" for h in allowed_hosts]
                + [f"https://{h}" for h in allowed_hosts],
            )
        # Builds (and keeps) the SDK's session manager; its Starlette wrapper is not used.
        self.server.streamable_http_app(
            json_response=json_response,
            stateless_http=stateless,
            host=host,
            transport_security=security,
        )

    @property
    def session_manager(self) -> StreamableHTTPSessionManager:
        return self.server.session_manager

    def lifespan(self) -> AbstractAsyncContextManager[None]:
        """Run the session manager; enter once, for the life of the host app."""
        return self.session_manager.run()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        principal = await self._authenticate(scope, send)
        if principal is None:
            return
        token = AccessToken(token=principal.key_id, client_id=principal.key_id, scopes=["agent"])
        scope = {**scope, "user": AuthenticatedUser(token)}  # binds the session to this key
        reset = _PRINCIPAL.set(principal)
        try:
            await self.session_manager.handle_request(scope, receive, send)
        finally:
            _PRINCIPAL.reset(reset)

    async def _authenticate(self, scope: Scope, send: Send) -> Principal | None:
        secret = _bearer(scope)
        if secret is None:
            await _refuse(send, 401, "unauthenticated", "send `Authorization: Bearer <agent key>`")
            return None
        try:
            warden = resolve(self._warden)
            principal = await anyio.to_thread.run_sync(warden.authenticate, secret)
            caller_of(principal)
        except AuthenticationError as error:
            await _refuse(send, 401, error.code, str(error))
            return None
        except PaywardenError as error:
            await _refuse(send, 403 if error.code == "forbidden" else 503, error.code, str(error))
            return None
        return principal

    async def _serve_lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        phase = "startup"
        try:
            async with self.lifespan():
                await send({"type": "lifespan.startup.complete"})
                phase = "shutdown"
                await receive()  # lifespan.shutdown
        except Exception as error:  # reported to the server, not raised (the ASGI spec)
            await send({"type": f"lifespan.{phase}.failed", "message": str(error)})
            return
        await send({"type": "lifespan.shutdown.complete"})
