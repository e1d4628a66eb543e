"""The console's sign-in sessions: server-side, revocable, with an idle and an absolute expiry.

The browser holds only a random session id (in an `HttpOnly`, `SameSite=Strict` cookie); the
API key it signed in with stays here, in this process's memory, and is authenticated again on
every request, so a revoked key ends its sessions at once. Each session has its own CSRF token.
Sessions live in one process: a gateway with several workers signs people in per worker.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# More sessions than this are not kept: the oldest is dropped (a flood of sign-ins cannot grow
# the process without bound).
SESSIONS_MAX = 10_000


@dataclass(slots=True)
class ConsoleSession:
    """One signed-in browser. `secret` is the API key; it never leaves the server."""

    session_id: str
    secret: str
    csrf: str
    created: float
    seen: float
    flashes: list[tuple[str, str]] = field(default_factory=list)

    def flash(self, message: str, kind: str = "ok") -> None:
        """A message shown once, on the next page (after a form post's redirect); `kind` is
        `ok` or `error`."""
        self.flashes.append((kind, message))

    def take_flashes(self) -> list[tuple[str, str]]:
        taken, self.flashes = self.flashes, []
        return taken


class SessionStore:
    """The sessions of this process, under a lock (routes run in worker threads)."""

    def __init__(
        self,
        idle_seconds: float,
        max_seconds: float,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.max_seconds = max_seconds
        self._now = now
        self._lock = threading.Lock()
        self._sessions: dict[str, ConsoleSession] = {}

    def create(self, secret: str) -> ConsoleSession:
        now = self._now()
        session = ConsoleSession(
            secrets.token_urlsafe(32), secret, secrets.token_urlsafe(32), now, now
        )
        with self._lock:
            while len(self._sessions) >= SESSIONS_MAX:
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[session.session_id] = session
        return session

    def get(self, session_id: str | None) -> ConsoleSession | None:
        """The live session with this id (its idle clock restarted), else None; an expired one
        is dropped."""
        if not session_id:
            return None
        now = self._now()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            idle = now - session.seen > self.idle_seconds
            if idle or now - session.created > self.max_seconds:
                del self._sessions[session_id]
                return None
            session.seen = now
            return session

    def revoke(self, session_id: str) -> bool:
        with self._lock:
            return self._sessions.pop(session_id, None) is not None

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)
