"""AP2 mandates on PostgreSQL: two Wardens on one database, racing on one nonce and one budget.

The mandates are built directly (`paywarden.mandates.Mandate`, what `paywarden.ap2` returns
once a chain verifies): what is tested here is the ledger, across gateways.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from paywarden import FrozenClock, Money, PaymentIntent, Warden
from paywarden.mandates import Constraints, Mandate, Party

POLICY = """
currency: USDC
rules:
  - {id: shop, effect: allow, actions: [purchase]}
"""
AUD = "https://pay.example.com"


def mandate(nonce: str, budget: int | None = None, open_id: str = "open-1") -> Mandate:
    return Mandate(
        mandate_id=open_id,
        digest=f"digest-{nonce}",
        audience=AUD,
        nonce=nonce,
        transaction_id="tx",
        payee=Party("shop.example.com", "Shop"),
        amount=Money(250_000, "USDC", 6),
        instrument_id="wallet-1",
        constraints=Constraints(budget_currency="USDC", budget_max=budget),
    )


def intent() -> PaymentIntent:
    return PaymentIntent(
        agent="agent-a", action="purchase", amount="0.25", currency="USDC",
        recipient="https://shop.example.com",
    )  # fmt: skip


def race(wardens: list[Warden], mandates: list[Mandate]) -> list[str]:
    codes: list[str] = []
    lock = threading.Lock()

    def run(warden: Warden, presented: Mandate) -> Callable[[], None]:
        def go() -> None:
            code = warden.authorize(intent(), mandate=presented).reason_code
            with lock:
                codes.append(code)

        return go

    threads = [threading.Thread(target=run(wardens[i % 2], m)) for i, m in enumerate(mandates)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return sorted(codes)


def test_two_wardens_claim_a_nonce_once_and_a_budget_exactly(
    pg_database: str, key_secret: str
) -> None:
    clock = FrozenClock("2026-01-05T12:00:00+00:00")
    first = Warden.open(POLICY, database=pg_database, clock=clock)
    second = Warden.open(POLICY, database=pg_database, clock=clock)
    try:
        same = [mandate("n-same")] * 6
        assert race([first, second], same) == ["allowed"] + ["mandate_replayed"] * 5
        # a fresh open mandate of 0.75 USDC: exactly three payments of 0.25 fit
        budgeted = [mandate(f"n-{i}", budget=750_000, open_id="open-2") for i in range(8)]
        assert race([first, second], budgeted) == ["allowed"] * 3 + ["mandate_budget_exceeded"] * 5
    finally:
        first.close()
        second.close()
