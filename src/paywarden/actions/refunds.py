"""Refunds: give back all or part of a settled payment, in its own currency, exactly once.

`begin` checks what is still refundable (the amount minus what was refunded and what is in
flight) and records the refund as `submitted` in the same transaction, so two concurrent
refunds can never give back more than was paid. The rail is then called outside the
transaction with the refund's own stable key (`<payment key>_r<n>`), and `finish` applies the
answer once. A refund whose outcome is unknown stays open and is re-sent with the same key by
`reconcile` (rails treat a repeated refund key as the same refund).

With the policy's `refunds: {budget_effect: restore}`, a settled refund gives its share back to
each budget the payment was charged to (proportionally, rounding down, so a full refund gives
back exactly what was charged). The default, `keep`, leaves budgets as they were: an agent
cannot buy, refund and buy again past its budget.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

from paywarden.actions import rail_calls
from paywarden.audit import records
from paywarden.errors import InvalidInputError, NotFoundError, StateConflictError
from paywarden.money import DEFAULT_CURRENCIES, Money
from paywarden.ports import PaymentRow, RefundRow, RefundState, UnitOfWork
from paywarden.rails import Receipt
from paywarden.runtime import Runtime

OPEN_STATES: tuple[RefundState, ...] = ("submitted", "unknown")


def refundable_minor(tx: UnitOfWork, payment: PaymentRow) -> int:
    """What may still be refunded: paid, minus refunded, minus refunds in flight."""
    in_flight = sum(
        r.amount_minor
        for r in tx.refunds.list_by_payment(payment.payment_id)
        if r.state in OPEN_STATES
    )
    return payment.amount_minor - payment.refunded_minor - in_flight


def amount_minor(payment: PaymentRow, amount: str | int | None, refundable: int) -> int:
    """The refund in minor units of the payment's currency; the rest of it when None."""
    if amount is None:
        return refundable
    money = Money.parse(amount, payment.currency)
    if money.currency != payment.currency:
        raise InvalidInputError(
            f"a refund is in the payment's currency {payment.currency}, not {money.currency}"
        )
    return money.amount_minor


def begin(
    tx: UnitOfWork,
    payment_id: str,
    amount: str | int | None,
    reason: str,
    actor: str,
    refund_id: str,
    now_us: int,
) -> tuple[PaymentRow, RefundRow]:
    payment = tx.payments.get(payment_id)
    if payment is None:
        raise NotFoundError(f"no payment `{payment_id}`")
    if payment.state != "settled":
        raise StateConflictError(
            f"payment `{payment_id}` is {payment.state}: only a settled payment can be refunded"
        )
    refundable = refundable_minor(tx, payment)
    minor = amount_minor(payment, amount, refundable)
    if minor <= 0 or minor > refundable:
        exponent = DEFAULT_CURRENCIES.exponent(payment.currency)
        left = Money(max(refundable, 0), payment.currency, exponent)
        raise StateConflictError(
            f"payment `{payment_id}` has {left} left to refund (refunds in flight included)"
        )
    number = len(tx.refunds.list_by_payment(payment_id)) + 1
    refund = RefundRow(
        refund_id=refund_id,
        payment_id=payment_id,
        amount_minor=minor,
        currency=payment.currency,
        state="submitted",
        rail_key=f"{payment.rail_key}_r{number}",
        rail_refund_id=None,
        reason=reason,
        actor=actor,
        error=None,
        created_us=now_us,
        updated_us=now_us,
    )
    tx.refunds.insert(refund)
    _audit(tx, refund, "submitted", now_us, actor)
    return payment, refund


def finish(
    tx: UnitOfWork, refund: RefundRow, receipt: Receipt, restore_budget: bool, now_us: int
) -> RefundRow:
    """Apply the rail's answer to an open refund, once; settle the payment's refunded amount."""
    targets: dict[str, RefundState] = {"settled": "settled", "failed": "failed"}
    target = targets.get(receipt.status, "unknown")
    current = tx.refunds.get(refund.refund_id)
    if current is None or current.state not in OPEN_STATES or target == current.state:
        return current or refund
    if not tx.refunds.transition(
        current.refund_id, current.state, target, now_us, receipt.rail_payment_id, receipt.error
    ):
        return tx.refunds.get(refund.refund_id) or current
    if target == "settled":
        payment = tx.payments.get(current.payment_id)
        if payment is None or not tx.payments.add_refund(
            current.payment_id, current.amount_minor, now_us
        ):
            raise StateConflictError(f"payment `{current.payment_id}` cannot take this refund")
        if restore_budget:
            restore(tx, payment, current.amount_minor)
    _audit(tx, current, target, now_us, "system", receipt)
    return replace(
        current,
        state=target,
        rail_refund_id=receipt.rail_payment_id or current.rail_refund_id,
        error=receipt.error,
        updated_us=now_us,
    )


def restore(tx: UnitOfWork, payment: PaymentRow, refund_minor: int) -> None:
    """Give a settled refund's share back to every budget the payment was charged to."""
    hold = tx.holds.get(payment.hold_id)
    if hold is None or hold.state != "captured" or not hold.captured_minor:
        return
    before = payment.refunded_minor
    after = before + refund_minor
    for charge in tx.holds.list_charges(hold.hold_id):
        charged = charge.amount_minor
        if charge.window_start_us != -1 and hold.captured_minor != hold.amount_minor:
            share = Fraction(charge.amount_minor * hold.captured_minor, hold.amount_minor)
            charged = min(-(-share.numerator // share.denominator), charge.amount_minor)
        target = charged * after // payment.amount_minor
        delta = target - charge.restored_minor
        if delta > 0:
            tx.budgets.restore(charge, delta)


def _audit(
    tx: UnitOfWork,
    refund: RefundRow,
    state: str,
    now_us: int,
    actor: str,
    receipt: Receipt | None = None,
) -> None:
    records.append(
        tx,
        now_us,
        f"refund.{state}",
        refund.payment_id,
        {
            "actor": actor,
            "refund_id": refund.refund_id,
            "payment_id": refund.payment_id,
            "amount_minor": refund.amount_minor,
            "currency": refund.currency,
            "reason": refund.reason,
            "rail_refund_id": receipt.rail_payment_id if receipt else None,
            "error": receipt.error if receipt else None,
        },
    )


# Use cases -----------------------------------------------------------------------------------


def refund(
    rt: Runtime,
    payment_id: str,
    amount: str | int | None = None,
    *,
    reason: str = "requested",
    actor: str = "system",
) -> RefundRow:
    """Refund a settled payment, all of what is left (`amount=None`) or part of it, in the
    payment's currency, through its rail with the refund's own stable key. Returns the refund:
    `settled`, `failed`, or `unknown` (re-sent by `reconcile`)."""
    clean_reason = rt.clean_text("reason", reason)
    with rt.store.write() as tx:
        payment, row = begin(
            tx, payment_id, amount, clean_reason, actor, rt.ids("rfd"), rt.now_us()
        )
    return send(rt, payment, row)


def send(rt: Runtime, payment: PaymentRow, row: RefundRow) -> RefundRow:
    """Send an open refund through its payment's rail (again, with the same key) and apply the
    answer; the policy's `refunds.budget_effect` decides whether budgets get it back."""
    rail = rt.rails.get(payment.rail)
    request = rail_calls.rail_request(payment)
    receipt = rail_calls.with_retries(
        lambda: rail.refund(request, row.amount_minor, row.rail_key), rt.sleep
    )
    policy = rt.policy
    restore_budget = policy.refunds.restore_budget if policy is not None else False
    with rt.store.write() as tx:
        return finish(tx, row, receipt, restore_budget, rt.now_us())


def refunds(rt: Runtime, payment_id: str) -> list[RefundRow]:
    """Every refund of a payment, oldest first."""
    with rt.store.read() as tx:
        return tx.refunds.list_by_payment(payment_id)
