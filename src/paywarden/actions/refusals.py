"""Refusals: requests that never became a held decision still leave an audit entry.

A request whose fields cannot become a payment intent (a bad amount, a malformed payee, a
secret in an identifier) and a request that failed inside paywarden (`internal_error`) are
recorded as `decision.refused` entries: the deny decision with its reason, who asked, and the
fields as sent, made safe to keep forever: secrets redacted, invisible and control characters
written as `\\u{...}` escapes, every text cut to a bounded number of bytes. So a probing agent
always leaves a trace, and nothing it sends can grow the append-only log by more than a few KB.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from datetime import datetime

from paywarden.audit import records
from paywarden.audit.canonical import canonical_text
from paywarden.audit.chain import AuditEntry
from paywarden.audit.redact import DEFAULT_REDACTOR, Redactor
from paywarden.clock import to_us
from paywarden.policy.decision import Decision
from paywarden.ports import UnitOfWork

KIND = "decision.refused"
FIELD_BYTES_MAX = 512
FIELDS_MAX = 24
# All the fields of one refusal together, as stored: a refused request adds at most a few KB.
FIELDS_BYTES_MAX = 4096
_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def safe_text(text: str, bytes_max: int = FIELD_BYTES_MAX) -> str:
    """`text` with every invisible, control or unpaired character written as `\\u{XXXX}`, cut
    to at most `bytes_max` UTF-8 bytes (marked with `…` when cut)."""
    parts = []
    for char in text:
        if unicodedata.category(char) in _UNSAFE:
            parts.append(f"\\u{{{ord(char):04X}}}")
        else:
            parts.append(char)
    safe = "".join(parts)
    encoded = safe.encode("utf-8")
    if len(encoded) <= bytes_max:
        return safe
    return encoded[: bytes_max - 3].decode("utf-8", "ignore") + "…"


def safe_value(value: object, depth: int = 0) -> object:
    """A JSON-safe, bounded copy of one value an agent sent."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) <= 2**53 else safe_text(str(value), 64)
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, Mapping) and depth == 0:
        items = list(value.items())[:FIELDS_MAX]
        return {
            _safe_key(key, index): safe_value(item, depth + 1)
            for index, (key, item) in enumerate(items)
        }
    return safe_text(f"<{type(value).__name__}> {value!r}", 128)


def _safe_key(key: object, index: int) -> str:
    """A mapping key as it may be stored: one that holds a secret is replaced (keys are never
    redacted by value otherwise)."""
    text = safe_text(str(key), 64)
    if DEFAULT_REDACTOR.secret_kind(str(key)) is not None:
        return f"[redacted key {index}]"
    return text


def safe_fields(
    fields: Mapping[str, object], redactor: Redactor
) -> tuple[dict[str, object], list[str]]:
    """The fields of a refused request as they may be stored: bounded, escaped, redacted."""
    bounded = {
        _safe_key(name, index): safe_value(value)
        for index, (name, value) in enumerate(list(fields.items())[:FIELDS_MAX])
    }
    recipient = bounded.get("recipient")
    if isinstance(recipient, str):
        bounded["recipient"] = redactor.redact_url(recipient)[0]
    clean, paths = redactor.redact(bounded, "$.intent")
    assert isinstance(clean, dict)
    return _within_size(clean), paths


def _within_size(fields: dict[str, object]) -> dict[str, object]:
    """`fields` if their encoding fits `FIELDS_BYTES_MAX`; else each value cut short, and as a
    last resort only the field names."""
    if len(canonical_text(fields).encode("utf-8")) <= FIELDS_BYTES_MAX:
        return fields
    short = {name: _shortened(value) for name, value in fields.items()}
    if len(canonical_text(short).encode("utf-8")) <= FIELDS_BYTES_MAX:
        return {**short, "_truncated": True}
    return {"_truncated": True, "_fields": sorted(fields)[:FIELDS_MAX]}


def _shortened(value: object) -> object:
    if isinstance(value, str):
        return safe_text(value, 64)
    if isinstance(value, dict):
        return {key: _shortened(item) for key, item in list(value.items())[:8]}
    return value


def record(
    tx: UnitOfWork,
    decision: Decision,
    fields: Mapping[str, object],
    redactor: Redactor,
    actor: str,
    now: datetime,
    error: str,
) -> AuditEntry:
    """Append the refusal's entry in `tx` (the decision carries its id already)."""
    intent, redacted = safe_fields(fields, redactor)
    decision_data, scrubbed = records.redact_decision_text(decision.to_record(), redactor)
    body: dict[str, object] = {
        "actor": safe_text(actor, 200),
        "error": error,
        "intent": intent,
        "decision": decision_data,
        "redacted": sorted(redacted + scrubbed),
    }
    return records.append(tx, to_us(now), KIND, str(decision.decision_id), body)
