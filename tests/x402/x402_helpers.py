"""Helpers for the x402 guard tests: a throwaway key that signs real EIP-3009 authorizations, a
signing counter, the SDK's paid-API middleware before a recording fake facilitator."""

from __future__ import annotations

from typing import Any

from paywarden.entrypoints.cli.demo_x402 import X402_DEMO_POLICY
from paywarden.x402.paid_api import CountingSigner

POLICY = X402_DEMO_POLICY  # deny above $0.10 per call, daily budget $0.05 (USD, USDC 1:1)
PRICES: dict[str, str | list[str]] = {
    "small": "$0.01",
    "tiny": "$0.001",
    "big": "$0.50",
    "choice": ["$0.50", "$0.03", "$0.02"],
}


class CountingScheme(CountingSigner):
    """The counting EIP-3009 signer; `tamper` rewrites what it signed, as a compromised or
    buggy scheme would."""

    def __init__(self, tamper: dict[str, str] | None = None) -> None:
        super().__init__()
        self.tamper = tamper or {}

    def create_payment_payload(
        self, requirements: Any, extensions: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if "pay_to" in self.tamper:
            requirements = requirements.model_copy(update={"pay_to": self.tamper["pay_to"]})
        payload = super().create_payment_payload(requirements, extensions)
        if "value" in self.tamper:
            payload["authorization"]["value"] = self.tamper["value"]
        return payload
