"""Disputes: contest a payment with its evidence, track the case, resolve it.

Opening a dispute freezes the evidence into the case: the payment, the decision with its proof
trace (which rules matched, the budgets and phase it saw, the policy version) and the audit
entries behind the decision, the hold, the approval and the payment, each with its chain hash,
so the case can be checked against the audit log later. One case at a time per payment.

Status: `open` -> `under_review` -> `refunded` | `rejected`; `open` or `under_review` ->
`withdrawn`. A resolution with a refund goes through the rail (see `Warden.refund`).
"""

from __future__ import annotations

import json

from paywarden.audit import records
from paywarden.errors import NotFoundError, StateConflictError
from paywarden.ports import DisputeRow, DisputeStatus, LedgerTx, PaymentRow

ACTIVE: tuple[DisputeStatus, ...] = ("open", "under_review")
DISPUTABLE = ("settled", "refunded")


def evidence(tx: LedgerTx, payment: PaymentRow) -> dict[str, object]:
    """The payment, its decision's proof trace and the audit entries behind them."""
    body = tx.decision_body(payment.decision_id)
    decision = json.loads(body)["decision"] if body is not None else None
    approval = tx.approval_by_hold(payment.hold_id)
    refs = [payment.decision_id, payment.hold_id, payment.payment_id]
    if approval is not None:
        refs.append(approval.approval_id)
    entries = sorted((entry for ref in refs for entry in tx.audit_by_ref(ref)), key=lambda e: e.seq)
    return {
        "payment": {
            "payment_id": payment.payment_id,
            "agent": payment.agent,
            "rail": payment.rail,
            "rail_payment_id": payment.rail_payment_id,
            "amount_minor": payment.amount_minor,
            "currency": payment.currency,
            "state": payment.state,
            "refunded_minor": payment.refunded_minor,
            "intent": json.loads(payment.intent),
        },
        "decision": decision,
        "approval_id": approval.approval_id if approval is not None else None,
        "audit": [
            {"seq": e.seq, "kind": e.kind, "ref_id": e.ref_id, "hash": e.entry_hash}
            for e in entries
        ],
    }


def open_case(
    tx: LedgerTx, payment_id: str, reason: str, actor: str, dispute_id: str, now_us: int
) -> DisputeRow:
    payment = tx.payment(payment_id)
    if payment is None:
        raise NotFoundError(f"no payment `{payment_id}`")
    if payment.state not in DISPUTABLE:
        raise StateConflictError(
            f"payment `{payment_id}` is {payment.state}: only money that moved can be disputed"
        )
    active = [d for d in tx.disputes(payment_id, None, 100) if d.status in ACTIVE]
    if active:
        raise StateConflictError(
            f"payment `{payment_id}` already has dispute `{active[0].dispute_id}` "
            f"({active[0].status})"
        )
    row = DisputeRow(
        dispute_id=dispute_id,
        payment_id=payment_id,
        status="open",
        reason=reason,
        evidence=json.dumps(evidence(tx, payment), sort_keys=True),
        opened_by=actor,
        resolution=None,
        refund_id=None,
        created_us=now_us,
        updated_us=now_us,
    )
    tx.dispute_insert(row)
    audit(tx, row, "opened", actor, now_us, reason)
    return row


def get(tx: LedgerTx, dispute_id: str) -> DisputeRow:
    row = tx.dispute(dispute_id)
    if row is None:
        raise NotFoundError(f"no dispute `{dispute_id}`")
    return row


def move(
    tx: LedgerTx,
    row: DisputeRow,
    target: DisputeStatus,
    actor: str,
    now_us: int,
    note: str,
    refund_id: str | None = None,
) -> DisputeRow:
    """Compare-and-set the case's status once, and audit it."""
    if row.status not in ACTIVE or not tx.dispute_transition(
        row.dispute_id, row.status, target, now_us, note or None, refund_id
    ):
        raise StateConflictError(f"dispute `{row.dispute_id}` is already {row.status}")
    audit(tx, row, target, actor, now_us, note)
    return get(tx, row.dispute_id)


def audit(tx: LedgerTx, row: DisputeRow, event: str, actor: str, now_us: int, note: str) -> None:
    records.append(
        tx,
        now_us,
        f"dispute.{event}",
        row.payment_id,
        {
            "actor": actor,
            "dispute_id": row.dispute_id,
            "payment_id": row.payment_id,
            "note": note,
        },
    )
