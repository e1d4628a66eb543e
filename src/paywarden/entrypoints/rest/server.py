"""How `paywarden serve` runs uvicorn: the HTTP protocol, its limits and the access log.

uvicorn's h11 protocol has no deadline for a request's line and headers: a client that opens a
connection and sends nothing, or half a request head, holds the connection for ever (and with
`limit_concurrency`, enough such clients turn every other request into a 503).
`GuardedH11Protocol` adds that deadline: the head must be complete within
`header_timeout_seconds` of the connection opening, or of the first byte after a response;
otherwise the connection is closed, with a 408 when part of a head had arrived. Between
requests uvicorn's keep-alive timeout closes a silent connection; the body deadline is an
ASGI guard (http_guard.py), so it holds under any server.

`paywarden serve` always uses this protocol (never httptools, even when it is installed), so the
limits are the same everywhere. It runs on uvloop (part of the `server` extra; uvicorn's `auto`
loop falls back to asyncio where uvloop is not installed, e.g. on Windows), whose event loop
and transports cost less CPU per request than asyncio's (see docs/benchmarks.md). The access
log never shows a query string: queries may carry values a client did not mean to log.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import logging
import socket
from typing import Any, cast

from uvicorn.config import LOGGING_CONFIG, Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from paywarden.entrypoints.rest import problems
from paywarden.entrypoints.rest.logs import JsonFormatter
from paywarden.entrypoints.rest.settings import Settings

log = logging.getLogger("paywarden.rest")


def _timeout_response(header_timeout_seconds: float) -> bytes:
    detail = f"the request line and headers did not arrive within {header_timeout_seconds} s"
    body = json.dumps(
        problems.problem_body(408, "request_timeout", detail, ""), separators=(",", ":")
    ).encode("utf-8")
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        f"content-type: {problems.PROBLEM_MEDIA_TYPE}\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's line and headers."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        header_timeout_seconds: float = 10.0,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.header_timeout_seconds = header_timeout_seconds
        self._head_deadline: asyncio.TimerHandle | None = None
        self._head_started = False  # bytes of a request head arrived before the deadline

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete:  # waiting for a request head
            if self._head_deadline is None:
                self._arm_head_deadline()
            self._head_started = True
        super().data_received(data)
        if self.cycle is not cycle:  # a request head was read: it is the app's turn
            self._disarm_head_deadline()

    def on_response_complete(self) -> None:
        cycle = self.cycle
        super().on_response_complete()
        if self.cycle is not cycle:  # a pipelined request was already complete
            self._disarm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(
            self.header_timeout_seconds, self._head_timed_out
        )

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None
        self._head_started = False

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being served; its body has its own deadline
        if self._head_started:
            self.transport.write(_timeout_response(self.header_timeout_seconds))
        log.debug("closed a connection whose request head did not arrive in time")
        self.transport.close()


class QueryFreeAccessLog(logging.Filter):
    """Drop the query string from uvicorn's access log records (`GET /path?key=...`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


# One line format for uvicorn's logs and paywarden's own (`paywarden serve`).
LOG_FORMAT = "%(levelname)s: %(message)s"
ACCESS_LOG_FORMAT = '%(levelname)s: %(client_addr)s - "%(request_line)s" %(status_code)s'


def log_config(log_format: str = "text") -> dict[str, Any]:
    """uvicorn's logging configuration: the query string filtered from the access log, and
    uvicorn's lines, its access log and paywarden's loggers in one format: `LOG_FORMAT` text,
    or with `log_format="json"` one JSON object per line (logs.py)."""
    config = copy.deepcopy(LOGGING_CONFIG)
    if log_format == "json":
        json_formatter = {"()": f"{JsonFormatter.__module__}.{JsonFormatter.__qualname__}"}
        config["formatters"]["default"] = json_formatter
        config["formatters"]["access"] = dict(json_formatter)
    else:
        config["formatters"]["default"] = {"format": LOG_FORMAT}
        config["formatters"]["access"] = {
            "()": "uvicorn.logging.AccessFormatter",
            "fmt": ACCESS_LOG_FORMAT,
            "use_colors": False,
        }
    # paywarden's records go through uvicorn's handler (stderr), at the root logger's level.
    config["loggers"]["paywarden"] = {"handlers": ["default"], "propagate": False}
    config.setdefault("filters", {})["query_free"] = {
        "()": f"{QueryFreeAccessLog.__module__}.{QueryFreeAccessLog.__qualname__}"
    }
    config["loggers"]["uvicorn.access"]["filters"] = ["query_free"]
    return config


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of `uvicorn.run` shared by one process and several workers."""
    protocol = functools.partial(
        GuardedH11Protocol, header_timeout_seconds=settings.header_timeout_seconds
    )
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": settings.access_log,
        "log_config": log_config(settings.log_format),
        # uvicorn accepts any protocol factory here; its stub names only classes.
        "http": cast(type[asyncio.Protocol], protocol),
        "loop": "auto",  # uvloop when installed (the `server` extra), else asyncio
        "ws": "none",  # no route speaks WebSocket: an upgrade request is served as plain HTTP
        "limit_concurrency": settings.connections_max,
        "timeout_keep_alive": settings.keep_alive_timeout_seconds,
        # X-Forwarded-* count only from the `trusted_proxies` setting (uvicorn would otherwise
        # trust 127.0.0.1): the console's origin check and cookie flags depend on them.
        "proxy_headers": bool(settings.trusted_proxies.strip()),
        "forwarded_allow_ips": settings.trusted_proxies.strip() or None,
    }


def bind_listener(host: str, port: int) -> socket.socket:
    """The gateway's listening socket, bound and listening before anything reports success.

    Port 0 lets the system pick a free port (read it from `getsockname()`). Raises `OSError`
    when the address is in use or cannot be bound; nothing is left open then.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        # As uvicorn binds: a port left in TIME_WAIT by a previous run is reusable at once,
        # while one another process listens on is still refused (on Linux and macOS).
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(2048)
    except OSError:
        listener.close()
        raise
    listener.set_inheritable(True)  # worker processes serve the same socket
    return listener
