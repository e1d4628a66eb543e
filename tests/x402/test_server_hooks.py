"""Server-side hooks: a merchant's paywarden policy on incoming payments, and a circuit breaker
per facilitator, on the SDK's resource server in front of the fake facilitator."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from x402 import x402Client
from x402.schemas import PaymentPayload, PaymentRequirements
from x402_helpers import PRICES

from paywarden import Warden
from paywarden.x402 import X402Guard, async_httpx_client
from paywarden.x402.paid_api import (
    NETWORK,
    PAY_TO,
    CountingSigner,
    FakeFacilitator,
    paid_app,
)
from paywarden.x402.server import MerchantGuard

MERCHANT_POLICY = """
currency: USDC
rules:
  - id: small-payments-only
    effect: deny
    reason: the merchant takes at most 0.02 USDC per call
    amount: {gt: "0.02"}
  - id: take-payments
    effect: allow
    actions: [x402.receive]
velocity:
  - {id: per-payer, max_count: 100, window: 1m, scope: agent}
"""


def paid_calls(guard: X402Guard, client: x402Client, app: Any, paths: list[str]) -> list[int]:
    async def main() -> list[int]:
        results: list[int] = []
        transport = httpx.ASGITransport(app=app)
        async with async_httpx_client(
            guard, client, transport=transport, base_url="http://api.local"
        ) as http:
            for path in paths:
                results.append((await http.get(path)).status_code)
        return results

    return asyncio.run(main())


def test_the_merchant_policy_refuses_a_payment_before_the_facilitator_sees_it(
    tmp_path: Path, warden: Warden, async_client: x402Client, facilitator: FakeFacilitator
) -> None:
    with Warden.open(MERCHANT_POLICY, database=tmp_path / "merchant.db") as merchant:
        guard = MerchantGuard(merchant, facilitator="fake")
        app = paid_app(facilitator, PRICES, merchant=guard.attach)
        # /choice offers $0.50, $0.03 and $0.02; the payer's policy picks $0.02 (allowed by
        # both); /small ($0.01) passes; a payer paying $0.03 is refused by the merchant.
        payer = X402Guard(warden, agent="research-1")
        assert paid_calls(payer, async_client, app, ["/small", "/choice"]) == [200, 200]
        spent = {b.budget_id: b.spent_minor for b in merchant.budgets()}
        assert spent == {}
        decisions = [e for e in merchant.audit_entries(limit=100) if e.kind == "decision"]
        assert len(decisions) == 2
        assert all('"x402.receive"' in e.body for e in decisions)
        held = [e for e in merchant.audit_entries(limit=100) if e.kind == "hold.captured"]
        assert len(held) == 2

    strict = MERCHANT_POLICY.replace('gt: "0.02"', 'gt: "0.005"')
    with Warden.open(strict, database=tmp_path / "strict.db") as merchant:
        facilitator.calls.clear()
        app = paid_app(facilitator, PRICES, merchant=MerchantGuard(merchant).attach)
        assert paid_calls(payer, async_client, app, ["/small"]) == [402]
        assert facilitator.calls == []  # aborted before verify
    refused, *_ = warden.payments(agent="research-1")  # newest first
    # The payer's guard keeps the hold: a refusing server still holds a signed authorization.
    assert refused.state == "unknown" and warden.hold(refused.hold_id).state == "held"


def test_the_facilitator_breaker_opens_after_failures_and_fails_fast(
    tmp_path: Path, warden: Warden, async_client: x402Client, facilitator: FakeFacilitator
) -> None:
    facilitator.settle_answer = "error"
    with Warden.open(MERCHANT_POLICY, database=tmp_path / "merchant.db") as merchant:
        guard = MerchantGuard(merchant, facilitator="flaky")
        app = paid_app(guard.facilitator(facilitator), PRICES, merchant=guard.attach)
        paid_calls(X402Guard(warden, agent="research-1"), async_client, app, ["/small"] * 7)
        breaker = merchant.runtime.store
        with breaker.read() as tx:
            row = tx.breakers.get("x402-facilitator:flaky")
        assert row.state == "open"
        # Five settles failed (the breaker's limit); then verify fails fast, unsent.
        assert (facilitator.count("verify"), facilitator.count("settle")) == (5, 5)
        assert merchant.budgets() == [] and _held(merchant) == 0


def _held(warden: Warden) -> int:
    """Holds of allowed decisions not yet captured or voided."""
    bodies = [(e.kind, e.body) for e in warden.audit_entries(limit=1000)]
    allowed = sum(1 for kind, body in bodies if kind == "decision" and '"allow"' in body)
    resolved = sum(1 for kind, _ in bodies if kind in ("hold.captured", "hold.voided"))
    return allowed - resolved


def test_a_replayed_authorization_in_flight_is_refused_and_holds_one_amount(
    tmp_path: Path,
) -> None:
    """Two verifies of one signed payload at once: the second is refused, so the first's hold
    is the only one, and it is released when its verify fails (none is left held)."""
    requirements = PaymentRequirements(
        scheme="exact",
        network=NETWORK,
        asset="0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        amount="10000",
        pay_to=PAY_TO,
        max_timeout_seconds=300,
        extra={"name": "USDC", "version": "2"},
    )
    inner = CountingSigner().create_payment_payload(requirements)
    ctx = SimpleNamespace(
        payment_payload=PaymentPayload(payload=inner, accepted=requirements),
        requirements=requirements,
    )
    with Warden.open(MERCHANT_POLICY, database=tmp_path / "m.db") as merchant:
        guard = MerchantGuard(merchant)
        assert guard.before_verify(ctx) is None
        replay = guard.before_verify(ctx)
        assert replay is not None and replay.reason == "x402_duplicate_payment"
        (hold_id,) = guard._holds.values()  # one hold, the first's
        decisions = [e for e in merchant.audit_entries(limit=100) if e.kind == "decision"]
        assert len(decisions) == 1 and merchant.hold(hold_id).state == "held"
        guard.failed(ctx)
        assert merchant.hold(hold_id).state == "voided" and guard._holds == {}
