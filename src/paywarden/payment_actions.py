"""The payment side of the Warden: pay on a rail, reconcile, refund, and read payments.

These methods are mixed into `Warden`. The rail is always called outside store
transactions; every state change is a compare-and-set in its own audited transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from paywarden import limits, payments, refunds
from paywarden.bootstrap import LoadedPolicy
from paywarden.clock import Clock, to_us
from paywarden.errors import NotFoundError, PaywardenError
from paywarden.intent import PaymentIntent
from paywarden.policy.decision import Decision
from paywarden.ports import BreakerRow, IdSource, PaymentRow, RefundRow, Store
from paywarden.rails import PaymentRail, load_rail, refusal


def _too_fresh(row: PaymentRow, now_us: int) -> bool:
    """A submitted payment with no rail answer yet, young enough that its worker may still be
    sending it: reconcile waits (`limits.reconcile_grace_seconds`)."""
    return (
        row.state == "submitted"
        and row.rail_payment_id is None
        and now_us - row.created_us < limits.reconcile_grace_seconds * 1_000_000
    )


class PaymentActions:
    """Mixed into Warden, which provides these attributes and `authorize`."""

    _store: Store
    _clock: Clock
    _ids: IdSource
    _loaded: LoadedPolicy
    _rails: dict[str, PaymentRail]
    _owned_rails: set[str]
    _sleep: Callable[[float], None]

    if TYPE_CHECKING:

        def admit(self, intent: PaymentIntent) -> PaymentIntent: ...

        def clean_text(self, field: str, text: str) -> str: ...

        def _decide(self, intent: PaymentIntent, actor: str | None) -> Decision: ...

        def _with_environment(self, intent: PaymentIntent) -> tuple[PaymentIntent, str | None]: ...

        def _refuse_on_rail(
            self, intent: PaymentIntent, reason: str, actor: str | None
        ) -> Decision: ...

    def rail(self, name: str) -> PaymentRail:
        """The rail called `name`: one passed to `open(rails=...)`, else the registered one."""
        if name not in self._rails:
            self._rails[name] = load_rail(name)
            self._owned_rails.add(name)
        return self._rails[name]

    def pay(self, intent: PaymentIntent, *, actor: str | None = None) -> payments.PaymentOutcome:
        """Authorize, then pay an allowed intent on its rail (`intent.rail`, default `sandbox`).

        The rail is called outside any transaction with the authorization's stable key. The
        hold is captured when the rail settles, voided when it definitely fails, and kept as
        `unknown` when the outcome is ambiguous (see `reconcile`). Paying the same intent again
        with the same idempotency key returns the first payment and never pays twice.
        """
        intent = self.admit(intent)
        rail_name = intent.rail or "sandbox"
        rail, refused = self._rail_for(intent, rail_name)
        if refused is not None:
            return payments.PaymentOutcome(self._refuse_on_rail(intent, refused, actor))
        decision = self._decide(intent, actor)
        if not decision.allowed or decision.hold_id is None or rail is None:
            return payments.PaymentOutcome(decision)  # rail is set whenever nothing refused
        now_us = to_us(self._clock.now())
        with self._store.write() as tx:
            recorded = self._with_environment(intent)[0]  # as authorized, with its environment
            row, submit = payments.begin(
                tx, decision, recorded, rail_name, self._ids("pay"), now_us
            )
        if not submit:
            return payments.PaymentOutcome(decision, row)
        receipt = payments.call(rail, row, self._sleep)
        with self._store.write() as tx:
            row = payments.finish(tx, row, receipt, to_us(self._clock.now()))
        return payments.PaymentOutcome(decision, row, receipt)

    def _rail_for(
        self, intent: PaymentIntent, rail_name: str
    ) -> tuple[PaymentRail | None, str | None]:
        """The rail, or why it cannot take this payment: unknown, or not configured for this
        payee or agent. Checked before anything is held; a retry of a payment already decided
        under its idempotency key is not checked again (it replays, never pays twice)."""
        try:
            rail = self.rail(rail_name)
        except PaywardenError as error:
            return None, str(error)
        if intent.idempotency_key is not None:
            with self._store.read() as tx:
                if tx.decision_by_key(intent.agent, intent.idempotency_key) is not None:
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

    def reconcile(self, batch_max: int = limits.reconcile_batch_max) -> list[PaymentRow]:
        """Ask the rails about every submitted or unknown payment, with the original keys, and
        settle each at most once; re-send every open refund with its own key. Returns the
        payments whose state changed."""
        with self._store.read() as tx:
            open_rows = tx.payments_open(batch_max)
            open_refunds = tx.refunds_open(batch_max)
        changed = []
        now_us = to_us(self._clock.now())
        for row in open_rows:
            if _too_fresh(row, now_us):
                continue
            try:
                rail = self.rail(row.rail)
            except PaywardenError:
                continue  # a rail that cannot be loaded here: its payments stay open
            receipt = payments.with_retries(
                partial(rail.status, payments.rail_request(row)), self._sleep
            )
            with self._store.write() as tx:
                current = tx.payment(row.payment_id)
                if current is None or current.state not in ("submitted", "unknown"):
                    continue
                updated = payments.finish(
                    tx, current, receipt, to_us(self._clock.now()), count_for_breaker=False
                )
            if updated.state != row.state:
                changed.append(updated)
        for refund in open_refunds:
            try:
                self._send_refund(self.payment(refund.payment_id), refund)
            except PaywardenError:
                continue  # stays open for the next pass
        return changed

    def refund(
        self,
        payment_id: str,
        amount: str | int | None = None,
        *,
        reason: str = "requested",
        actor: str = "system",
    ) -> RefundRow:
        """Refund a settled payment, all of what is left (`amount=None`) or part of it, in the
        payment's currency, through its rail with the refund's own stable key.

        Returns the refund: `settled`, `failed`, or `unknown` (re-sent by `reconcile`). Raises
        `NotFoundError` for an unknown payment, `StateConflictError` when the payment is not
        settled or the amount is more than is left to refund (refunds in flight count), and
        `InvalidInputError` for a bad amount or another currency. The policy's
        `refunds.budget_effect` decides whether budgets get the amount back.
        """
        now_us = to_us(self._clock.now())
        with self._store.write() as tx:
            payment, row = refunds.begin(
                tx,
                payment_id,
                amount,
                self.clean_text("reason", reason),
                actor,
                self._ids("rfd"),
                now_us,
            )
        return self._send_refund(payment, row)

    def _send_refund(self, payment: PaymentRow, row: RefundRow) -> RefundRow:
        rail = self.rail(payment.rail)
        request = payments.rail_request(payment)
        receipt = payments.with_retries(
            lambda: rail.refund(request, row.amount_minor, row.rail_key), self._sleep
        )
        policy = self._loaded.policy
        restore = policy.refunds.restore_budget if policy is not None else False
        with self._store.write() as tx:
            return refunds.finish(tx, row, receipt, restore, to_us(self._clock.now()))

    def breaker(self, rail: str) -> BreakerRow:
        """The rail's circuit breaker: `state` (closed, open, half_open),
        `consecutive_failures` and `opened_us`."""
        with self._store.read() as tx:
            return tx.breaker(rail)

    def refunds(self, payment_id: str) -> list[RefundRow]:
        """Every refund of a payment, oldest first."""
        with self._store.read() as tx:
            return tx.refunds(payment_id)

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
