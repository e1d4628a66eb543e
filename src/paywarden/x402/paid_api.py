"""A local paid API for the demo and the tests: the SDK's own resource-server middleware on a
FastAPI app, in front of a fake facilitator that records every verify and settle call and never
touches a network. Prices are in USDC on Base Sepolia (`eip155:84532`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from fastapi import FastAPI
from x402 import x402ResourceServer
from x402.extensions.payment_identifier import (
    PAYMENT_IDENTIFIER,
    declare_payment_identifier_extension,
)
from x402.http.middleware.fastapi import payment_middleware
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact import ExactEvmClientScheme, ExactEvmServerScheme
from x402.schemas import SettleResponse, SupportedKind, SupportedResponse, VerifyResponse

NETWORK = "eip155:84532"
PAY_TO = "0x1111111111111111111111111111111111111111"
PAYER_TX = "0x" + "ab" * 32


@dataclass
class FakeFacilitator:
    """Answers verify and settle like a facilitator would, records each call, moves nothing.

    `settle_answer` picks the settle outcome: `settled`, `failed`, `pending`, or `error` (the
    facilitator call raises, as when it is unreachable)."""

    calls: list[tuple[str, Any]] = field(default_factory=list)
    settle_answer: str = "settled"

    async def verify(self, payload: Any, requirements: Any) -> VerifyResponse:
        self.calls.append(("verify", payload))
        authorization = (payload.payload or {}).get("authorization", {})
        same = str(authorization.get("to", "")).lower() == str(requirements.pay_to).lower()
        if not same or str(authorization.get("value")) != str(requirements.amount):
            return VerifyResponse(is_valid=False, invalid_reason="recipient_or_amount_mismatch")
        return VerifyResponse(is_valid=True, payer=str(authorization.get("from")))

    async def settle(self, payload: Any, requirements: Any) -> SettleResponse:
        self.calls.append(("settle", payload))
        if self.settle_answer == "error":
            raise RuntimeError("facilitator unreachable")
        if self.settle_answer == "failed":
            return SettleResponse(
                success=False,
                error_reason="insufficient_funds",
                transaction="",
                network=requirements.network,
            )
        pending = self.settle_answer == "pending"
        return SettleResponse(
            success=not pending,
            error_reason="settlement_pending" if pending else None,
            transaction=PAYER_TX,
            network=requirements.network,
            amount=str(requirements.amount),
        )

    def get_supported(self) -> SupportedResponse:
        kind = SupportedKind(x402_version=2, scheme="exact", network=NETWORK)
        return SupportedResponse(kinds=[kind])

    def count(self, kind: str) -> int:
        return sum(1 for name, _ in self.calls if name == kind)


class CountingSigner(ExactEvmClientScheme):
    """The SDK's EVM `exact` client scheme with a throwaway key (real EIP-3009 signatures),
    counting the authorizations it signs."""

    def __init__(self) -> None:
        super().__init__(EthAccountSigner(Account.create()))
        self.signed = 0

    def create_payment_payload(
        self, requirements: Any, extensions: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        self.signed += 1
        payload: dict[str, Any] = super().create_payment_payload(requirements, extensions)
        return payload


def paid_app(
    facilitator: Any,
    prices: dict[str, str | list[str]],
    *,
    payment_identifier: bool = False,
    merchant: Callable[[x402ResourceServer], object] | None = None,
) -> FastAPI:
    """A FastAPI app (before `facilitator`, a `FakeFacilitator` or any facilitator client)
    whose `GET /<name>` costs `prices[name]` (`"$0.01"`, or a list of prices
    offered as several `accepts` options); `payment_identifier` declares that extension;
    `merchant` is called with the resource server (to attach a `MerchantGuard`)."""
    scheme: Any = ExactEvmServerScheme()  # type: ignore[no-untyped-call]
    server = x402ResourceServer(facilitator).register(NETWORK, scheme)
    if merchant is not None:
        merchant(server)
    routes: dict[str, Any] = {}
    for name, price in prices.items():
        offers = price if isinstance(price, list) else [price]
        accepts = [
            {"scheme": "exact", "payTo": PAY_TO, "price": offer, "network": NETWORK}
            for offer in offers
        ]
        routes[f"GET /{name}"] = {"accepts": accepts, "description": f"paid {name}"}
        if payment_identifier:
            declared = declare_payment_identifier_extension()
            routes[f"GET /{name}"]["extensions"] = {PAYMENT_IDENTIFIER: declared}
    app = FastAPI()
    middleware = payment_middleware(routes, server)
    app.middleware("http")(middleware)
    for name in prices:
        app.add_api_route(f"/{name}", _handler(name), methods=["GET"])
    return app


def _handler(name: str) -> Any:
    async def handler() -> dict[str, str]:
        return {"data": name}

    return handler
