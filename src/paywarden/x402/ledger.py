"""x402 payments in the ledger: a signed payment becomes a payment on the `x402` rail.

Recording happens after the payload was checked and before it is sent (`payments.begin`: state
`submitted`, the hold kept with no expiry, the rail's circuit breaker consulted). The server's
answer then settles it once (`payments.finish`): a settlement captures the hold,
`settlement_pending` keeps it `submitted`, and a refusal or no answer at all leaves it `unknown`
for `paywarden reconcile` and the operator, like any other rail's ambiguous outcome (the server
holds a signed authorization: its refusal does not prove that nothing moved). A payload that
never left the process is failed, which voids the hold.
"""

from __future__ import annotations

from paywarden.actions import authorize, payments
from paywarden.intent import PaymentIntent
from paywarden.policy.decision import Decision
from paywarden.ports import PaymentRow, UnitOfWork
from paywarden.rails import Receipt
from paywarden.warden import Warden
from paywarden.x402.mapping import RAIL


def record(warden: Warden, decision: Decision, intent: PaymentIntent) -> tuple[PaymentRow, bool]:
    """The payment for an allowed decision, and whether it may be sent (False: the hold has
    expired or the `x402` breaker is open, and the hold was released)."""
    rt = warden.runtime
    recorded = authorize.with_environment(rt, intent)[0]  # as authorized
    payment_id, now_us = rt.ids("pay"), rt.now_us()

    def begin(tx: UnitOfWork) -> tuple[PaymentRow, bool]:
        return payments.begin(tx, decision, recorded, RAIL, payment_id, now_us)

    return rt.store.run(begin)


def settle(warden: Warden, payment_id: str, receipt: Receipt) -> PaymentRow:
    """Apply the server's answer to an open payment, once (a later answer changes nothing)."""
    rt = warden.runtime
    now_us = rt.now_us()

    def finish(tx: UnitOfWork) -> PaymentRow:
        row = tx.payments.get(payment_id)
        if row is None or row.state not in ("submitted", "unknown"):
            return row if row is not None else _missing(payment_id)
        return payments.finish(tx, row, receipt, now_us)

    return rt.store.run(finish)


def _missing(payment_id: str) -> PaymentRow:
    raise LookupError(f"no payment `{payment_id}`")
