"""Overload: refuse a write with 503 before taking it when the store's queue is too long.

The queue is what stands between a request and the store: the writes queued for the store
(`Warden.backlog()`: this process's queue, plus the other processes waiting for their turn on
the same file) and this process's requests waiting for a worker thread to run their route
(each of them is a write about to join the queue). At `store_backlog_max` or more, a request
that would write is answered 503 `store_overloaded` with `Retry-After` before its body is read
(http_guard.py): it was not taken, so no decision is made and nothing is audited, and the
client may retry it as it is. A request that was taken and then meets a busy store is still
decided: denied `store_busy`, audited.

Reads (GET, HEAD, OPTIONS) and paths outside `/v1/` are never refused here. The refusals of
each process are counted and shown by `GET /readyz` (`overload_refusals`).
"""

from __future__ import annotations

import anyio.to_thread
from starlette.types import Scope

from paywarden.warden import Warden

HEADERS = {"Retry-After": "1"}
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class OverloadGate:
    """One app's threshold (0: never refuse) and its count of refusals."""

    def __init__(self, backlog_max: int) -> None:
        self.backlog_max = backlog_max
        self.refusals = 0

    def backlog(self, warden: Warden) -> int:
        """Writes queued for the store plus requests waiting for a worker thread."""
        try:
            queued = warden.backlog()
        except Exception:  # never a 500 from this check: once taken, the store's own failure
            queued = 0  # decides the request (denied `store_unavailable`, audited)
        waiting = anyio.to_thread.current_default_thread_limiter().statistics().tasks_waiting
        return queued + waiting


def refusal(scope: Scope) -> str | None:
    """Why this request is refused for overload (and counted), or None to take it."""
    if scope["method"] in READ_METHODS or not scope["path"].startswith("/v1/"):
        return None
    state = scope["app"].state
    gate: OverloadGate | None = getattr(state, "overload", None)
    warden: Warden | None = getattr(state, "warden", None)
    if gate is None or warden is None or gate.backlog_max == 0:
        return None
    backlog = gate.backlog(warden)
    if backlog < gate.backlog_max:
        return None
    gate.refusals += 1
    return (
        f"the store's queue holds {backlog} writes (the limit is {gate.backlog_max}); "
        "nothing was done, retry later"
    )
