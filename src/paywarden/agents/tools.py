"""What the framework payment tools share (`openai_agents`, `langchain`, `pydantic_ai`): the
tool's description, what a tool needs of a `Warden`, and the sentences the model reads."""

from __future__ import annotations

from typing import Any, Protocol

from paywarden.intent import PaymentIntent
from paywarden.policy.decision import Decision

DESCRIPTION = (
    "Pay a recipient. amount is decimal text in major units (like '12.50'); currency is an "
    "ISO 4217 code. A payment firewall decides; a refusal says why."
)


class PaymentPort(Protocol):
    """What a payment tool needs of a `Warden`."""

    def authorize(self, intent: PaymentIntent, *, actor: str | None = None) -> Decision: ...
    def pay(self, intent: PaymentIntent, *, actor: str | None = None) -> Any: ...
    def approval(self, approval_id: str) -> Any: ...


def refusal(decision: Decision) -> str:
    """What a tool tells the model when the policy did not allow a payment."""
    return f"payment denied [{decision.reason_code}]: {decision.reason}"


def paid(amount: str, currency: str, recipient: str, outcome: Any) -> str:
    """What a tool tells the model about a payment made (`outcome`: a `PaymentOutcome`)."""
    payment_id = outcome.payment.payment_id if outcome.payment is not None else "-"
    return f"paid {amount} {currency} to {recipient}: payment {payment_id} is {outcome.state}"
