"""The `x402` rail: the ledger side of payments an agent's x402 client signed itself.

paywarden never sends an x402 payment: the agent's client signs it and the resource server's
facilitator settles it. The client guard (`paywarden.x402`) records each signed payment as a
payment on this rail and applies the settlement the server reported. This rail answers what the
ledger asks later:

- `pay`: refused (definite): an x402 payment cannot be made by `Warden.pay`, only signed by a
  guarded client;
- `status`: `unknown`: without a settlement response, only the chain knows; the payment keeps
  its hold until an operator resolves it (or a deployment adds an on-chain lookup);
- `refund`: refused: x402 has no refunds; the merchant must send the money back.
"""

from __future__ import annotations

from paywarden.payee import Payee
from paywarden.rails import RailPayment, Receipt

_NOT_SENT_HERE = "x402 payments are signed by a guarded x402 client (paywarden.x402)"


class X402Rail:
    name = "x402"

    def check(
        self, *, agent: str, action: str, payee: Payee, amount_minor: int, currency: str
    ) -> str | None:
        """`Warden.pay` never pays on this rail: refused before anything is held."""
        return _NOT_SENT_HERE

    def pay(self, payment: RailPayment) -> Receipt:
        return Receipt("failed", error=_NOT_SENT_HERE)

    def status(self, payment: RailPayment) -> Receipt:
        return Receipt(
            "unknown",
            rail_payment_id=payment.rail_payment_id,
            error="no settlement response: an operator checks the chain",
        )

    def refund(self, payment: RailPayment, amount_minor: int, refund_key: str) -> Receipt:
        return Receipt("failed", error="x402 has no refunds: the merchant must send money back")
