"""The boundary: what happens to every intent before anything is fingerprinted, decided or stored.

`admit` runs once per request, first, in `Warden.authorize` and `Warden.pay`:

- Secrets are removed from the agent's free text (`purpose`, `recipient_name`) and metadata by
  the policy's redactor (key names and value formats, see docs/redaction.md). Every later step
  (policy, fingerprints, approvals, payments, the audit log, webhooks) sees `[redacted]`. So
  that two requests that differ only in a secret are still told apart (idempotency, approval
  binding), the intent carries `secret_digest`: an HMAC-SHA256 of the original values under a
  key derived from the deployment's server secret, never a plain hash (a plain hash of a PIN
  can be reversed by trying every PIN).
- Identity fields are never redacted, so they must not hold a secret at all: a payee, session,
  category, rail or idempotency key that looks like one is refused (`invalid_intent`).
- The raw recipient text, kept for the audit record only, is scrubbed too (user information and
  secret query parameters of a URL, secret values).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from types import MappingProxyType

from paywarden.audit.canonical import canonical_bytes
from paywarden.audit.redact import REDACTED, Redactor
from paywarden.errors import InvalidIntentError, InvalidRecipientError
from paywarden.intent import PaymentIntent

SecretKey = Callable[[], bytes]
_DIGEST_CONTEXT = b"paywarden intent secrets v1"
_IDENTITY_FIELDS = ("session_id", "category", "rail", "idempotency_key", "action")


def digest_key(server_secret: bytes) -> bytes:
    """The HMAC key for secret digests, derived from the server secret (never used as is)."""
    return hmac.new(server_secret, _DIGEST_CONTEXT, hashlib.sha256).digest()


def admit(intent: PaymentIntent, redactor: Redactor, secret_key: SecretKey) -> PaymentIntent:
    """The intent as every later step may see it: secrets out, identities free of secrets.

    Idempotent: admitting an admitted intent returns an equal intent. `secret_key` is called
    only when a secret was found (it may create the server secret file).
    """
    _refuse_secret_identities(intent, redactor)
    free = {
        "purpose": intent.purpose,
        "recipient_name": intent.recipient_name,
        "metadata": dict(intent.metadata),
    }
    clean, paths = redactor.redact(free, "$.intent")
    original, scrubbed = _scrub_original(intent.recipient_original, intent.payee.text, redactor)
    new_secrets = clean != free  # values already `[redacted]` are not secrets found again
    if not new_secrets and not scrubbed:
        return intent
    changes: dict[str, object] = {"recipient_original": original}
    if new_secrets:
        assert isinstance(clean, dict)  # redact returns the shape it was given
        digest = hmac.new(
            secret_key(),
            canonical_bytes([free, intent.secret_digest]),
            hashlib.sha256,
        ).hexdigest()
        changes.update(
            purpose=clean["purpose"],
            recipient_name=clean["recipient_name"],
            metadata=_frozen(clean["metadata"]),
            redacted=tuple(sorted({*intent.redacted, *paths})),
            secret_digest=digest,
        )
    return intent.with_fields(**changes)


def identifier_secret(redactor: Redactor, value: str) -> str | None:
    """The kind of secret a machine identifier (idempotency key, session id, category, rail,
    action, metadata key) carries, by the token formats only: in those a digit run that passes
    for a card number is an order number or a timestamp far more often than a card. A payee
    is scanned for card numbers too."""
    kind = redactor.secret_kind(value)
    return None if kind == "card_number" else kind


def _refuse_secret_identities(intent: PaymentIntent, redactor: Redactor) -> None:
    """Identifiers are stored as they are, so none may look like a secret: checked as sent
    (before case folding could hide one) and as canonical, with the policy's redactor."""
    payee = intent.payee
    # A blockchain address is hex or bech32 by construction: a digit run in it may pass for a
    # card number, but it is the address, not a secret.
    if payee.kind != "address":  # a payee is scanned for card numbers too: never pay "to" one
        kind = redactor.secret_kind(payee.text)
        if kind is None and intent.recipient_original != payee.text:
            kind = redactor.secret_kind(_without_query(intent.recipient_original))
        if kind is not None and kind != "url_password":
            raise InvalidRecipientError(
                f"the recipient contains what looks like a secret ({kind}); a payee never "
                "carries credentials, and paywarden does not store them"
            )
    for name, value in (*intent.raw_identifiers, *_canonical_identifiers(intent)):
        if name == "recipient":
            continue  # checked above, without its query (which is scrubbed, not stored)
        kind = identifier_secret(redactor, value)
        if kind is not None:
            what = "a metadata key" if name == "metadata_keys" else f"`{name}`"
            raise InvalidIntentError(
                f"{what} looks like a secret ({kind}); identifiers are stored as they are, so "
                "they must never carry one"
            )


def refusal_fields(intent: PaymentIntent, redactor: Redactor) -> dict[str, object]:
    """The fields of an intent refused at admission, as they may be recorded: every identifier
    that looks like a secret, as sent or as canonical, replaced by `[redacted]` (so is every
    metadata key that does); free text is redacted by the refusal record itself."""
    fields: dict[str, object] = {**intent.canonical(), "recipient": intent.recipient_original}
    flagged = {
        name
        for name, value in (*intent.raw_identifiers, *_canonical_identifiers(intent))
        if identifier_secret(redactor, value) is not None
    }
    if redactor.secret_kind(intent.recipient) is not None:
        flagged.add("recipient")
    for name in flagged - {"metadata_keys"}:
        fields[name] = REDACTED
    if "metadata_keys" in flagged:
        fields["metadata"] = {
            (REDACTED if identifier_secret(redactor, key) else key): value
            for key, value in intent.metadata.items()
        }
    return fields


def _canonical_identifiers(intent: PaymentIntent) -> list[tuple[str, str]]:
    values = [(name, getattr(intent, name)) for name in _IDENTITY_FIELDS]
    return [(name, value) for name, value in values if value is not None]


def _without_query(text: str) -> str:
    """A URL text before its query and fragment (kept out of the payee, scrubbed instead)."""
    for mark in ("?", "#"):
        text = text.split(mark, 1)[0]
    return text


def _scrub_original(raw: str, canonical: str, redactor: Redactor) -> tuple[str, bool]:
    """The raw recipient text as it may be recorded. The canonical payee was checked already;
    what the raw text has beyond it is a query, a fragment or user information."""
    if raw == canonical:
        return raw, False
    scrubbed, changed = raw, False
    if any(char in raw for char in "?#@;"):
        scrubbed, changed = redactor.redact_url(raw)
    if redactor.secret_kind(scrubbed) is not None:
        return REDACTED, True
    return scrubbed, changed


def _frozen(value: object) -> Mapping[str, object]:
    assert isinstance(value, dict)
    return MappingProxyType(value)  # read-only, like every intent's metadata
