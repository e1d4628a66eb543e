"""Server-side hooks: a merchant applies a paywarden policy to incoming x402 payments.

    guard = MerchantGuard(warden, facilitator="cdp")
    server = guard.attach(x402ResourceServer(guard.facilitator(HTTPFacilitatorClient(...))))

- `attach` registers hooks on an `x402ResourceServer` (or an `x402Facilitator`, which has the
  same hooks). Before verify, the payment becomes an `x402.receive` intent (agent: the payer's
  address, recipient: `payTo`, the `x402_*` metadata) and is authorized, so rules, per-payer
  budgets and velocity limits, approvals and the audit log apply; anything but allow aborts the
  payment before the facilitator sees it, and so does a nonce already in flight (a replay).
  Before settle, a payment paywarden did not allow is aborted. After settle the hold is
  captured; a verify or settle failure voids it.
- `facilitator(client)` wraps the facilitator client in a circuit breaker: the ledger's breaker
  for `x402-facilitator:<name>` (shared by every process on the ledger). While it is open,
  verify and settle fail fast without calling the facilitator. An exception of either call
  counts as a failure, a settle answer as a success. The wrapper also releases the hold of a
  payment whose facilitator call raised: the SDK (2.25) does not run failure hooks then.
"""

from __future__ import annotations

import threading
from typing import Any

from x402 import AbortResult

from paywarden.actions import rail_calls
from paywarden.errors import InvalidInputError, PaywardenError
from paywarden.intent import PaymentIntent
from paywarden.money import Money
from paywarden.ports import UnitOfWork
from paywarden.warden import Warden
from paywarden.x402 import mapping

RECEIVE = "x402.receive"


class MerchantGuard:
    """Policy and a circuit breaker for the payments a resource server or facilitator takes."""

    def __init__(self, warden: Warden, *, facilitator: str = "default") -> None:
        self.warden = warden
        self.breaker = f"x402-facilitator:{facilitator}"
        self._holds: dict[str, str] = {}  # authorization nonce -> hold id
        self._lock = threading.Lock()

    def attach(self, server: Any) -> Any:
        server.on_before_verify(self.before_verify)
        server.on_verify_failure(self.failed)
        server.on_before_settle(self.before_settle)
        server.on_after_settle(self.after_settle)
        server.on_settle_failure(self.failed)
        return server

    def facilitator(self, client: Any) -> BreakerFacilitator:
        """`client` (a `FacilitatorClient`) behind this facilitator's circuit breaker."""
        return BreakerFacilitator(self, client)

    def before_verify(self, ctx: Any) -> AbortResult | None:
        try:
            intent = incoming_intent(ctx.payment_payload, ctx.requirements)
        except InvalidInputError as error:
            fields = {"action": RECEIVE, "recipient": str(ctx.requirements.pay_to)}
            self.warden.refuse(agent="x402-payer", fields=fields, error=error)
            return AbortResult(error.code, str(error))
        nonce = _nonce(ctx.payment_payload)
        with self._lock:
            in_flight = nonce in self._holds
        if not nonce or in_flight:
            # One hold per authorization nonce: a replayed payload would overwrite the hold
            # of the first and leave it held.
            return AbortResult("x402_duplicate_payment", "this authorization is already in flight")
        decision = self.warden.authorize(intent)
        if not decision.allowed:
            return AbortResult(decision.reason_code, decision.reason)
        with self._lock:
            raced = nonce in self._holds  # a replay decided meanwhile: ours is released
            if not raced:
                self._holds[nonce] = str(decision.hold_id)
        if raced:
            self._resolve(str(decision.hold_id), capture=False)
            return AbortResult("x402_duplicate_payment", "this authorization is already in flight")
        return None

    def before_settle(self, ctx: Any) -> AbortResult | None:
        with self._lock:
            decided = _nonce(ctx.payment_payload) in self._holds
        if not decided:
            return AbortResult("no_decision", "paywarden did not allow this payment at verify")
        return None

    def after_settle(self, ctx: Any) -> None:
        self.release(ctx.payment_payload, capture=bool(getattr(ctx.result, "success", False)))

    def failed(self, ctx: Any) -> None:
        self.release(ctx.payment_payload, capture=False)

    def release(self, payload: Any, *, capture: bool) -> None:
        """Capture or void the hold of `payload`'s payment, once."""
        hold_id = self._pop(payload)
        if hold_id is not None:
            self._resolve(hold_id, capture=capture)

    def gate(self) -> bool:
        rt = self.warden.runtime
        now_us = rt.now_us()

        def gate(tx: UnitOfWork) -> bool:
            return rail_calls.breaker_gate(tx, self.breaker, now_us)

        return rt.store.run(gate)

    def record(self, *, failed: bool) -> None:
        rt = self.warden.runtime
        now_us = rt.now_us()

        def record(tx: UnitOfWork) -> None:
            rail_calls.breaker_record(tx, self.breaker, failed, now_us)

        rt.store.run(record)

    def _pop(self, payload: Any) -> str | None:
        with self._lock:
            return self._holds.pop(_nonce(payload), None)

    def _resolve(self, hold_id: str, *, capture: bool) -> None:
        try:
            if capture:
                self.warden.capture(hold_id, actor="x402-merchant")
            else:
                self.warden.void(hold_id, actor="x402-merchant")
        except PaywardenError:
            pass  # already resolved (expired): nothing is held


class FacilitatorUnavailableError(Exception):
    """The facilitator's circuit breaker is open: the call was not made."""


class BreakerFacilitator:
    """A `FacilitatorClient` behind a `MerchantGuard`'s circuit breaker (async)."""

    def __init__(self, guard: MerchantGuard, client: Any) -> None:
        self.guard = guard
        self.client = client

    async def verify(self, payload: Any, requirements: Any) -> Any:
        return await self._call(self.client.verify, payload, requirements, settles=False)

    async def settle(self, payload: Any, requirements: Any) -> Any:
        return await self._call(self.client.settle, payload, requirements, settles=True)

    def get_supported(self) -> Any:
        return self.client.get_supported()

    async def _call(self, method: Any, payload: Any, requirements: Any, *, settles: bool) -> Any:
        """Call through the breaker. Any exception counts as a failure; only a settlement
        answer counts as a success (a facilitator that verifies but cannot settle is down)."""
        if not self.guard.gate():
            self.guard.release(payload, capture=False)
            raise FacilitatorUnavailableError(f"circuit breaker {self.guard.breaker} is open")
        try:
            answer = await method(payload, requirements)
        except Exception:
            self.guard.record(failed=True)
            self.guard.release(payload, capture=False)
            raise
        if settles:
            self.guard.record(failed=False)
        return answer


def incoming_intent(payload: Any, requirements: Any) -> PaymentIntent:
    """An incoming payment as an intent: the payer is the agent, `payTo` the recipient."""
    resource = getattr(getattr(payload, "resource", None), "url", None)
    requirement = mapping.snapshot(requirements, resource)
    asset = mapping.asset_of(requirement)
    inner = payload.payload if isinstance(payload.payload, dict) else {}
    payer = str((inner.get("authorization") or {}).get("from", "")).lower()
    metadata = mapping.metadata_of(requirement)
    return PaymentIntent(
        agent=payer or "x402-payer",
        action=RECEIVE,
        amount=Money(requirement.amount, asset.currency, asset.decimals),
        recipient=requirement.pay_to,
        rail=mapping.RAIL,
        metadata=metadata,
    )


def _nonce(payload: Any) -> str:
    inner = payload.payload if isinstance(payload.payload, dict) else {}
    return str((inner.get("authorization") or {}).get("nonce", ""))
