"""Webhook delivery of approval events from the store's outbox.

Events are written to the outbox in the same transaction as the approval change they report,
so none is lost and none is sent for a change that rolled back. A dispatcher thread delivers
them later: a POST of the JSON body (it carries a Slack-compatible `text`), signed with
HMAC-SHA256 over `timestamp.body` in the `X-Paywarden-Signature: t=<unix>,v1=<hex>` header,
retried with exponential backoff and jitter up to a bounded number of attempts. A failure
retrying cannot fix (a URL that cannot be sent) ends the event after one attempt; redirects are
not followed. Delivery never blocks or changes a decision.
"""

from __future__ import annotations

import http.client
import logging
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from paywarden import limits
from paywarden.clock import Clock, to_us
from paywarden.ports import OutboxRow, Store
from paywarden.slack import slack_body
from paywarden.webhooks import WebhookOptions, signature, url_problem, verify_signature

__all__ = [
    "WebhookDispatcher",
    "WebhookNotifier",
    "WebhookOptions",
    "deliver_due",
    "signature",
    "url_problem",
    "verify_signature",
]

_log = logging.getLogger("paywarden.webhooks")


# The next attempt of an event given up on: never (its error stays on the row).
GIVEN_UP_US = 2**62
# The longest wait between two delivery passes that failed as a whole (the store was down).
PASS_RETRY_SECONDS_MAX = 60.0


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an attempt failed; a permanent failure is not retried."""

    reason: str
    permanent: bool = False


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is a failed attempt: the event is not re-sent (as a GET, or elsewhere)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def _post(options: WebhookOptions, row: OutboxRow) -> Failure | None:
    """Deliver one event; None on success (any 2xx), else why not."""
    problem = url_problem(options.url)  # options from before validation, or changed since
    if problem is not None:
        return Failure(problem, permanent=True)
    text = slack_body(row.body) if options.format == "slack" else row.body
    body = text.encode("utf-8")  # what is signed is what is sent
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
        with _OPENER.open(request, timeout=options.timeout_seconds) as response:
            status = int(response.status)
    except urllib.error.HTTPError as error:
        return Failure(f"HTTP {error.code}")
    except ValueError as error:  # the URL cannot be sent at all: retrying cannot help
        return Failure(f"{type(error).__name__}: {error}", permanent=True)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        return Failure(f"{type(error).__name__}: {error}")
    return None if 200 <= status < 300 else Failure(f"HTTP {status}")


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
        due = tx.outbox.list_due(now_us, batch_max)
    delivered = 0
    # A claim holds an event for one attempt (the request's timeout and a margin), so two
    # processes or hosts never post the same event at once; a crash mid-attempt leaves it due
    # again after the lease (at least once).
    lease_us = int((options.timeout_seconds * 2 + 30) * 1_000_000)
    for row in due:
        if stop is not None and stop.is_set():
            break
        claimed_us = to_us(clock.now())
        with store.write() as tx:
            if not tx.outbox.claim(row.event_id, claimed_us, claimed_us + lease_us):
                continue  # delivered or claimed by another process meanwhile
        failure = _post(options, row)
        attempted_us = to_us(clock.now())
        if failure is None:
            delivered += 1
        with store.write() as tx:
            tx.outbox.mark(
                row.event_id,
                attempted_us if failure is None else None,
                _next_attempt_us(options, row.attempts + 1, attempted_us, failure),
                None if failure is None else failure.reason,
            )
    return delivered


def _next_attempt_us(
    options: WebhookOptions, attempts: int, attempted_us: int, failure: Failure | None
) -> int:
    """When to try again after `attempts` attempts: never once delivered, failed for good or
    out of attempts; else after an exponential backoff with jitter."""
    if failure is None:
        return attempted_us
    if failure.permanent or attempts >= options.attempts_max:
        return GIVEN_UP_US  # given up; the error stays on the row for operators to see
    delay = min(options.backoff_seconds * 2 ** (attempts - 1), limits.webhook_backoff_seconds_max)
    return attempted_us + max(1, int(delay * random.uniform(0.5, 1.0) * 1_000_000))


class WebhookDispatcher:
    """A daemon thread that delivers due events until stopped."""

    def __init__(self, store: Store, options: WebhookOptions, clock: Clock) -> None:
        self._store, self._options, self._clock = store, options, clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="paywarden-webhooks", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failed_passes = 0
        while not self._stop.is_set():
            wait_seconds = self._options.poll_seconds
            try:
                deliver_due(self._store, self._options, self._clock, stop=self._stop)
                failed_passes = 0
            except Exception:  # delivery problems are logged; they never touch decisions
                failed_passes += 1
                wait_seconds = min(wait_seconds * 2**failed_passes, PASS_RETRY_SECONDS_MAX)
                _log.exception("webhook delivery pass failed; retrying in %.2f s", wait_seconds)
            self._stop.wait(wait_seconds)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class WebhookNotifier:
    """The runtime's notifier: a dispatcher thread delivering the outbox to one URL, and
    delivery on demand (`deliver_now`, for tests and the CLI)."""

    def __init__(self, store: Store, options: WebhookOptions, clock: Clock) -> None:
        self._store, self._options, self._clock = store, options, clock
        with store.write() as tx:
            tx.meta.set("webhooks", "on")  # from now on, approvals queue their events
        self._dispatcher: WebhookDispatcher | None = WebhookDispatcher(store, options, clock)

    def deliver_now(self) -> int:
        return deliver_due(self._store, self._options, self._clock)

    def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.stop()
            self._dispatcher = None
