"""The payment side of the Warden: pay on a rail, reconcile, refund, and read payments.

These methods are mixed into `Warden`. The rail is always called outside store
transactions; every state change is a compare-and-set in its own audited transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from paywarden import limits, payments
from paywarden.clock import Clock, to_us
from paywarden.errors import NotFoundError
from paywarden.intent import PaymentIntent
from paywarden.policy.decision import Decision
from paywarden.ports import IdSource, PaymentRow, Store
from paywarden.rails import PaymentRail, load_rail


class PaymentActions:
    """Mixed into Warden, which provides these attributes and `authorize`."""

    _store: Store
    _clock: Clock
    _ids: IdSource
    _rails: dict[str, PaymentRail]
    _sleep: Callable[[float], None]

    if TYPE_CHECKING:

        def authorize(
            self, intent: PaymentIntent, *, phase: str | None = None, actor: str | None = None
        ) -> Decision: ...

    def rail(self, name: str) -> PaymentRail:
        """The rail called `name`: one passed to `open(rails=...)`, else the registered one."""
        if name not in self._rails:
            self._rails[name] = load_rail(name)
        return self._rails[name]

    def pay(
        self, intent: PaymentIntent, *, phase: str | None = None, actor: str | None = None
    ) -> payments.PaymentOutcome:
        """Authorize, then pay an allowed intent on its rail (`intent.rail`, default `sandbox`).

        The rail is called outside any transaction with the authorization's stable key. The
        hold is captured when the rail settles, voided when it definitely fails, and kept as
        `unknown` when the outcome is ambiguous (see `reconcile`). Paying the same intent again
        with the same idempotency key returns the first payment and never pays twice.
        """
        decision = self.authorize(intent, phase=phase, actor=actor)
        if not decision.allowed or decision.hold_id is None:
            return payments.PaymentOutcome(decision)
        rail_name = intent.rail or "sandbox"
        rail = self.rail(rail_name)
        now_us = to_us(self._clock.now())
        with self._store.write() as tx:
            row, submit = payments.begin(tx, decision, intent, rail_name, self._ids("pay"), now_us)
        if not submit:
            return payments.PaymentOutcome(decision, row)
        receipt = payments.call(rail, row, self._sleep)
        with self._store.write() as tx:
            row = payments.finish(tx, row, receipt, to_us(self._clock.now()))
        return payments.PaymentOutcome(decision, row, receipt)

    def reconcile(self, batch_max: int = limits.reconcile_batch_max) -> list[PaymentRow]:
        """Ask the rails about every submitted or unknown payment, with the original keys, and
        settle each at most once. Returns the payments whose state changed."""
        with self._store.read() as tx:
            open_rows = tx.payments_open(batch_max)
        changed = []
        for row in open_rows:
            receipt = self.rail(row.rail).status(payments.rail_request(row))
            with self._store.write() as tx:
                current = tx.payment(row.payment_id)
                if current is None or current.state not in ("submitted", "unknown"):
                    continue
                updated = payments.finish(tx, current, receipt, to_us(self._clock.now()))
            if updated.state != row.state:
                changed.append(updated)
        return changed

    def payment(self, payment_id: str) -> PaymentRow:
        with self._store.read() as tx:
            row = tx.payment(payment_id)
        if row is None:
            raise NotFoundError(f"no payment `{payment_id}`")
        return row

    def payments(
        self, *, agent: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[PaymentRow]:
        """Payments, newest first, optionally for one agent and in one state."""
        with self._store.read() as tx:
            return tx.payments(agent, state, max(1, min(limit, 1000)))
