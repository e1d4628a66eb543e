"""Webhook delivery of approval events to a real HTTP server on loopback.

The receiver is `http.server` in a thread on 127.0.0.1 (port 0). It can fail the first N
requests with 500, answer with a malformed status line, or hang. Events are signed
(`X-Paywarden-Signature`, checked with `verify_signature`), carry a Slack-compatible `text`,
are retried with exponential backoff, and never block or change a decision.

Most tests drive delivery with `Warden.deliver_webhooks()` and a `FrozenClock`, with the
background dispatcher replaced by a no-op so that nothing races the test; the tests named
"background" run the real dispatcher thread.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from paywarden import FrozenClock, Warden
from paywarden.adapters.notify.webhook import WebhookOptions, signature, verify_signature
from paywarden.clock import to_us
from paywarden.policy.decision import Decision
from paywarden.testing import example_intent
from support.ledger_file import outbox
from support.servers import LoopbackHTTPServer, free_port
from support.wardens import OpenWarden

START = "2026-01-05T12:00:00+00:00"
SECRET = "whsec_test_0123456789"
POLICY = """
currency: USD
approvals:
  ttl: 15m
rules:
  - id: review
    effect: require_approval
    actions: ["payments.*"]
    amount: {gt: 100}
  - id: allow-payments
    effect: allow
    actions: ["payments.*"]
"""


# The receiver --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> dict[str, Any]:
        data = json.loads(self.body)
        assert isinstance(data, dict)
        return data


class Receiver(LoopbackHTTPServer):
    """A loopback HTTP server that records every POST and answers as told."""

    def __init__(self, *, fail_first: int = 0, mode: str = "ok") -> None:
        self.fail_first = fail_first
        self.mode = mode  # ok | garbage-first | hang
        self.received: list[Received] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    number = len(receiver.received) + 1
                    if receiver.mode == "hang":
                        status = 200
                    elif receiver.mode == "garbage-first" and number == 1:
                        status = 0
                    else:
                        status = 500 if number <= receiver.fail_first else 200
                    receiver.received.append(Received(dict(self.headers.items()), body, status))
                if receiver.mode == "hang":
                    receiver.release.wait(timeout=30)
                if status == 0:
                    self.wfile.write(b"NOT-HTTP garbage\r\n\r\n")
                    self.close_connection = True
                    return
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler, poll_seconds=0.02)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/paywarden"

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count() < count:
            if time.monotonic() > deadline:
                pytest.fail(f"the receiver got {self.count()} requests, not {count}")
            time.sleep(0.005)

    def close(self) -> None:
        self.release.set()
        super().close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def _options(url: str, **overrides: Any) -> WebhookOptions:
    settings: dict[str, Any] = {"backoff_seconds": 1.0, "timeout_seconds": 2.0}
    settings.update(overrides)
    return WebhookOptions(url, SECRET, **settings)


def _open(open_warden: OpenWarden, options: WebhookOptions | None, **extra: Any) -> Warden:
    warden = open_warden(POLICY, webhook=options, **extra)
    if not warden.operators():
        warden.add_operator("alice", name="Alice Example")
    return warden


# Delivery, signature, Slack text -------------------------------------------------------------


def test_events_are_delivered_signed_with_a_slack_text(
    manual: None, receiver: Receiver, open_warden: OpenWarden
) -> None:
    with _open(open_warden, _options(receiver.url)) as warden:
        assert warden.deliver_webhooks() == 0  # nothing queued yet
        pending = warden.authorize(example_intent())
        assert receiver.count() == 0  # queued, not sent inside the decision
        assert warden.deliver_webhooks() == 1
        warden.approve(str(pending.approval_id), operator="alice", reason="known vendor")
        assert warden.deliver_webhooks() == 1
        assert warden.deliver_webhooks() == 0  # each event once
    requested, decided = receiver.received
    for event in (requested, decided):
        header = event.headers["X-Paywarden-Signature"]
        assert verify_signature(SECRET, header, event.body)
        assert not verify_signature("another-secret", header, event.body)
        assert not verify_signature(SECRET, header, event.body.replace(b"500", b"900"))
        assert event.headers["Content-Type"] == "application/json"
        assert event.headers["X-Paywarden-Event"] == event.json["type"]
        timestamp = int(header.split(",")[0].removeprefix("t="))
        assert abs(timestamp - time.time()) < 60
        assert isinstance(event.json["text"], str) and event.json["text"]
    assert requested.json["type"] == "approval.requested"
    assert requested.json["approval_id"] == pending.approval_id
    assert (requested.json["amount_minor"], requested.json["currency"]) == (50_000, "USD")
    assert requested.json["text"].startswith("Approval needed: agent-a wants to pay")
    assert "vendor.example.com" in requested.json["text"]
    assert decided.json["type"] == "approval.decided"
    assert decided.json["status"] == "approved"
    assert "alice" in decided.json["text"]
    assert requested.headers["X-Paywarden-Event-Id"] != decided.headers["X-Paywarden-Event-Id"]


def test_two_processes_delivering_at_once_post_each_event_once(
    manual: None, open_warden: OpenWarden
) -> None:
    """Two Wardens (two stores, as two gateways would have) deliver the same outbox at the
    same time: an event is claimed by one of them, the other skips it."""
    receiver = Receiver(mode="hang")  # holds each request until released
    try:
        options = _options(receiver.url, timeout_seconds=10.0)
        first = _open(open_warden, options)
        second = _open(open_warden, options)
        first.authorize(example_intent())  # one event: approval.requested
        delivering = threading.Thread(target=first.deliver_webhooks)
        delivering.start()
        receiver.wait_for(1)  # the first is posting it now
        assert second.deliver_webhooks() == 0  # claimed: skipped, not posted again
        receiver.release.set()
        delivering.join(timeout=30)
        assert receiver.count() == 1
        assert second.deliver_webhooks() == first.deliver_webhooks() == 0  # delivered once
    finally:
        receiver.close()


def test_rejections_expiries_and_voids_are_announced(
    manual: None, receiver: Receiver, clock: FrozenClock, open_warden: OpenWarden
) -> None:
    with _open(open_warden, _options(receiver.url)) as warden:
        rejected = warden.authorize(example_intent("200.00"))
        expired = warden.authorize(example_intent("300.00"))
        warden.reject(str(rejected.approval_id), operator="alice", reason="unknown vendor")
        clock.advance(16 * 60)
        warden.expire_due()
        voided = warden.authorize(example_intent("400.00"))
        warden.halt(reason="incident", actor="alice", void_pending=True)
        assert warden.deliver_webhooks() == 6
    decided = {
        event.json["approval_id"]: event.json
        for event in receiver.received
        if event.json["type"] == "approval.decided"
    }
    assert decided[str(rejected.approval_id)]["status"] == "rejected"
    assert "unknown vendor" in decided[str(rejected.approval_id)]["text"]
    assert decided[str(expired.approval_id)]["status"] == "expired"
    assert "expired" in decided[str(expired.approval_id)]["text"]
    assert decided[str(voided.approval_id)]["status"] == "voided"


def test_changes_made_by_a_warden_without_webhooks_are_queued_too(
    manual: None, receiver: Receiver, open_warden: OpenWarden
) -> None:
    with _open(open_warden, _options(receiver.url)) as server:
        pending = server.authorize(example_intent())
        # An operator approves from another process (the CLI), which has no webhook config.
        with _open(open_warden, None) as operator_side:
            operator_side.approve(str(pending.approval_id), operator="alice", reason="ok")
            assert operator_side.deliver_webhooks() == 0  # it does not deliver itself
        assert server.deliver_webhooks() == 2
    assert [event.json["type"] for event in receiver.received] == [
        "approval.requested",
        "approval.decided",
    ]


# Retries -------------------------------------------------------------------------------------


def test_failed_deliveries_are_retried_with_exponential_backoff_until_delivered(
    manual: None, database: Path, clock: FrozenClock, open_warden: OpenWarden
) -> None:
    receiver = Receiver(fail_first=3)
    try:
        with _open(open_warden, _options(receiver.url, backoff_seconds=2.0)) as warden:
            warden.authorize(example_intent())
            delays: list[int] = []
            for attempt in range(1, 4):
                attempted_us = to_us(clock.now())
                assert warden.deliver_webhooks() == 0
                assert receiver.count() == attempt
                [row] = outbox(database)
                assert (row["attempts"], row["delivered_us"]) == (attempt, None)
                assert row["last_error"] == "HTTP 500"
                delays.append(row["next_attempt_us"] - attempted_us)
                # Not retried before its backoff has passed.
                clock.advance(0.5)
                assert warden.deliver_webhooks() == 0
                assert receiver.count() == attempt
                clock.advance(2.0 * 2 ** (attempt - 1))
            assert warden.deliver_webhooks() == 1
            assert warden.deliver_webhooks() == 0
    finally:
        receiver.close()
    # Exponential with jitter: attempt k waits between half and all of 2 s * 2^(k-1).
    for attempt, delay in enumerate(delays, start=1):
        ceiling = 2_000_000 * 2 ** (attempt - 1)
        assert ceiling // 2 <= delay <= ceiling, (attempt, delays)
    assert [event.status for event in receiver.received] == [500, 500, 500, 200]
    bodies = {event.body for event in receiver.received}
    ids = {event.headers["X-Paywarden-Event-Id"] for event in receiver.received}
    assert len(bodies) == 1 and len(ids) == 1  # the same event each time
    final = receiver.received[-1]
    assert verify_signature(SECRET, final.headers["X-Paywarden-Signature"], final.body)
    [row] = outbox(database)
    assert (row["attempts"], row["last_error"]) == (4, None)
    assert row["delivered_us"] is not None


def test_delivery_gives_up_after_the_last_attempt(
    manual: None, database: Path, clock: FrozenClock, open_warden: OpenWarden
) -> None:
    receiver = Receiver(fail_first=1_000)
    try:
        with _open(open_warden, _options(receiver.url, attempts_max=3)) as warden:
            warden.authorize(example_intent())
            for _ in range(6):
                warden.deliver_webhooks()
                clock.advance(3_600)
    finally:
        receiver.close()
    assert receiver.count() == 3
    [row] = outbox(database)
    assert (row["attempts"], row["delivered_us"], row["last_error"]) == (3, None, "HTTP 500")


def test_a_malformed_response_is_a_failed_attempt_and_does_not_stop_other_events(
    manual: None, database: Path, clock: FrozenClock, open_warden: OpenWarden
) -> None:
    receiver = Receiver(mode="garbage-first")
    try:
        with _open(open_warden, _options(receiver.url)) as warden:
            warden.authorize(example_intent("200.00"))
            warden.authorize(example_intent("300.00"))
            assert warden.deliver_webhooks() == 1  # the second event goes out
            first, second = outbox(database)
            assert first["delivered_us"] is None and first["last_error"]
            assert second["delivered_us"] is not None
            clock.advance(60)
            assert warden.deliver_webhooks() == 1  # the first one, retried later
    finally:
        receiver.close()
    assert receiver.count() == 3
    assert all(row["delivered_us"] is not None for row in outbox(database))


# Decisions are never blocked or changed --------------------------------------------------------


def _run_scenario(warden: Warden) -> list[Decision]:
    pending = warden.authorize(example_intent())
    warden.approve(str(pending.approval_id), operator="alice", reason="ok")
    return [
        pending,
        warden.authorize(example_intent()),
        warden.authorize(example_intent("50.00")),
        warden.authorize(example_intent("700.00")),
    ]


def _summary(decisions: list[Decision]) -> list[tuple[str, str, bool, bool]]:
    return [
        (d.outcome, d.reason_code, d.hold_id is not None, d.approval_id is not None)
        for d in decisions
    ]


def test_decisions_are_the_same_when_the_webhook_server_is_down(
    tmp_path: Path, open_warden: OpenWarden
) -> None:
    with _open(
        open_warden, None, database=tmp_path / "plain.db", clock=FrozenClock(START)
    ) as plain:
        expected = _run_scenario(plain)
    options = _options(f"http://127.0.0.1:{free_port()}/hooks", poll_seconds=0.01)
    with _open(open_warden, options, database=tmp_path / "hooked.db") as hooked:
        started = time.monotonic()
        decisions = _run_scenario(hooked)
        elapsed = time.monotonic() - started
        assert hooked.deliver_webhooks() == 0  # failures are recorded, never raised
    assert _summary(decisions) == _summary(expected)
    assert [d.reason for d in decisions][2:] == [d.reason for d in expected][2:]
    assert elapsed < 2.0
    rows = outbox(tmp_path / "hooked.db")
    assert len(rows) == 3  # requested, decided, requested
    assert all(row["delivered_us"] is None and row["attempts"] >= 1 for row in rows)
    assert all("URLError" in row["last_error"] for row in rows)


def test_a_hung_receiver_never_blocks_a_decision_background(open_warden: OpenWarden) -> None:
    receiver = Receiver(mode="hang")
    try:
        options = _options(receiver.url, poll_seconds=0.01, timeout_seconds=3.0)
        with _open(open_warden, options) as warden:
            first = warden.authorize(example_intent())
            receiver.wait_for(1)  # the dispatcher is now stuck in a POST
            started = time.monotonic()
            decisions = [warden.authorize(example_intent(f"{n}00.00")) for n in range(2, 6)]
            warden.approve(str(first.approval_id), operator="alice", reason="ok")
            used = warden.authorize(example_intent())
            elapsed = time.monotonic() - started
            receiver.release.set()
    finally:
        receiver.close()
    assert elapsed < 1.0
    assert [d.outcome for d in decisions] == ["require_approval"] * 4
    assert (used.outcome, used.reason_code) == ("allow", "approved")


def test_the_dispatcher_delivers_after_failures_in_the_background(
    database: Path, clock: FrozenClock, open_warden: OpenWarden
) -> None:
    receiver = Receiver(fail_first=2)
    try:
        options = _options(receiver.url, poll_seconds=0.01, backoff_seconds=0.5)
        with _open(open_warden, options) as warden:
            pending = warden.authorize(example_intent())
            assert pending.outcome == "require_approval"  # at once, whatever the receiver does
            deadline = time.monotonic() + 10
            while receiver.count() < 3 and time.monotonic() < deadline:
                clock.advance(1)  # the frozen clock lets backoffs pass
                time.sleep(0.02)
            time.sleep(0.05)
    finally:
        receiver.close()
    assert [event.status for event in receiver.received] == [500, 500, 200]
    assert {event.json["approval_id"] for event in receiver.received} == {pending.approval_id}
    [row] = outbox(database)
    assert row["delivered_us"] is not None and row["attempts"] == 3


def test_closing_the_warden_stops_the_dispatcher_with_a_backlog_background(
    manual: None, monkeypatch: pytest.MonkeyPatch, open_warden: OpenWarden
) -> None:
    receiver = Receiver(mode="hang")
    try:
        # Queue a backlog first, with no dispatcher running.
        options = _options(receiver.url, poll_seconds=0.01, timeout_seconds=0.5)
        with _open(open_warden, options) as warden:
            for n in range(1, 11):
                warden.authorize(example_intent(f"{n}00.50"))
        monkeypatch.undo()  # the real dispatcher from here on
        warden = _open(open_warden, options)
        receiver.wait_for(1)
        started = time.monotonic()
        warden.close()
        took = time.monotonic() - started
        after_close = receiver.count()
        time.sleep(0.7)
        assert receiver.count() == after_close, "the dispatcher kept posting after close()"
        assert took < 2.0
    finally:
        receiver.close()


# verify_signature ------------------------------------------------------------------------------


def test_verify_signature_accepts_only_the_exact_signature() -> None:
    body = b'{"type":"approval.requested"}'
    header = signature(SECRET, 1_767_614_400, body)
    assert header.startswith("t=1767614400,v1=")
    assert verify_signature(SECRET, header, body)
    assert not verify_signature(SECRET, header, body + b" ")
    assert not verify_signature(SECRET, header.replace("t=1767614400", "t=1767614401"), body)
    assert not verify_signature(SECRET + "x", header, body)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        "t=,v1=",
        "t=abc,v1=00",
        "v1=00",
        "t=1767614400",
        "t=1,v1=\u00e9\u00e9",
        "t=\u0661\u0662,v1=00",
        "t=1,v1=00,t",
    ],
)
def test_verify_signature_returns_false_for_malformed_headers(header: str) -> None:
    assert verify_signature(SECRET, header, b"{}") is False


def test_a_stale_signature_is_refused_when_a_tolerance_is_given() -> None:
    body = b'{"type":"approval.requested"}'
    header = signature(SECRET, 1_767_614_400, body)
    assert verify_signature(SECRET, header, body)  # no tolerance: the MAC alone decides
    fresh = {"tolerance_seconds": 300, "now": 1_767_614_400 + 299}
    stale = {"tolerance_seconds": 300, "now": 1_767_614_400 + 301}
    assert verify_signature(SECRET, header, body, **fresh)
    assert not verify_signature(SECRET, header, body, **stale)
    assert not verify_signature(SECRET + "x", header, body, **fresh)
