"""The MCP server over streamable HTTP, with one agent API key per request.

`McpHttpApp(warden)` is an ASGI app. Every HTTP request must carry `Authorization: Bearer
<agent key>`: the key is checked on each request (a revoked key stops working at once) and the
tools act as the key's agent. A missing or unknown key gets 401, an operator or admin key 403,
before any MCP processing. A session opened with one key answers only to that key (the SDK
binds each session to the credential that created it).

Sessions are bounded per key: each API key holds at most `sessions_per_key_max` open sessions
(default 16). A request that would open one more gets HTTP 429 with a JSON-RPC error, before
the SDK creates anything; closing a session (HTTP DELETE) or its idle expiry frees the slot. A
session with no request in flight for `session_idle_seconds` (default 30 minutes) is closed by
the SDK. Openings of one key are admitted one at a time, so the bound holds under concurrency;
other keys are not held up. Stateless mode (several workers) keeps no sessions.

The SDK's session manager needs a running task group: serve the app on its own (it answers the
ASGI lifespan protocol), or, mounted inside another app, enter `app.lifespan()` in the host
app's lifespan. The app ignores its path, so it can be routed at `/mcp` directly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from typing import Final

import anyio
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import Receive, Scope, Send

from paywarden.errors import AuthenticationError, InvalidInputError, PaywardenError
from paywarden.keys import Principal

from .agent_tools import WardenSource, caller_of, resolve
from .server import build_server

__all__ = ["McpHttpApp", "request_principal"]

_PRINCIPAL: ContextVar[Principal | None] = ContextVar("paywarden_mcp_principal", default=None)

# Enough for an agent with a few parallel clients and reconnects; few enough that one key
# cannot fill the server's session table (the SDK's own bound is 10 000 for all keys).
SESSIONS_PER_KEY_MAX_DEFAULT: Final = 16
# The SDK's default: a session with no request in flight this long is closed.
SESSION_IDLE_SECONDS_DEFAULT: Final = 1800.0
# JSON-RPC's "server error" range: the request was understood but refused by the server.
_SERVER_ERROR: Final = -32000


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


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def _refuse_jsonrpc(send: Send, status: int, code: str, message: str) -> None:
    """A JSON-RPC error (no request id) that MCP clients show to the agent as it is."""
    error = {"code": _SERVER_ERROR, "message": message, "data": {"code": code}}
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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

    `sessions_per_key_max` bounds the open sessions of each API key, and
    `session_idle_seconds` closes a session idle that long; InvalidInputError for a bound
    below 1 or a time that is not a finite number of seconds above 0.
    """

    def __init__(
        self,
        warden: WardenSource,
        *,
        host: str = "127.0.0.1",
        json_response: bool = False,
        stateless: bool = False,
        allowed_hosts: Sequence[str] | None = None,
        sessions_per_key_max: int = SESSIONS_PER_KEY_MAX_DEFAULT,
        session_idle_seconds: float = SESSION_IDLE_SECONDS_DEFAULT,
    ) -> None:
        if type(sessions_per_key_max) is not int or sessions_per_key_max < 1:
            raise InvalidInputError("`sessions_per_key_max` must be an integer of at least 1")
        if (
            isinstance(session_idle_seconds, bool)
            or not isinstance(session_idle_seconds, int | float)
            or not 0 < session_idle_seconds < math.inf
        ):
            raise InvalidInputError("`session_idle_seconds` must be a finite number above 0")
        self._warden = warden
        self._stateless = stateless
        self.sessions_per_key_max = sessions_per_key_max
        # One lock per key: the openings of one key are admitted one at a time.
        self._opening: dict[str, anyio.Lock] = {}
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
            session_idle_timeout=float(session_idle_seconds),
        )
        for record in ("_session_owners", "_server_instances"):
            # The per-key bound reads the SDK's records of its sessions: refuse to run without
            # them rather than serve with no bound.
            if not isinstance(getattr(self.session_manager, record, None), dict):
                raise RuntimeError(f"this mcp SDK has no `{record}`; cannot bound sessions")

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
            if self._opens_session(scope):
                await self._open_session(principal.key_id, scope, receive, send)
            else:
                await self.session_manager.handle_request(scope, receive, send)
        finally:
            _PRINCIPAL.reset(reset)

    def open_sessions(self, key_id: str) -> int:
        """How many sessions the key holds open now. A session ended by DELETE is terminated
        before the answer is sent, and forgotten just after: it no longer counts."""
        manager = self.session_manager
        # The SDK's records: session id -> the credential that opened it, and -> its transport.
        owners, transports = manager._session_owners, manager._server_instances
        return sum(
            1
            for session_id, owner in owners.items()
            if owner["client_id"] == key_id
            and (transport := transports.get(session_id)) is not None
            and not transport.is_terminated
        )

    def _opens_session(self, scope: Scope) -> bool:
        """Whether the SDK would open a session for this request: stateful mode, no session
        id, and a handshake-era protocol (later protocol versions keep no session)."""
        if self._stateless or _header(scope, MCP_SESSION_ID_HEADER.encode()) is not None:
            return False
        version = _header(scope, MCP_PROTOCOL_VERSION_HEADER.encode())
        return version is None or version in HANDSHAKE_PROTOCOL_VERSIONS

    async def _open_session(self, key_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        """Admit one opening of the key at a time: the count is exact while its lock is held,
        because the SDK registers (or drops) the session before the opening request ends."""
        lock = self._opening.setdefault(key_id, anyio.Lock())
        async with lock:
            bound = self.sessions_per_key_max
            if self.open_sessions(key_id) >= bound:
                await _refuse_jsonrpc(
                    send,
                    429,
                    "too_many_sessions",
                    f"this API key already holds the most open MCP sessions allowed ({bound}): "
                    "end one (HTTP DELETE with its Mcp-Session-Id) or wait until an idle one "
                    "expires",
                )
                return
            await self.session_manager.handle_request(scope, receive, send)

    async def _authenticate(self, scope: Scope, send: Send) -> Principal | None:
        secret = _bearer(scope)
        if secret is None:
            await _refuse(send, 401, "unauthenticated", "send `Authorization: Bearer <agent key>`")
            return None
        try:
            # On the event loop, as the REST gateway does: one primary-key read from the WAL
            # snapshot and one HMAC cost less than a hop to a worker thread and back.
            principal = resolve(self._warden).authenticate(secret)
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
