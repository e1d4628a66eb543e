"""PaymentIntent: what an agent asks to pay, validated and normalised before any rule sees it."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from paywarden import limits
from paywarden.audit.canonical import canonical_bytes
from paywarden.errors import InvalidIntentError, InvalidRecipientError
from paywarden.money import DEFAULT_CURRENCIES, CurrencyTable, Money
from paywarden.payee import Payee, parse_payee, reject_invisible

_IDENTIFIER = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._:@/-]*\Z", re.ASCII)
_ACTION = re.compile(r"\A[a-z0-9_-]+(\.[a-z0-9_-]+)*\Z", re.ASCII)
_IDEMPOTENCY_KEY = re.compile(r"\A[\x21-\x7e]+\Z", re.ASCII)

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
    and becomes `Money`. `recipient` is parsed once into a typed `Payee` with one canonical
    identity (see `paywarden.payee`): `X.EVIL.COM.`, `https://x.evil.com:443/` and `x.evil.com/`
    are one payee, and `acct_1AbC` keeps its case. `recipient` is the payee's canonical text;
    the text the agent sent is kept in `recipient_original`, only for the audit record.

    Every text field is bounded in bytes and refuses control, invisible and bidi characters.
    Secrets are removed by `Warden` before anything is fingerprinted or stored (see
    `paywarden.admission`); `redacted` lists the paths it replaced.
    """

    __slots__ = (
        *_FIELDS,
        "_fingerprint",
        "payee",
        "recipient_original",
        "redacted",
        "secret_digest",
        "raw_identifiers",
    )

    agent: str
    action: str
    amount: Money
    recipient: str
    payee: Payee
    recipient_original: str
    environment: str | None
    category: str | None
    purpose: str | None
    recipient_name: str | None
    rail: str | None
    session_id: str | None
    idempotency_key: str | None
    metadata: Mapping[str, MetadataValue]
    redacted: tuple[str, ...]
    secret_digest: str | None
    raw_identifiers: tuple[tuple[str, str], ...]
    _fingerprint: str | None

    def __init__(
        self,
        *,
        agent: str,
        action: str,
        amount: str | int | Decimal | Money,
        currency: str | None = None,
        recipient: str | Payee,
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
        payee = parse_payee(recipient)
        values: dict[str, object] = {
            "agent": _identifier("agent", agent),
            "action": _action(action),
            "amount": _money(amount, currency, currencies, amount_minor_max),
            "payee": payee,
            "recipient": payee.text,
            "recipient_original": recipient if isinstance(recipient, str) else payee.text,
            "environment": _optional_identifier("environment", environment, lower=True),
            "category": _optional_identifier("category", category, lower=True),
            "purpose": free_text("purpose", purpose, limits.free_text_bytes_max),
            "recipient_name": free_text(
                "recipient_name", recipient_name, limits.name_bytes_max, line_breaks=False
            ),
            "rail": _optional_identifier("rail", rail, lower=True),
            "session_id": _optional_identifier("session_id", session_id),
            "idempotency_key": _idempotency_key(idempotency_key),
            "metadata": _metadata(metadata),
            "redacted": (),
            "secret_digest": None,
            # The identifiers as sent, before any case folding, for the Warden's secret check
            # (paywarden.admission); in memory only, never stored.
            "raw_identifiers": _raw_identifiers(
                recipient=recipient if isinstance(recipient, str) else None,
                action=action,
                category=category,
                rail=rail,
                session_id=session_id,
                idempotency_key=idempotency_key,
                metadata_keys=" ".join(str(key) for key in metadata) if metadata else None,
            ),
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
        fields["recipient"] = self.payee
        fields.update(changes)
        if "currency" in changes and "amount" not in changes:
            fields["amount"] = self.amount.to_decimal()
        elif "currency" not in changes and not isinstance(fields["amount"], Money):
            fields["currency"] = self.amount.currency  # a new amount as text keeps the currency
        copy = PaymentIntent(**fields)
        if "recipient" in changes:
            return copy
        return copy.with_fields(recipient_original=self.recipient_original)

    def with_fields(self, **values: object) -> PaymentIntent:
        """A copy with already-checked values set as they are (the Warden's boundary steps:
        the deployment's environment, redacted text); the fingerprint is computed again."""
        copy = object.__new__(PaymentIntent)
        for name in PaymentIntent.__slots__:
            object.__setattr__(copy, name, values.get(name, getattr(self, name)))
        object.__setattr__(copy, "_fingerprint", None)
        return copy

    def with_environment(self, environment: str) -> PaymentIntent:
        """A copy with the deployment's environment filled in (only that field is checked)."""
        value = _optional_identifier("environment", environment, lower=True)
        return self.with_fields(environment=value)

    def canonical(self) -> dict[str, object]:
        """The normalised fields as plain JSON values; the basis of the fingerprint."""
        data: dict[str, object] = {
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
        if self.secret_digest is not None:
            # Redacted values differ only here: a keyed HMAC of them, never the values.
            data["secret_digest"] = self.secret_digest
        return data

    def fingerprint(self) -> str:
        """SHA-256 over the canonical fields (the idempotency key itself is excluded)."""
        cached: str | None = self._fingerprint
        if cached is not None:
            return cached
        digest = hashlib.sha256(canonical_bytes(self.canonical())).hexdigest()
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


def _raw_identifiers(**fields: object) -> tuple[tuple[str, str], ...]:
    return tuple((name, value) for name, value in fields.items() if isinstance(value, str))


def normalize_recipient(value: object) -> str:
    """The canonical text of a recipient (`Payee.text`), used by every rule, counter and
    fingerprint; raises `InvalidRecipientError` for a recipient that is no valid payee."""
    return parse_payee(value).text


def normalize_recipient_pattern(pattern: object) -> str:
    """The canonical form of a recipient pattern in a policy or grant (see
    `paywarden.policy.recipients`)."""
    from paywarden.policy.recipients import parse_pattern

    return parse_pattern(pattern).text


def utf8_bytes(text: str) -> int:
    """The size of `text` in UTF-8; lone surrogates (refused elsewhere) count 3 bytes."""
    return len(text.encode("utf-8", "surrogatepass"))


def free_text(field: str, value: object, bytes_max: int, *, line_breaks: bool = True) -> str | None:
    """Free text shown to humans: at most `bytes_max` UTF-8 bytes, no control, invisible or
    bidi characters, no lone surrogates (tabs and line breaks where `line_breaks`)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidIntentError(f"{field} must be a string, not {type(value).__name__}")
    if utf8_bytes(value) > bytes_max:
        raise InvalidIntentError(f"{field} is longer than {bytes_max} bytes (UTF-8)")
    try:
        reject_invisible(field, value, line_breaks=line_breaks)
    except InvalidRecipientError as error:
        raise InvalidIntentError(str(error)) from None
    return value


def _text(field: str, value: object, chars_max: int) -> str:
    if not isinstance(value, str):
        raise InvalidIntentError(f"{field} must be a string, not {type(value).__name__}")
    if len(value) > chars_max:
        raise InvalidIntentError(f"{field} is longer than {chars_max} characters")
    return value


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
    size = 0
    for key, item in value.items():
        if not isinstance(key, str) or len(key) > limits.metadata_key_chars_max:
            raise InvalidIntentError(f"metadata key `{key!s:.80}` must be a short ASCII identifier")
        if not _IDENTIFIER.match(key):
            raise InvalidIntentError(f"metadata key `{key}` must be a short ASCII identifier")
        result[key] = _metadata_value(key, item)
        size += len(key) + (utf8_bytes(item) if isinstance(item, str) else 8)
    if size > limits.metadata_bytes_max:
        raise InvalidIntentError(
            f"metadata is larger than {limits.metadata_bytes_max} bytes (keys and values, UTF-8)"
        )
    return MappingProxyType(result)  # read-only: the fingerprint is cached


def _metadata_value(key: str, item: object) -> MetadataValue:
    if isinstance(item, float):
        raise InvalidIntentError(f"metadata `{key}` is a float; use text or an integer")
    if item is None or isinstance(item, bool):
        return item
    if isinstance(item, int):
        if abs(item) > limits.metadata_int_abs_max:
            raise InvalidIntentError(
                f"metadata `{key}` is an integer beyond ±2**53; send large numbers as text"
            )
        return item
    if isinstance(item, str):
        text = free_text(f"metadata `{key}`", item, limits.metadata_value_bytes_max)
        assert text is not None
        return text
    raise InvalidIntentError(f"metadata `{key}` must be text, an integer, a bool or null")
