"""Paying on a rail: authorize, submit, settle, and reconcile what is unknown.

`pay` admits the intent, asks the rail whether it can take it at all (before anything is held:
`rail_refused`), authorizes it, records the payment as `submitted` in one transaction (the
breaker gate included, `rail_calls`), calls the rail outside any transaction with a stable
idempotency key derived from the authorization (`pw_<hold id>`), reused on every retry and every
reconciliation, and applies the answer in a second transaction. A settled receipt captures the
hold; a definite failure voids it; `pending` and `unknown` keep the hold (its expiry is lifted,
so budget money can never leak while the outcome is open) until `reconcile` asks the rail with
the same key. Each payment transition is a compare-and-set.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

from paywarden import limits
from paywarden.actions import authorize, rail_calls, refunds
from paywarden.audit import records
from paywarden.audit.canonical import canonical_text
from paywarden.errors import (
    InvalidInputError,
    NotFoundError,
    PaywardenError,
    StateConflictError,
)
from paywarden.intent import PaymentIntent
from paywarden.ledger import settle
from paywarden.mandates import Presented
from paywarden.policy.decision import Decision
from paywarden.ports import BreakerRow, PaymentRow, PaymentState, UnitOfWork
from paywarden.rails import PaymentRail, Receipt, refusal
from paywarden.runtime import Runtime

NEVER_US = 2**62


@dataclass(frozen=True, slots=True)
class PaymentOutcome:
    """`decision` always; `payment` and `receipt` when the rail was (or would have been) used."""

    decision: Decision
    payment: PaymentRow | None = None
    receipt: Receipt | None = None

    @property
    def state(self) -> str:
        return self.payment.state if self.payment is not None else "not_submitted"


def begin(
    tx: UnitOfWork,
    decision: Decision,
    intent: PaymentIntent,
    rail: str,
    payment_id: str,
    now_us: int,
) -> tuple[PaymentRow, bool]:
    """The payment row for an allowed decision, and whether the rail should be called now."""
    existing = tx.payments.get_by_decision(str(decision.decision_id))
    if existing is not None:
        return existing, False  # a replayed decision never pays again
    # A hold that expired (a worker died after authorize) can no longer back a payment: money
    # moved against it would be counted by no budget. The agent must authorize again.
    hold = settle.open_hold(tx, str(decision.hold_id), now_us)
    breaker = hold.state == "held" and rail_calls.breaker_gate(tx, rail, now_us)
    state: PaymentState = "submitted" if breaker else "failed"
    if hold.state != "held":
        refusal = f"hold `{hold.hold_id}` is {hold.state}: authorize again"
    else:
        refusal = f"circuit breaker for `{rail}` is open (or its one probe is in flight)"
    row = PaymentRow(
        payment_id=payment_id,
        decision_id=str(decision.decision_id),
        hold_id=str(decision.hold_id),
        agent=intent.agent,
        rail=rail,
        rail_key=f"pw_{decision.hold_id}",
        intent=canonical_text(intent.canonical()),
        amount_minor=intent.amount_minor,
        currency=intent.currency,
        state=state,
        rail_payment_id=None,
        refunded_minor=0,
        error=None if breaker else refusal,
        created_us=now_us,
        updated_us=now_us,
    )
    tx.payments.insert(row)
    if breaker:
        tx.holds.set_expiry(row.hold_id, NEVER_US)  # held until the outcome is known
    else:
        _release(tx, row, "voided", now_us)
    records.append(
        tx,
        now_us,
        f"payment.{state}",
        payment_id,
        {
            "actor": f"agent:{intent.agent}",
            "payment_id": payment_id,
            "rail": rail,
            "decision_id": row.decision_id,
            "error": row.error,
        },
    )
    return row, breaker


def finish(
    tx: UnitOfWork,
    row: PaymentRow,
    receipt: Receipt,
    now_us: int,
    *,
    count_for_breaker: bool = True,
) -> PaymentRow:
    """Apply a rail's answer to a submitted or unknown payment, once.

    A live payment's answer counts for the rail's breaker. Reconciliation passes
    `count_for_breaker=False`: a rail that cannot know an old payment's outcome says nothing
    about whether it can take new ones, and must not open (or close) the breaker."""
    targets: dict[str, PaymentState] = {
        "settled": "settled",
        "failed": "failed",
        "unknown": "unknown",
    }
    target = targets.get(receipt.status)
    rail_failure = receipt.status == "unknown" or (receipt.status == "failed" and receipt.retryable)
    if count_for_breaker:
        rail_calls.breaker_record(tx, row.rail, failed=rail_failure, now_us=now_us)
    if target is None and receipt.rail_payment_id and row.rail_payment_id is None:
        # Pending: the rail has it. Record its id, so reconcile knows the rail answered.
        tx.payments.transition(
            row.payment_id, row.state, row.state, now_us, receipt.rail_payment_id, None
        )
        return replace(row, rail_payment_id=receipt.rail_payment_id, updated_us=now_us)
    if target is None or target == row.state:
        return row  # pending stays submitted; the same answer again changes nothing
    if not tx.payments.transition(
        row.payment_id, row.state, target, now_us, receipt.rail_payment_id, receipt.error
    ):
        current = tx.payments.get(row.payment_id)
        return current if current is not None else row
    if target == "settled":
        _release(tx, row, "captured", now_us)
    elif target == "failed":
        _release(tx, row, "voided", now_us)
    records.append(
        tx,
        now_us,
        f"payment.{target}",
        row.payment_id,
        {
            "actor": "system",
            "payment_id": row.payment_id,
            "rail": row.rail,
            "rail_payment_id": receipt.rail_payment_id,
            "error": receipt.error,
        },
    )
    return replace(
        row,
        state=target,
        rail_payment_id=receipt.rail_payment_id or row.rail_payment_id,
        error=receipt.error,
        updated_us=now_us,
    )


def _release(tx: UnitOfWork, row: PaymentRow, state: str, now_us: int) -> None:
    hold = tx.holds.get(row.hold_id)
    if hold is not None and hold.state == "held":
        captured = hold.amount_minor if state == "captured" else None
        settle.settle(
            tx, hold, "captured" if state == "captured" else "voided", now_us, "system", captured
        )


# Use cases -----------------------------------------------------------------------------------


def pay(
    rt: Runtime,
    intent: PaymentIntent,
    *,
    actor: str | None = None,
    mandate: Presented | None = None,
) -> PaymentOutcome:
    """Authorize, then pay an allowed intent on its rail (`intent.rail`, default `sandbox`).

    The rail is called outside any transaction with the authorization's stable key. The hold
    is captured when the rail settles, voided when it definitely fails, and kept as `unknown`
    when the outcome is ambiguous (see `reconcile`). Paying the same intent again with the same
    idempotency key returns the first payment and never pays twice."""
    intent = authorize.admit(rt, intent)
    rail_name = intent.rail or "sandbox"
    rail, refused = _rail_for(rt, intent, rail_name)
    if refused is not None:
        return PaymentOutcome(authorize.refuse_on_rail(rt, intent, refused, actor))
    decision = authorize.decide_admitted(rt, intent, actor, mandate)
    if not decision.allowed or decision.hold_id is None or rail is None:
        return PaymentOutcome(decision)  # rail is set whenever nothing refused
    recorded = authorize.with_environment(rt, intent)[0]  # as authorized
    row, submit = rt.store.run(
        partial(_begin, decision, recorded, rail_name, rt.ids("pay"), rt.now_us())
    )
    if not submit:
        return PaymentOutcome(decision, row)
    receipt = rail_calls.call(rail, row, rt.sleep)
    row = rt.store.run(partial(_finish, row, receipt, rt.now_us()))
    return PaymentOutcome(decision, row, receipt)


def _begin(
    decision: Decision,
    intent: PaymentIntent,
    rail: str,
    payment_id: str,
    now_us: int,
    tx: UnitOfWork,
) -> tuple[PaymentRow, bool]:
    return begin(tx, decision, intent, rail, payment_id, now_us)  # looked up at call time


def _finish(row: PaymentRow, receipt: Receipt, now_us: int, tx: UnitOfWork) -> PaymentRow:
    return finish(tx, row, receipt, now_us)


def _rail_for(
    rt: Runtime, intent: PaymentIntent, rail_name: str
) -> tuple[PaymentRail | None, str | None]:
    """The rail, or why it cannot take this payment: unknown, or not configured for this payee
    or agent. Checked before anything is held; a retry of a payment already decided under its
    idempotency key is not checked again (it replays, never pays twice)."""
    try:
        rail = rt.rails.get(rail_name)
    except PaywardenError as error:
        return None, str(error)
    if intent.idempotency_key is not None:
        with rt.store.read() as tx:
            if tx.decisions.get_by_key(intent.agent, intent.idempotency_key) is not None:
                return rail, None
    reason = refusal(
        rail,
        agent=intent.agent,
        action=intent.action,
        payee=intent.payee,
        amount_minor=intent.amount_minor,
        currency=intent.currency,
    )
    return rail, reason


def reconcile(rt: Runtime, batch_max: int = limits.reconcile_batch_max) -> list[PaymentRow]:
    """Ask the rails about every submitted or unknown payment, with the original keys, and
    settle each at most once; re-send every open refund with its own key. Returns the payments
    whose state changed."""
    with rt.store.read() as tx:
        open_rows = tx.payments.list_open(batch_max)
        open_refunds = tx.refunds.list_open(batch_max)
    changed = []
    for row in open_rows:
        updated = _reconcile_one(rt, row)
        if updated is not None and updated.state != row.state:
            changed.append(updated)
    for refund in open_refunds:
        try:
            refunds.send(rt, payment(rt, refund.payment_id), refund)
        except PaywardenError:
            continue  # stays open for the next pass
    return changed


def _reconcile_one(rt: Runtime, row: PaymentRow) -> PaymentRow | None:
    if _too_fresh(row, rt.now_us()):
        return None
    try:
        rail = rt.rails.get(row.rail)
    except PaywardenError:
        return None  # a rail that cannot be loaded here: its payments stay open
    receipt = rail_calls.with_retries(partial(rail.status, rail_calls.rail_request(row)), rt.sleep)
    with rt.store.write() as tx:
        current = tx.payments.get(row.payment_id)
        if current is None or current.state not in ("submitted", "unknown"):
            return None
        # Reconciling never counts for the breaker: an old payment's unknown outcome says
        # nothing about whether the rail can take new ones.
        return finish(tx, current, receipt, rt.now_us(), count_for_breaker=False)


def _too_fresh(row: PaymentRow, now_us: int) -> bool:
    """A submitted payment with no rail answer yet, young enough that its worker may still be
    sending it: reconcile waits (`limits.reconcile_grace_seconds`)."""
    return (
        row.state == "submitted"
        and row.rail_payment_id is None
        and now_us - row.created_us < limits.reconcile_grace_seconds * 1_000_000
    )


def breaker(rt: Runtime, rail: str) -> BreakerRow:
    """The rail's circuit breaker: `state` (closed, open, half_open), `consecutive_failures`
    and `opened_us`."""
    with rt.store.read() as tx:
        return tx.breakers.get(rail)


def payment(rt: Runtime, payment_id: str) -> PaymentRow:
    with rt.store.read() as tx:
        row = tx.payments.get(payment_id)
    if row is None:
        raise NotFoundError(f"no payment `{payment_id}`")
    return row


def payments(
    rt: Runtime, *, agent: str | None = None, state: str | None = None, limit: int = 100
) -> list[PaymentRow]:
    """Payments, newest first, optionally for one agent and in one state."""
    with rt.store.read() as tx:
        return tx.payments.list_recent(agent, state, max(1, min(limit, 1000)))


def resolve(
    rt: Runtime,
    payment_id: str,
    *,
    state: str,
    actor: str,
    reason: str,
    rail_payment_id: str | None = None,
) -> PaymentRow:
    """An operator's verdict on a payment whose outcome the rail cannot tell (`unknown`, or
    `submitted` with no answer): `settled` captures its hold, `failed` voids it. One compare-
    and-set, audited as `payment.resolved` with the actor and reason; a payment already
    settled, failed or refunded is a `StateConflictError`, and nothing changes."""
    if state not in ("settled", "failed"):
        raise InvalidInputError("`state` must be `settled` or `failed`")
    if not actor.strip() or not reason.strip():
        raise InvalidInputError("an actor and a reason are required to resolve a payment")
    now_us = rt.now_us()
    with rt.store.write() as tx:
        row = tx.payments.get(payment_id)
        if row is None:
            raise NotFoundError(f"no payment `{payment_id}`")
        target: PaymentState = "settled" if state == "settled" else "failed"
        if row.state not in ("unknown", "submitted") or not tx.payments.transition(
            payment_id, row.state, target, now_us, rail_payment_id, None
        ):
            raise StateConflictError(
                f"payment `{payment_id}` is `{row.state}`: only an `unknown` or `submitted` "
                "payment can be resolved by hand"
            )
        _release(tx, row, "captured" if target == "settled" else "voided", now_us)
        body: dict[str, object] = {
            "actor": actor,
            "payment_id": payment_id,
            "rail": row.rail,
            "from": row.state,
            "to": target,
            "reason": rt.clean_text("reason", reason),
            "rail_payment_id": rail_payment_id,
        }
        records.append(tx, now_us, "payment.resolved", payment_id, body)
    return replace(
        row,
        state=target,
        rail_payment_id=rail_payment_id or row.rail_payment_id,
        updated_us=now_us,
    )
