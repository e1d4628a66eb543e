"""Human approvals: bound to one intent, decided by distinct operators, expiring, used once.

An approval request is bound to the intent's *binding* fingerprint: agent, action, amount,
currency, recipient, environment, rail, category, session and metadata. A request approved in
staging can therefore never authorize production, and a changed amount, recipient or currency
is a different request. Free text the agent writes (`purpose`, `recipient_name`) is shown to
the operator but not bound. The request holds its amount while it waits; expiry or rejection
releases the hold, and the one payment it authorizes consumes it.

All functions run inside a store transaction handed in by the Warden.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace

from paywarden import limits
from paywarden.audit import records
from paywarden.audit.canonical import canonical_text
from paywarden.errors import ForbiddenError, InvalidInputError, NotFoundError, StateConflictError
from paywarden.intent import PaymentIntent, free_text
from paywarden.ledger import settle
from paywarden.money import Money
from paywarden.policy.compiler import CompiledPolicy
from paywarden.policy.decision import Decision
from paywarden.ports import ApprovalRow, HoldRow, LedgerTx, VoteRow

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
    return hashlib.sha256(canonical_text(bound).encode("utf-8")).hexdigest()


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


def view(tx: LedgerTx, approval_id: str) -> ApprovalView:
    row = tx.approval(approval_id)
    if row is None:
        raise NotFoundError(f"no approval `{approval_id}`")
    return ApprovalView(row, tuple(tx.votes(approval_id)))


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


def notify(tx: LedgerTx, row: ApprovalRow, kind: str, text: str, now_us: int) -> None:
    """Queue a webhook event in the same transaction (delivered later, never blocking)."""
    if tx.meta_get("webhooks") == "on":
        tx.outbox_insert(kind, canonical_text(event(row, kind, text)), now_us)


def check_operator(tx: LedgerTx, operator_id: str, requester: str | None = None) -> None:
    """Only registered, enabled human operators decide; never the requesting agent."""
    operator = tx.operator(operator_id)
    if operator is None or operator.disabled_us is not None:
        raise ForbiddenError(f"`{operator_id}` is not a registered operator")
    if requester is not None and operator_id == requester:
        raise ForbiddenError(f"`{operator_id}` requested this payment and cannot decide it")


def expire_if_due(tx: LedgerTx, row: ApprovalRow, now_us: int) -> bool:
    """Expire a pending or approved request whose time ran out; release its hold."""
    if row.status not in ("pending", "approved") or row.expires_us > now_us:
        return False
    if tx.approval_transition(row.approval_id, row.status, "expired", now_us, "expired"):
        release_hold(tx, row.hold_id, "expired", now_us, "system")
        expired = replace(row, status="expired")
        records.append(tx, now_us, "approval.expired", row.approval_id, expired_body(expired))
        notify(tx, expired, "approval.decided", f"Approval {row.approval_id} expired", now_us)
    return True


def expired_body(row: ApprovalRow) -> dict[str, object]:
    return {
        "actor": "system",
        "approval_id": row.approval_id,
        "status": row.status,
        "hold_id": row.hold_id,
    }


def release_hold(tx: LedgerTx, hold_id: str, state: str, now_us: int, actor: str) -> None:
    hold: HoldRow | None = tx.hold(hold_id)
    if hold is not None and hold.state == "held":
        settle.settle(tx, hold, "expired" if state == "expired" else "voided", now_us, actor)


def vote(
    tx: LedgerTx, approval_id: str, operator_id: str, choice: str, reason: str, now_us: int
) -> ApprovalRow | None:
    """Record one operator's vote on a pending request; returns the row, or None when the
    request had expired (the expiry is recorded; the caller raises after committing it).

    A blank reason is bad input (`InvalidInputError`): it is refused before anything else is
    looked at, so the request is left exactly as it was, not even expired."""
    if not reason.strip():
        raise InvalidInputError("a decision needs a reason")
    free_text("reason", reason, limits.free_text_bytes_max)  # bounded, no invisible characters
    row = tx.approval(approval_id)
    if row is None:
        raise NotFoundError(f"no approval `{approval_id}`")
    check_operator(tx, operator_id, requester=row.agent)
    if expire_if_due(tx, row, now_us) or row.status == "expired":
        return None
    if row.status != "pending":
        raise StateConflictError(f"approval `{approval_id}` is already {row.status}")
    if not tx.vote_insert(
        VoteRow(
            approval_id, operator_id, "approve" if choice == "approve" else "reject", reason, now_us
        )
    ):
        raise ForbiddenError(
            f"`{operator_id}` already decided approval `{approval_id}`; another operator must"
        )
    records.append(
        tx,
        now_us,
        f"approval.{choice}_vote",
        approval_id,
        {
            "actor": f"operator:{operator_id}",
            "approval_id": approval_id,
            "vote": choice,
            "reason": reason,
        },
    )
    return row


def sweep(tx: LedgerTx, now_us: int, batch_max: int) -> int:
    """Expire overdue holds (a bounded sweep), and the approval requests they belonged to."""
    expired = settle.expire_due(tx, now_us, batch_max)
    for hold in expired:
        row = tx.approval_by_hold(hold.hold_id)
        if (
            row is not None
            and row.status in ("pending", "approved")
            and tx.approval_transition(row.approval_id, row.status, "expired", now_us, "expired")
        ):
            closed = replace(row, status="expired")
            records.append(tx, now_us, "approval.expired", row.approval_id, expired_body(closed))
            notify(tx, closed, "approval.decided", f"Approval {row.approval_id} expired", now_us)
    return len(expired)
