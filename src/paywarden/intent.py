"""PaymentIntent: what an agent asks to pay, validated and normalised before any rule sees it."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import idna

from paywarden import limits
from paywarden.errors import InvalidIntentError
from paywarden.money import DEFAULT_CURRENCIES, CurrencyTable, Money

_IDENTIFIER = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._:@/-]*\Z", re.ASCII)
_ACTION = re.compile(r"\A[a-z0-9_-]+(\.[a-z0-9_-]+)*\Z", re.ASCII)
_IDEMPOTENCY_KEY = re.compile(r"\A[\x21-\x7e]+\Z", re.ASCII)
_DOMAIN_LIKE = re.compile(r"\A[^\s@/:]+\.[^\s@/:]+\Z")
_WHITESPACE_RUN = re.compile(r"\s+")
# UTS #46 label separators that NFKC leaves alone; IDNA would turn them into dots only after
# the trailing-dot strip, so `pay.com。` would escape a deny rule on `pay.com`.
_IDEOGRAPHIC_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})

MetadataValue = str | int | bool | None

_FIELDS = (
    "agent",
    "action",
    "amount",
    "recipient",
    "environment",
    "category",
    "purpose",
    "recipient_name",
    "rail",
    "session_id",
    "idempotency_key",
    "metadata",
)


class PaymentIntent:
    """A request to move money, immutable once built.

    `amount` accepts text (`"120.50"`), a `Decimal` or an `int` of major units, never a float,
    and becomes `Money`. `recipient` is normalised (Unicode NFKC, case folded, surrounding
    whitespace and a trailing dot removed, domains converted with IDNA/UTS #46), so that
    `X.EVIL.COM`, `x.evil.com.` and `x.evil.com` are one recipient. The text the agent sent is
    kept in `recipient_original` for rails whose identifiers are case-sensitive.
    """

    __slots__ = (*_FIELDS, "_fingerprint", "recipient_original")

    agent: str
    action: str
    amount: Money
    recipient: str
    recipient_original: str
    environment: str | None
    category: str | None
    purpose: str | None
    recipient_name: str | None
    rail: str | None
    session_id: str | None
    idempotency_key: str | None
    metadata: Mapping[str, MetadataValue]
    _fingerprint: str | None

    def __init__(
        self,
        *,
        agent: str,
        action: str,
        amount: str | int | Decimal | Money,
        currency: str | None = None,
        recipient: str,
        environment: str | None = None,
        category: str | None = None,
        purpose: str | None = None,
        recipient_name: str | None = None,
        rail: str | None = None,
        session_id: str | None = None,
        idempotency_key: str | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
        currencies: CurrencyTable = DEFAULT_CURRENCIES,
        amount_minor_max: int = limits.amount_minor_max,
    ) -> None:
        values: dict[str, object] = {
            "agent": _identifier("agent", agent),
            "action": _action(action),
            "amount": _money(amount, currency, currencies, amount_minor_max),
            "recipient": normalize_recipient(recipient),
            "recipient_original": _text("recipient", recipient, limits.recipient_chars_max),
            "environment": _optional_identifier("environment", environment, lower=True),
            "category": _optional_identifier("category", category, lower=True),
            "purpose": _optional_text("purpose", purpose),
            "recipient_name": _optional_text("recipient_name", recipient_name),
            "rail": _optional_identifier("rail", rail, lower=True),
            "session_id": _optional_identifier("session_id", session_id),
            "idempotency_key": _idempotency_key(idempotency_key),
            "metadata": _metadata(metadata),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_fingerprint", None)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("PaymentIntent is immutable")

    @property
    def amount_minor(self) -> int:
        return self.amount.amount_minor

    @property
    def currency(self) -> str:
        return self.amount.currency

    def replace(self, **changes: Any) -> PaymentIntent:
        """A copy with some fields changed, validated again."""
        fields: dict[str, Any] = {name: getattr(self, name) for name in _FIELDS}
        fields["recipient"] = self.recipient_original
        fields.update(changes)
        if "currency" in changes and "amount" not in changes:
            fields["amount"] = self.amount.to_decimal()
        elif "currency" not in changes and not isinstance(fields["amount"], Money):
            fields["currency"] = self.amount.currency  # a new amount as text keeps the currency
        return PaymentIntent(**fields)

    def with_environment(self, environment: str) -> PaymentIntent:
        """A copy with the deployment's environment filled in (only that field is checked)."""
        value = _optional_identifier("environment", environment, lower=True)
        copy = object.__new__(PaymentIntent)
        for name in PaymentIntent.__slots__:
            object.__setattr__(copy, name, getattr(self, name))
        object.__setattr__(copy, "environment", value)
        object.__setattr__(copy, "_fingerprint", None)
        return copy

    def canonical(self) -> dict[str, object]:
        """The normalised fields as plain JSON values; the basis of the fingerprint."""
        return {
            "agent": self.agent,
            "action": self.action,
            "amount_minor": self.amount.amount_minor,
            "currency": self.amount.currency,
            "recipient": self.recipient,
            "environment": self.environment,
            "category": self.category,
            "purpose": self.purpose,
            "recipient_name": self.recipient_name,
            "rail": self.rail,
            "session_id": self.session_id,
            "metadata": dict(sorted(self.metadata.items())),
        }

    def fingerprint(self) -> str:
        """SHA-256 over the canonical fields (the idempotency key itself is excluded)."""
        cached: str | None = self._fingerprint
        if cached is not None:
            return cached
        data = json.dumps(
            self.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        digest = hashlib.sha256(data.encode("utf-8")).hexdigest()
        object.__setattr__(self, "_fingerprint", digest)
        return digest

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PaymentIntent):
            return NotImplemented
        return (self.canonical(), self.idempotency_key) == (
            other.canonical(),
            other.idempotency_key,
        )

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def __repr__(self) -> str:
        return (
            f"PaymentIntent(agent={self.agent!r}, action={self.action!r}, "
            f"amount='{self.amount}', recipient={self.recipient!r})"
        )


def normalize_recipient(value: object) -> str:
    """Canonical form of a recipient, used by every rule, budget and fingerprint."""
    text = _text("recipient", value, limits.recipient_chars_max)
    _reject_invisible("recipient", text)
    folded = _fold(text)
    if not folded:
        raise InvalidIntentError("recipient must not be empty")
    if "://" in folded:
        return _normalize_url(folded)
    folded = folded.rstrip(". ")
    if not folded:
        raise InvalidIntentError(f"recipient `{text}` has no name, only dots")
    if "@" in folded and " " not in folded:
        local, _, domain = folded.rpartition("@")
        return f"{local}@{_normalize_domain(domain)}"
    if _DOMAIN_LIKE.match(folded):
        return _normalize_domain(folded)
    if not folded.isascii():
        raise InvalidIntentError(
            f"recipient `{text}` contains non-ASCII characters outside a domain name"
        )
    return folded


_GLOB_CHARS = "*?["


def normalize_recipient_pattern(pattern: object) -> str:
    """Canonical form of a recipient pattern in a policy, comparable with `normalize_recipient`.

    A pattern without wildcards is normalised as a recipient. A glob (`*.evil.com`,
    `*@example.com`) gets the same folding, and each non-ASCII domain label its IDNA form, so
    `*.münchen.de` matches `pay.xn--mnchen-3ya.de`. A label that mixes wildcards and non-ASCII
    letters has no IDNA form and is rejected.
    """
    text = _text("recipient pattern", pattern, limits.recipient_chars_max)
    if not any(char in text for char in _GLOB_CHARS):
        return normalize_recipient(text)
    _reject_invisible("recipient pattern", text)
    folded = _fold(text)
    if "://" in folded:
        scheme, _, rest = folded.partition("://")
        host, slash, path = rest.partition("/")
        return f"{scheme}://{_pattern_domain(host, text)}{slash}{path}"
    local, at, domain = folded.rstrip(".").rpartition("@")
    return f"{local}{at}{_pattern_domain(domain, text)}"


def _pattern_domain(domain: str, pattern: str) -> str:
    if domain.isascii():
        return domain
    labels: list[str] = []
    for label in domain.split("."):
        if label.isascii():
            labels.append(label)
        elif any(char in label for char in _GLOB_CHARS):
            raise InvalidIntentError(
                f"recipient pattern `{pattern}` mixes wildcards and non-ASCII letters in one "
                "label; write that label in its IDNA (xn--) form"
            )
        else:
            name, colon, port = label.partition(":")
            labels.append(_normalize_domain(name) + colon + port)
    return ".".join(labels)


def _fold(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold().translate(_IDEOGRAPHIC_DOTS)
    return _WHITESPACE_RUN.sub(" ", folded).strip()


def _normalize_domain(domain: str) -> str:
    try:
        return idna.encode(domain.rstrip("."), uts46=True).decode("ascii")
    except idna.IDNAError as error:
        raise InvalidIntentError(f"recipient domain `{domain}` is not valid: {error}") from None


def _normalize_url(url: str) -> str:
    parts = urlsplit(url)
    if not parts.hostname:
        raise InvalidIntentError(f"recipient URL `{url}` has no host")
    host = _normalize_domain(parts.hostname)
    try:
        port = parts.port
    except ValueError as error:
        raise InvalidIntentError(f"recipient URL `{url}` has an invalid port: {error}") from None
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


def _reject_invisible(field: str, text: str) -> None:
    for char in text:
        category = unicodedata.category(char)
        if category in ("Cc", "Cf", "Cs", "Co", "Cn") and char not in "\t\n\r ":
            raise InvalidIntentError(
                f"{field} contains the invisible or control character U+{ord(char):04X}"
            )


def _text(field: str, value: object, chars_max: int) -> str:
    if not isinstance(value, str):
        raise InvalidIntentError(f"{field} must be a string, not {type(value).__name__}")
    if len(value) > chars_max:
        raise InvalidIntentError(f"{field} is longer than {chars_max} characters")
    return value


def _optional_text(field: str, value: object) -> str | None:
    if value is None:
        return None
    text = _text(field, value, limits.free_text_chars_max)
    _reject_invisible(field, text.replace("\n", " "))
    return text


def _identifier(field: str, value: object, *, lower: bool = False) -> str:
    text = _text(field, value, limits.identifier_chars_max)
    if not _IDENTIFIER.match(text):
        raise InvalidIntentError(
            f"{field} `{text}` must be ASCII letters, digits and . _ : @ / - "
            "(starting with a letter or digit)"
        )
    return text.lower() if lower else text


def identifier(field: str, value: object) -> str:
    """Validate an id (agent, session, ...) with the intent's rules, or raise InvalidIntentError."""
    return _identifier(field, value)


def _optional_identifier(field: str, value: object, *, lower: bool = False) -> str | None:
    return None if value is None else _identifier(field, value, lower=lower)


def _action(value: object) -> str:
    text = _text("action", value, limits.identifier_chars_max).lower()
    if not _ACTION.match(text):
        raise InvalidIntentError(
            f"action `{value}` must be dot-separated lowercase names such as `payments.transfer`"
        )
    return text


def _money(
    amount: object, currency: object, currencies: CurrencyTable, amount_minor_max: int
) -> Money:
    if isinstance(amount, Money):
        if currency is not None and currencies.normalize(currency) != amount.currency:
            raise InvalidIntentError("currency disagrees with the currency of the Money amount")
        if amount.amount_minor <= 0:
            raise InvalidIntentError("amount must be greater than zero")
        return Money.parse(
            amount.to_decimal(),
            amount.currency,
            currencies=currencies,
            amount_minor_max=amount_minor_max,
        )
    if currency is None:
        raise InvalidIntentError("currency is required")
    return Money.parse(amount, currency, currencies=currencies, amount_minor_max=amount_minor_max)


def _idempotency_key(value: object) -> str | None:
    if value is None:
        return None
    text = _text("idempotency_key", value, limits.idempotency_key_chars_max)
    if not _IDEMPOTENCY_KEY.match(text):
        raise InvalidIntentError("idempotency_key must be 1 to 255 printable ASCII characters")
    return text


def _metadata(value: object) -> Mapping[str, MetadataValue]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidIntentError("metadata must be a mapping of names to values")
    if len(value) > limits.metadata_entries_max:
        raise InvalidIntentError(f"metadata has more than {limits.metadata_entries_max} entries")
    result: dict[str, MetadataValue] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _IDENTIFIER.match(key) or len(key) > 64:
            raise InvalidIntentError(f"metadata key `{key}` must be a short ASCII identifier")
        if isinstance(item, float):
            raise InvalidIntentError(f"metadata `{key}` is a float; use text or an integer")
        if item is not None and not isinstance(item, str | int | bool):
            raise InvalidIntentError(f"metadata `{key}` must be text, an integer, a bool or null")
        if isinstance(item, str):
            _text(f"metadata `{key}`", item, limits.metadata_value_chars_max)
        result[key] = item
    return MappingProxyType(result)  # read-only: the fingerprint is cached
