"""An approval request as a value: what it is bound to, how its intent is stored and read
back, how many operators it needs, how long it lives, and how it is shown.

A request is bound to the intent's *binding* fingerprint: agent, action, amount, currency,
recipient, environment, rail, category, session and metadata (and the keyed digest of any
redacted secret). A request approved in staging can therefore never authorize production, and a
changed amount, recipient or currency is a different request. Free text the agent writes
(`purpose`, `recipient_name`) is shown to the operator but not bound.

What happens to a request (request, vote, approve, reject, expire, consume) is in
`paywarden.actions.approvals`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from paywarden.audit.canonical import canonical_bytes, canonical_text
from paywarden.intent import PaymentIntent
from paywarden.money import Money
from paywarden.policy.compiler import CompiledPolicy
from paywarden.policy.decision import Decision
from paywarden.ports import ApprovalRow, VoteRow

_BOUND_FIELDS = (
    "agent",
    "action",
    "amount_minor",
    "currency",
    "recipient",
    "environment",
    "rail",
    "category",
    "session_id",
    "metadata",
)


def binding(intent: PaymentIntent) -> str:
    """The fingerprint an approval is bound to (free text excluded). A keyed digest of redacted
    secrets is bound too, when there is one: another secret is another request."""
    canonical = intent.canonical()
    bound = {name: canonical[name] for name in _BOUND_FIELDS}
    if intent.secret_digest is not None:
        bound["secret_digest"] = intent.secret_digest
    return hashlib.sha256(canonical_bytes(bound)).hexdigest()


def intent_json(intent: PaymentIntent, phase: str | None) -> str:
    """The intent (and the session phase it was decided in) as stored with its approval: the
    canonical, already redacted fields only, never the raw text the agent sent."""
    data = {
        **intent.canonical(),
        "payee_kind": intent.payee.kind,
        "redacted": list(intent.redacted),
        "exponent": intent.amount.exponent,
        "phase": phase,
    }
    return canonical_text(data)


def phase_of(row: ApprovalRow) -> str | None:
    phase = json.loads(row.intent).get("phase")
    return str(phase) if phase is not None else None


def intent_from_json(text: str) -> PaymentIntent:
    data = json.loads(text)
    money = Money(int(data["amount_minor"]), str(data["currency"]), int(data["exponent"]))
    intent = PaymentIntent(
        agent=data["agent"],
        action=data["action"],
        amount=money,
        recipient=data["recipient"],
        environment=data["environment"],
        category=data["category"],
        purpose=data["purpose"],
        recipient_name=data["recipient_name"],
        rail=data["rail"],
        session_id=data["session_id"],
        metadata=data["metadata"],
    )
    return intent.with_fields(
        redacted=tuple(data.get("redacted", ())), secret_digest=data.get("secret_digest")
    )


def required_operators(policy: CompiledPolicy, intent: PaymentIntent) -> int:
    """2 distinct operators above the policy's four-eyes amount, else 1 (2 when unknowable)."""
    threshold = policy.approvals.two_person_above
    if threshold is None:
        return 1
    amount = intent.amount
    converted = policy.fx.convert_minor(
        amount.amount_minor,
        amount.currency,
        amount.exponent,
        threshold.currency,
        threshold.exponent,
    )
    if converted is None:
        return 2  # no rate to compare with: ask for more eyes, not fewer
    return 2 if converted > threshold.amount_minor else 1


def ttl_seconds(policy: CompiledPolicy, decision: Decision) -> int:
    """The shortest lifetime among the deciding rules' overrides, else the policy default."""
    overrides = [
        rule.approval_ttl_seconds
        for rule in policy.rules
        if rule.rule_id in decision.rule_ids and rule.approval_ttl_seconds is not None
    ]
    return min(overrides) if overrides else policy.approvals.ttl_seconds


@dataclass(frozen=True, slots=True)
class ApprovalView:
    """An approval request with its votes, as operators and agents see it."""

    row: ApprovalRow
    votes: tuple[VoteRow, ...]

    @property
    def approval_id(self) -> str:
        return self.row.approval_id

    @property
    def status(self) -> str:
        return self.row.status

    @property
    def approved_by(self) -> tuple[str, ...]:
        return tuple(vote.operator_id for vote in self.votes if vote.vote == "approve")

    @property
    def intent(self) -> PaymentIntent:
        return intent_from_json(self.row.intent)

    def to_dict(self) -> dict[str, object]:
        row = self.row
        return {
            "approval_id": row.approval_id,
            "status": row.status,
            "agent": row.agent,
            "decision_id": row.decision_id,
            "hold_id": row.hold_id,
            "intent": json.loads(row.intent),
            "required": row.required,
            "rule_ids": json.loads(row.rule_ids),
            "created_us": row.created_us,
            "expires_us": row.expires_us,
            "decided_us": row.decided_us,
            "note": row.note,
            "votes": [
                {
                    "operator_id": v.operator_id,
                    "vote": v.vote,
                    "reason": v.reason,
                    "created_us": v.created_us,
                }
                for v in self.votes
            ],
        }


def event(row: ApprovalRow, kind: str, text: str) -> dict[str, object]:
    """A webhook event body; `text` makes it readable as a Slack message as it is.

    The text quotes values agents and operators wrote, so it is made inert as a whole (the
    other members carry the exact values): Slack's control characters are escaped (`&amp;`,
    `&lt;`, `&gt;`), so `<!channel>`, `<@U123>` and `<https://x|label>` show as written; every
    `@` becomes the fullwidth `＠`, so no `@channel`, `@here`, `@everyone` or `@user` mentions
    anyone; and characters that do not print (line breaks included) become spaces, so the
    message stays the one line paywarden wrote."""
    escapes = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "@": "\uff20"})
    flat = "".join(char if char.isprintable() else " " for char in text)
    intent = json.loads(row.intent)
    return {
        "type": kind,
        "approval_id": row.approval_id,
        "status": row.status,
        "agent": row.agent,
        "action": intent["action"],
        "amount_minor": intent["amount_minor"],
        "currency": intent["currency"],
        "recipient": intent["recipient"],
        "environment": intent["environment"],
        "expires_us": row.expires_us,
        "text": flat.translate(escapes),
    }
