"""Webhook delivery of approval events from the store's outbox.

Events are written to the outbox in the same transaction as the approval change they report,
so none is lost and none is sent for a change that rolled back. A dispatcher thread delivers
them later: a POST of the JSON body (it carries a Slack-compatible `text`), signed with
HMAC-SHA256 over `timestamp.body` in the `X-Paywarden-Signature: t=<unix>,v1=<hex>` header,
retried with exponential backoff and jitter up to a bounded number of attempts. Delivery never
blocks or changes a decision.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from paywarden import limits
from paywarden.clock import Clock, to_us
from paywarden.ports import OutboxRow, Store

_log = logging.getLogger("paywarden.webhooks")


@dataclass(frozen=True, slots=True)
class WebhookOptions:
    url: str
    secret: str
    attempts_max: int = limits.webhook_attempts_max
    backoff_seconds: float = limits.webhook_backoff_seconds
    timeout_seconds: float = limits.webhook_timeout_seconds
    poll_seconds: float = 0.2


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance_seconds: float | None = None,
    now: float | None = None,
) -> bool:
    """For receivers: check an `X-Paywarden-Signature` header in constant time.

    With `tolerance_seconds` (300 is a good value), a signature whose timestamp is further than
    that from `now` (default: this machine's clock) is refused too, so a captured request
    cannot be replayed later.
    """
    if not header.isascii():
        return False  # compare_digest raises on non-ASCII text; no valid header has any
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        expected = signature(secret, timestamp, body)
    except (KeyError, ValueError):
        return False
    if not hmac.compare_digest(expected, header):
        return False
    if tolerance_seconds is None:
        return True
    current = time.time() if now is None else now
    return abs(current - timestamp) <= tolerance_seconds


def _post(options: WebhookOptions, row: OutboxRow) -> str | None:
    """Deliver one event; None on success (any 2xx), else a short reason."""
    body = row.body.encode("utf-8")
    request = urllib.request.Request(
        options.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "paywarden",
            "X-Paywarden-Event": row.kind,
            "X-Paywarden-Event-Id": str(row.event_id),
            "X-Paywarden-Signature": signature(options.secret, int(time.time()), body),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=options.timeout_seconds) as response:
            status = int(response.status)
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}"
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as error:
        return f"{type(error).__name__}: {error}"
    return None if 200 <= status < 300 else f"HTTP {status}"


def deliver_due(
    store: Store,
    options: WebhookOptions,
    clock: Clock,
    batch_max: int = 50,
    stop: threading.Event | None = None,
) -> int:
    """One pass over due events; returns how many were delivered. Ends early once `stop` is
    set, so closing the Warden never waits for (or races) a backlog to a slow receiver."""
    now_us = to_us(clock.now())
    with store.read() as tx:
        due = tx.outbox_due(now_us, batch_max)
    delivered = 0
    for row in due:
        if stop is not None and stop.is_set():
            break
        error = _post(options, row)
        attempts = row.attempts + 1
        if error is None:
            delivered += 1
            next_us = now_us
        elif attempts >= options.attempts_max:
            next_us = 2**62  # given up; the error stays on the row for operators to see
        else:
            delay = min(
                options.backoff_seconds * 2 ** (attempts - 1), limits.webhook_backoff_seconds_max
            )
            next_us = now_us + int(delay * random.uniform(0.5, 1.0) * 1_000_000)
        with store.write() as tx:
            tx.outbox_mark(row.event_id, now_us if error is None else None, next_us, error)
    return delivered


class WebhookDispatcher:
    """A daemon thread that delivers due events until stopped."""

    def __init__(self, store: Store, options: WebhookOptions, clock: Clock) -> None:
        self._store, self._options, self._clock = store, options, clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="paywarden-webhooks", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                deliver_due(self._store, self._options, self._clock, stop=self._stop)
            except Exception:  # delivery problems are logged; they never touch decisions
                _log.exception("webhook delivery pass failed; retrying")
            self._stop.wait(self._options.poll_seconds)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
