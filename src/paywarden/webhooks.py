"""Webhook settings and signatures: the values a deployment configures and a receiver checks.

Delivery itself (the outbox dispatcher, HTTP) is an adapter (`paywarden.adapters.notify.webhook`);
what is here is pure: `WebhookOptions` (validated when built), the `X-Paywarden-Signature`
scheme, and `verify_signature` for receivers.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
import urllib.parse
from dataclasses import dataclass

from paywarden import limits
from paywarden.errors import InvalidInputError
from paywarden.slack import FORMATS


def url_problem(url: object) -> str | None:
    """Why `url` cannot receive webhooks, or None: it must be an absolute http or https URL
    with a host (no other scheme, no relative path, no spaces or control characters). The
    reason never repeats the URL: webhook URLs often carry a token (Slack's do)."""
    if not isinstance(url, str) or not url:
        return "the webhook URL must be a non-empty string"
    if not url.isprintable() or any(char.isspace() for char in url):
        return "the webhook URL may not contain spaces or control characters"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as error:
        return f"the webhook URL is not a valid URL: {error}"
    if parts.scheme.lower() not in ("http", "https"):
        shown = f"`{parts.scheme[:20]}:`" if parts.scheme else "no scheme"
        return f"the webhook URL has {shown}; only http and https URLs are allowed"
    if not parts.hostname:
        return "the webhook URL has no host"
    return None


@dataclass(frozen=True, slots=True)
class WebhookOptions:
    """Where and how approval events are delivered; invalid options raise InvalidInputError."""

    url: str
    secret: str
    attempts_max: int = limits.webhook_attempts_max
    backoff_seconds: float = limits.webhook_backoff_seconds
    timeout_seconds: float = limits.webhook_timeout_seconds
    poll_seconds: float = 0.2
    # `json`: the event as it is; `slack`: `{"text", "blocks"}` for an incoming webhook.
    format: str = "json"

    def __post_init__(self) -> None:
        problem = url_problem(self.url)
        if problem is not None:
            raise InvalidInputError(problem)
        if not isinstance(self.secret, str) or not self.secret:
            raise InvalidInputError("the webhook secret must be a non-empty string")
        if self.format not in FORMATS:
            raise InvalidInputError(f"webhook `format` must be one of {', '.join(FORMATS)}")
        if isinstance(self.attempts_max, bool) or not (
            isinstance(self.attempts_max, int) and self.attempts_max >= 1
        ):
            raise InvalidInputError("webhook `attempts_max` must be an integer of at least 1")
        for name in ("backoff_seconds", "timeout_seconds", "poll_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise InvalidInputError(f"webhook `{name}` must be a number above 0")
            if not math.isfinite(value):
                raise InvalidInputError(f"webhook `{name}` must be finite")


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
