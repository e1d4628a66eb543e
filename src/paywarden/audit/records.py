"""What goes into an audit entry, and appending it in the caller's transaction.

Every decision and state change appends one entry in the same store transaction as the change
itself, so there is never a change without its entry nor an entry without its change. Secrets
in the agent-supplied text fields are redacted before hashing, and the entry lists the paths
that were redacted.
"""

from __future__ import annotations

from paywarden.audit.canonical import canonical_text
from paywarden.audit.chain import AuditEntry, link
from paywarden.audit.redact import DEFAULT_REDACTOR, Redactor
from paywarden.intent import PaymentIntent
from paywarden.ports import HoldRow, UnitOfWork


def intent_summary(intent: PaymentIntent) -> dict[str, object]:
    summary: dict[str, object] = {
        "agent": intent.agent,
        "action": intent.action,
        "amount_minor": intent.amount_minor,
        "currency": intent.currency,
        "recipient": intent.recipient,
        "payee": {"kind": intent.payee.kind, "identity": intent.payee.identity},
        "environment": intent.environment,
        "category": intent.category,
        "session_id": intent.session_id,
        "rail": intent.rail,
        "idempotency_key": intent.idempotency_key,
        "fingerprint": intent.fingerprint(),
        "purpose": intent.purpose,
        "recipient_name": intent.recipient_name,
        "metadata": dict(intent.metadata),
    }
    if intent.recipient_original != intent.recipient:
        summary["recipient_original"] = intent.recipient_original  # scrubbed on admission
    if intent.secret_digest is not None:
        summary["secret_digest"] = intent.secret_digest
    return summary


def decision_body(
    intent: PaymentIntent,
    decision: dict[str, object],
    actor: str,
    redactor: Redactor = DEFAULT_REDACTOR,
) -> dict[str, object]:
    """The entry of a decision: who asked, the intent as admitted (its secrets were redacted at
    the boundary, `paywarden.admission`), and the whole decision with its proof trace (outcome,
    reason code, rule ids, policy version, budgets seen)."""
    decision, scrubbed = redact_decision_text(decision, redactor)
    redacted = sorted({*intent.redacted, *scrubbed})
    return {
        "actor": actor,
        "intent": intent_summary(intent),
        "decision": decision,
        "redacted": redacted,
    }


def redact_decision_text(
    decision: dict[str, object], redactor: Redactor = DEFAULT_REDACTOR
) -> tuple[dict[str, object], list[str]]:
    """The decision with secrets removed from its free text: the reason and rule errors can
    quote an intent value (a `when` expression that failed on it), so they are scrubbed too."""
    redacted: list[str] = []
    clean = dict(decision)
    reason = clean.get("reason")
    if isinstance(reason, str):
        clean["reason"], paths = redactor.redact(reason, "$.decision.reason")
        redacted.extend(paths)
    trace = clean.get("trace")
    rules = trace.get("rules") if isinstance(trace, dict) else None
    if isinstance(trace, dict) and isinstance(rules, list):
        errors = [
            (index, rule)
            for index, rule in enumerate(rules)
            if isinstance(rule, dict) and rule.get("error") is not None
        ]
        if errors:
            rules = list(rules)
            for index, rule in errors:
                error, paths = redactor.redact(
                    rule["error"], f"$.decision.trace.rules[{index}].error"
                )
                if paths:
                    rules[index] = {**rule, "error": error}
                    redacted.extend(paths)
            clean["trace"] = {**trace, "rules": rules}
    return clean, redacted


def hold_body(
    hold: HoldRow, state: str, actor: str, captured_minor: int | None
) -> dict[str, object]:
    return {
        "actor": actor,
        "hold_id": hold.hold_id,
        "decision_id": hold.decision_id,
        "agent": hold.agent,
        "amount_minor": hold.amount_minor,
        "currency": hold.currency,
        "state": state,
        "captured_minor": captured_minor,
    }


def append(
    tx: UnitOfWork, now_us: int, kind: str, ref_id: str, body: dict[str, object]
) -> AuditEntry:
    """Append one entry after the current head, inside `tx`.

    Entry times never go backwards: a clock that jumps back is clamped to the head's time, so
    times are non-decreasing by sequence.
    """
    head = tx.audit.get_head()
    created_us = now_us if head is None else max(now_us, head.created_us)
    entry = link(head, created_us, kind, ref_id, canonical_text(body))
    tx.audit.append(entry)
    return entry
