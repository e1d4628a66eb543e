"""Webhooks under abuse: URLs that are not http(s), failures retrying cannot fix, redirects, a
dispatcher that must never spin, and chat markup in what agents and operators wrote.

Method: events go to a real `http.server` receiver on 127.0.0.1 (port 0) that records each POST
and answers with a chosen status (and `Location`). Delivery is driven with
`Warden.deliver_webhooks()` and a `FrozenClock` (the background thread replaced by a no-op),
except in the tests named "background", which run the real dispatcher thread and count its
attempts over real time. The escaping of `text` is checked end to end through the receiver and,
for any text, on `approvals.event` itself with Hypothesis.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paywarden import FrozenClock, Warden
from paywarden.adapters.notify import webhook
from paywarden.adapters.notify.webhook import GIVEN_UP_US, WebhookDispatcher, WebhookOptions
from paywarden.approval_request import event
from paywarden.clock import SystemClock
from paywarden.errors import InvalidInputError
from paywarden.ports import ApprovalRow
from paywarden.testing import example_intent
from support.ledger_file import outbox
from support.servers import LoopbackHTTPServer, free_port
from support.wardens import OpenWarden

SECRET = "whsec_test_hardening"
POLICY = """
currency: USD
rules:
  - id: review
    effect: require_approval
    actions: ["payments.*"]
    amount: {gt: 100}
  - id: allow-payments
    effect: allow
    actions: ["payments.*"]
"""


class Receiver(LoopbackHTTPServer):
    """A loopback HTTP server that records every POST and answers `status` (with `location`)."""

    def __init__(self, status: int = 204, location: str | None = None) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                receiver.received.append((dict(self.headers.items()), self.rfile.read(length)))
                self.send_response(status)
                if location is not None:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = _answer
            do_GET = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def texts(self) -> list[str]:
        return [str(json.loads(body)["text"]) for _, body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def _open(open_warden: OpenWarden, options: WebhookOptions, **extra: Any) -> Warden:
    warden = open_warden(POLICY, webhook=options, **extra)
    warden.add_operator("alice", name="Alice Example")
    return warden


# URLs and options -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("file:///etc/passwd", "`file:`"),
        ("ftp://hooks.example.com/x", "`ftp:`"),
        ("javascript:alert(1)", "`javascript:`"),
        ("gopher://hooks.example.com/", "`gopher:`"),
        ("/hooks/paywarden", "no scheme"),
        ("hooks.example.com/paywarden", "no scheme"),
        ("http://", "no host"),
        ("https:///only/a/path", "no host"),
        ("http://:8080/x", "no host"),
        ("http://hooks.example.com:99999/", "not a valid URL"),
        ("http://[::1/x", "not a valid URL"),
        ("http://hooks.example.com/a b", "spaces or control"),
        ("http://hooks.example.com/\n", "spaces or control"),
        (" http://hooks.example.com/", "spaces or control"),
        ("", "non-empty"),
    ],
)
def test_a_webhook_url_must_be_http_or_https_with_a_host(url: str, says: str) -> None:
    with pytest.raises(InvalidInputError, match="webhook URL") as refused:
        WebhookOptions(url, SECRET)
    assert says in str(refused.value)
    if url.strip():  # the URL may carry a token: the message never repeats it
        assert url.strip() not in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hooks",
        "https://hooks.slack.com/services/T000/B000/XXXX",
        "HTTPS://Hooks.Example.com",
        "http://[::1]:9000/x?y=1",
    ],
)
def test_http_and_https_urls_with_a_host_are_accepted(url: str) -> None:
    assert WebhookOptions(url, SECRET).url == url


@given(st.text(max_size=40), st.sampled_from(["", "http://", "https://", "ftp://", "file:"]))
def test_any_accepted_url_is_http_or_https_with_a_host(tail: str, head: str) -> None:
    try:
        options = WebhookOptions(head + tail, SECRET)
    except InvalidInputError:
        return
    parts = urlsplit(options.url)
    assert parts.scheme.lower() in ("http", "https") and parts.hostname


@pytest.mark.parametrize(
    "changes",
    [
        {"secret": ""},
        {"attempts_max": 0},
        {"attempts_max": True},
        {"backoff_seconds": 0},
        {"backoff_seconds": math.inf},
        {"timeout_seconds": -1.0},
        {"poll_seconds": 0},
        {"poll_seconds": math.nan},
    ],
    ids=repr,
)
def test_options_that_could_spin_or_never_sign_are_refused(changes: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"url": "http://127.0.0.1:1/x", "secret": SECRET, **changes}
    with pytest.raises(InvalidInputError, match="webhook"):
        WebhookOptions(**fields)


# Permanent and transient failures -------------------------------------------------------------


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "file:///etc/passwd", "/relative/hooks"])
def test_a_url_that_slipped_through_fails_once_for_good(
    manual: None, url: str, open_warden: OpenWarden, clock: FrozenClock, database: Path
) -> None:
    options = WebhookOptions("http://127.0.0.1:1/x", SECRET)
    object.__setattr__(options, "url", url)  # as an options object from an older release
    with _open(open_warden, options) as warden:
        warden.authorize(example_intent("500.00"))
        for _ in range(5):
            assert warden.deliver_webhooks() == 0
            clock.advance(3_600)
    [row] = outbox(database)
    assert row["attempts"] == 1 and row["delivered_us"] is None
    assert row["next_attempt_us"] == GIVEN_UP_US
    assert "only http and https" in row["last_error"]


def test_a_dns_failure_is_retried_with_backoff(
    manual: None, open_warden: OpenWarden, clock: FrozenClock, database: Path
) -> None:
    options = WebhookOptions("http://paywarden-hooks.invalid/x", SECRET, backoff_seconds=10)
    with _open(open_warden, options) as warden:
        warden.authorize(example_intent("500.00"))
        assert warden.deliver_webhooks() == 0
        [first] = outbox(database)
        assert warden.deliver_webhooks() == 0  # not due again before its backoff
        clock.advance(10)
        assert warden.deliver_webhooks() == 0
        [second] = outbox(database)
    assert "URLError" in first["last_error"] and first["attempts"] == 1
    assert first["next_attempt_us"] < GIVEN_UP_US
    assert second["attempts"] == 2 and second["next_attempt_us"] < GIVEN_UP_US


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_failed_attempt_and_is_not_followed(
    manual: None, status: int, open_warden: OpenWarden, database: Path
) -> None:
    elsewhere = Receiver()
    redirecting = Receiver(status, location=elsewhere.url)
    try:
        options = WebhookOptions(redirecting.url, SECRET)
        with _open(open_warden, options) as warden:
            warden.authorize(example_intent("500.00"))
            assert warden.deliver_webhooks() == 0
    finally:
        redirecting.close()
        elsewhere.close()
    assert len(redirecting.received) == 1 and elsewhere.received == []
    [row] = outbox(database)
    assert row["delivered_us"] is None and row["last_error"] == f"HTTP {status}"


def _attempts_after(
    open_warden: OpenWarden, database: Path, options: WebhookOptions, seconds: float
) -> int:
    with _open(open_warden, options, clock=SystemClock()) as warden:
        warden.authorize(example_intent("500.00"))
        time.sleep(seconds)
    [row] = outbox(database)
    attempts: int = row["attempts"]
    return attempts


def test_the_dispatcher_backs_off_on_a_dead_receiver_background(
    open_warden: OpenWarden, database: Path
) -> None:
    options = WebhookOptions(
        f"http://127.0.0.1:{free_port()}/hooks", SECRET, backoff_seconds=0.2, poll_seconds=0.01
    )
    # Attempts at 0 s, then after at least 0.1, 0.2 and 0.4 s more: at most 4 within 1 s.
    assert 1 <= _attempts_after(open_warden, database, options, 1.0) <= 4


def test_the_dispatcher_gives_up_on_a_bad_url_at_once_background(
    open_warden: OpenWarden, database: Path
) -> None:
    options = WebhookOptions("http://127.0.0.1:1/x", SECRET, poll_seconds=0.01)
    object.__setattr__(options, "url", "ftp://127.0.0.1/x")
    assert _attempts_after(open_warden, database, options, 0.5) == 1


def test_a_failing_delivery_pass_is_retried_with_backoff_background(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    passes: list[float] = []

    def broken(*args: object, **kwargs: object) -> int:
        passes.append(time.monotonic())
        raise RuntimeError("the store is down")

    monkeypatch.setattr(webhook, "deliver_due", broken)
    options = WebhookOptions("http://127.0.0.1:1/x", SECRET, poll_seconds=0.01)
    dispatcher = WebhookDispatcher(None, options, SystemClock())  # type: ignore[arg-type]
    time.sleep(0.6)
    dispatcher.stop()
    # Waits of 0.02, 0.04, 0.08, 0.16 and 0.32 s: 6 passes in 0.6 s, not 60.
    assert 2 <= len(passes) <= 8, len(passes)
    gaps = [later - earlier for earlier, later in zip(passes, passes[1:], strict=False)]
    assert all(later > earlier for earlier, later in zip(gaps, gaps[1:], strict=False))


# Chat markup ----------------------------------------------------------------------------------

RECIPIENT = "vendor <!channel> <!here> & co"  # a plain payee name: no `@`, or it is an e-mail
REASON = "see <https://evil.example|the invoice> <@U123> @everyone\nApproved by alice"


def test_agent_and_operator_text_cannot_ping_or_link_in_chat(
    manual: None, receiver: Receiver, open_warden: OpenWarden
) -> None:
    with _open(open_warden, WebhookOptions(receiver.url, SECRET)) as warden:
        pending = warden.authorize(example_intent("500.00", recipient=RECIPIENT))
        warden.reject(str(pending.approval_id), operator="alice", reason=REASON)
        assert warden.deliver_webhooks() == 2
    requested, rejected = receiver.texts()
    for text in (requested, rejected):
        assert not any(char in text for char in "<>@\n"), text
    assert requested.startswith("Approval needed: agent-a wants to pay 500.00 USD to ")
    assert rejected.startswith(f"Approval {pending.approval_id} rejected: ")
    assert "vendor &lt;!channel&gt; &lt;!here&gt; &amp; co" in requested
    assert "&lt;https://evil.example|the invoice&gt; &lt;＠U123&gt; ＠everyone" in rejected
    assert html.unescape(requested).replace("＠", "@").count(RECIPIENT) >= 1
    shown = html.unescape(rejected).replace("＠", "@")
    assert REASON.replace("\n", " ") in shown  # every word still shown, on one line
    assert json.loads(receiver.received[0][1])["recipient"] == RECIPIENT  # exact value kept


def _row(recipient: str) -> ApprovalRow:
    intent = {
        "action": "payments.transfer",
        "amount_minor": 100,
        "currency": "USD",
        "recipient": recipient,
        "environment": "production",
    }
    return ApprovalRow(
        "apr_1", "dec_1", "hold_1", "agent-a", "b", json.dumps(intent), "pending", 1, "[]", 0, 1,
        None, None,
    )  # fmt: skip


@given(st.text(alphabet=st.characters(exclude_characters="＠"), max_size=60))
def test_any_text_is_inert_and_reads_the_same(text: str) -> None:
    shown = str(event(_row(text), "approval.requested", text)["text"])
    assert not any(char in shown for char in "<>@") and shown.isprintable()
    readable = "".join(char if char.isprintable() else " " for char in text)
    assert html.unescape(shown).replace("＠", "@") == readable
