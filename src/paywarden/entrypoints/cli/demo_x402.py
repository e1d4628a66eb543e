"""`paywarden demo x402`: a guarded x402 client paying a local paid API (the `x402` extra).

The paid API is the x402 SDK's own FastAPI middleware in front of a fake facilitator, served in
process over ASGI: no network, no chain. The client signs real EIP-3009 authorizations with a
throwaway key, and paywarden decides each payment before anything is signed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from x402 import x402Client
from x402.http.clients.httpx import PaymentError

from paywarden.warden import Warden
from paywarden.x402 import X402Guard, async_httpx_client
from paywarden.x402.paid_api import NETWORK, CountingSigner, FakeFacilitator, paid_app

Echo = Callable[[str], None]

X402_DEMO_POLICY = """\
name: x402 demo controls
currency: USD
fx:
  as_of: 2026-11-01
  rates:
    "USDC/USD": "1"
rules:
  - id: per-call-limit
    effect: deny
    reason: above the $0.10 per-call limit
    amount: {gt: "0.10"}
  - id: paid-apis
    effect: allow
    reason: paid API calls within limits
    actions: [x402.pay]
budgets:
  - id: daily
    limit: "0.05"
    window: 24h
    scope: agent
"""
PRICES: dict[str, str | list[str]] = {"quote": "$0.01", "report": "$0.50"}
CALLS = ("quote", "quote", "quote", "report", "quote", "quote", "quote", "quote")


@dataclass
class Row:
    path: str
    outcome: str
    signed: int
    sent: int


async def _calls(warden: Warden, facilitator: FakeFacilitator) -> list[Row]:
    scheme = CountingSigner()
    client = x402Client().register(NETWORK, scheme)
    guard = X402Guard(warden, agent="research-agent")
    transport = httpx.ASGITransport(app=paid_app(facilitator, PRICES))
    rows = []
    async with async_httpx_client(
        guard, client, transport=transport, base_url="http://api.paid.local"
    ) as http:
        for path in CALLS:
            try:
                response = await http.get(f"/{path}")
                outcome = f"PAID      HTTP {response.status_code}"
            except PaymentError as error:
                outcome = f"REFUSED   {str(error).rsplit(': ', 1)[-1]}"
            rows.append(Row(path, outcome, scheme.signed, facilitator.count("settle")))
    return rows


def run_x402_demo(echo: Echo) -> None:
    echo("paywarden demo x402: a guarded x402 client paying a local paid API")
    echo("(x402 SDK middleware, fake facilitator, real EIP-3009 signatures; no network)")
    echo("controls: deny above $0.10 per call, daily budget $0.05; prices /quote $0.01,")
    echo("/report $0.50 (USDC on Base Sepolia, counted in USD at the declared 1:1 rate)\n")
    facilitator = FakeFacilitator()
    with Warden.open(X402_DEMO_POLICY) as warden:
        rows = asyncio.run(_calls(warden, facilitator))
        echo(f"{'#':>2}  {'GET':<8} {'result':<28} signed (total)  settled (total)")
        for number, row in enumerate(rows, start=1):
            echo(f"{number:>2}  /{row.path:<7} {row.outcome:<28} {row.signed:>14}  {row.sent:>15}")
        (budget,) = warden.budgets()
        audit = warden.verify_audit()
        echo(
            f"\nbudget `daily`: {budget.spent_minor} of {budget.limit_minor} US cents spent, "
            f"{budget.held_minor} held"
        )
        echo(
            f"facilitator: {facilitator.count('verify')} verify, "
            f"{facilitator.count('settle')} settle calls; refused payments were never signed"
        )
        settled = warden.payments(agent="research-agent", state="settled")
        echo(f"ledger: {len(settled)} payments settled on the `x402` rail")
        echo(f"audit: {audit.entries_checked} entries, chain {'intact' if audit.ok else 'BROKEN'}")
