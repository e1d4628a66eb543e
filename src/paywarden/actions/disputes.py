"""Disputes: contest a payment with its evidence, track the case, resolve it.

Opening a dispute freezes the evidence into the case: the payment, the decision with its proof
trace (which rules matched, the budgets and phase it saw, the policy version) and the audit
entries behind the decision, the hold, the approval and the payment, each with its chain hash,
so the case can be checked against the audit log later. One case at a time per payment.

Status: `open` -> `under_review` -> `refunded` | `rejected`; `open` or `under_review` ->
`withdrawn`. A resolution with a refund goes through the rail (`actions.refunds`). Only
registered operators review and resolve.
"""

from __future__ import annotations

import json

from paywarden.actions import refunds
from paywarden.actions.approvals import check_operator
from paywarden.audit import records
from paywarden.audit.canonical import canonical_text
from paywarden.errors import InvalidInputError, NotFoundError, StateConflictError
from paywarden.ports import DisputeRow, DisputeStatus, PaymentRow, UnitOfWork
from paywarden.runtime import Runtime

ACTIVE: tuple[DisputeStatus, ...] = ("open", "under_review")
DISPUTABLE = ("settled", "refunded")


def evidence(tx: UnitOfWork, payment: PaymentRow) -> dict[str, object]:
    """The payment, its decision's proof trace and the audit entries behind them."""
    body = tx.decisions.get_body(payment.decision_id)
    decision = json.loads(body)["decision"] if body is not None else None
    approval = tx.approvals.get_by_hold(payment.hold_id)
    refs = [payment.decision_id, payment.hold_id, payment.payment_id]
    if approval is not None:
        refs.append(approval.approval_id)
    entries = sorted(
        (entry for ref in refs for entry in tx.audit.list_by_ref(ref)), key=lambda e: e.seq
    )
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
    tx: UnitOfWork, payment_id: str, reason: str, actor: str, dispute_id: str, now_us: int
) -> DisputeRow:
    payment = tx.payments.get(payment_id)
    if payment is None:
        raise NotFoundError(f"no payment `{payment_id}`")
    if payment.state not in DISPUTABLE:
        raise StateConflictError(
            f"payment `{payment_id}` is {payment.state}: only money that moved can be disputed"
        )
    active = [d for d in tx.disputes.list_recent(payment_id, None, 100) if d.status in ACTIVE]
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
        evidence=canonical_text(evidence(tx, payment)),
        opened_by=actor,
        resolution=None,
        refund_id=None,
        created_us=now_us,
        updated_us=now_us,
    )
    tx.disputes.insert(row)
    audit(tx, row, "opened", actor, now_us, reason)
    return row


def get(tx: UnitOfWork, dispute_id: str) -> DisputeRow:
    row = tx.disputes.get(dispute_id)
    if row is None:
        raise NotFoundError(f"no dispute `{dispute_id}`")
    return row


def move(
    tx: UnitOfWork,
    row: DisputeRow,
    target: DisputeStatus,
    actor: str,
    now_us: int,
    note: str,
    refund_id: str | None = None,
) -> DisputeRow:
    """Compare-and-set the case's status once, and audit it."""
    if row.status not in ACTIVE or not tx.disputes.transition(
        row.dispute_id, row.status, target, now_us, note or None, refund_id
    ):
        raise StateConflictError(f"dispute `{row.dispute_id}` is already {row.status}")
    audit(tx, row, target, actor, now_us, note)
    return get(tx, row.dispute_id)


def audit(tx: UnitOfWork, row: DisputeRow, event: str, actor: str, now_us: int, note: str) -> None:
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


# Use cases -----------------------------------------------------------------------------------


def open_dispute(rt: Runtime, payment_id: str, *, reason: str, actor: str) -> DisputeRow:
    """Open a case on a settled payment; its proof trace and audit entries are attached."""
    if not reason or not reason.strip():
        raise InvalidInputError("a dispute needs a reason")
    text = rt.clean_text("reason", reason.strip())
    with rt.store.write() as tx:
        return open_case(tx, payment_id, text, actor, rt.ids("dsp"), rt.now_us())


def review_dispute(rt: Runtime, dispute_id: str, *, operator: str, note: str = "") -> DisputeRow:
    """An operator takes the case: `open` -> `under_review`."""
    note = rt.clean_text("note", note)
    with rt.store.write() as tx:
        check_operator(tx, operator)
        row = get(tx, dispute_id)
        if row.status != "open":
            raise StateConflictError(f"dispute `{dispute_id}` is {row.status}, not open")
        return move(tx, row, "under_review", f"operator:{operator}", rt.now_us(), note)


def resolve_dispute(
    rt: Runtime,
    dispute_id: str,
    outcome: str,
    *,
    operator: str,
    note: str = "",
    amount: str | int | None = None,
) -> DisputeRow:
    """Close a case: `refund` (all that is left, or `amount`, through the rail), `reject` or
    `withdraw`. A refund whose outcome is not settled yet leaves the case under review with the
    refund attached; resolve again after `reconcile`."""
    if outcome not in ("refund", "reject", "withdraw"):
        raise InvalidInputError("outcome must be `refund`, `reject` or `withdraw`")
    note = rt.clean_text("note", note)
    actor = f"operator:{operator}"
    with rt.store.write() as tx:
        check_operator(tx, operator)
        row = get(tx, dispute_id)
        if outcome != "refund":
            target: DisputeStatus = "rejected" if outcome == "reject" else "withdrawn"
            return move(tx, row, target, actor, rt.now_us(), note)
        pending = tx.refunds.get(row.refund_id) if row.refund_id else None
    if row.status not in ACTIVE:
        raise StateConflictError(f"dispute `{dispute_id}` is already {row.status}")
    if pending is None or pending.state == "failed":
        reason = f"dispute {dispute_id}: {note}"[:500]
        pending = refunds.refund(rt, row.payment_id, amount, reason=reason, actor=actor)
    with rt.store.write() as tx:
        row = get(tx, dispute_id)
        now_us = rt.now_us()
        if pending.state == "settled":
            return move(tx, row, "refunded", actor, now_us, note, pending.refund_id)
        if row.status == "open":
            row = move(tx, row, "under_review", actor, now_us, note, pending.refund_id)
        tx.disputes.transition(dispute_id, row.status, row.status, now_us, None, pending.refund_id)
        return get(tx, dispute_id)


def dispute(rt: Runtime, dispute_id: str) -> DisputeRow:
    with rt.store.read() as tx:
        return get(tx, dispute_id)


def disputes(
    rt: Runtime, *, payment_id: str | None = None, status: str | None = None, limit: int = 100
) -> list[DisputeRow]:
    with rt.store.read() as tx:
        return tx.disputes.list_recent(payment_id, status, max(1, min(limit, 1000)))
