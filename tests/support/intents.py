"""Intents and request bodies with a test module's own defaults.

`intent_builder("10.00", agent="agent-1")` gives `_intent(amount="10.00", **changes)`: the public
`paywarden.testing.example_intent` (agent-a, payments.transfer, USD, vendor.example.com) with the
module's default amount and fields, any of them overridden per call."""

from __future__ import annotations

from typing import Any, Protocol

from paywarden import PaymentIntent
from paywarden.testing import example_intent


class IntentBuilder(Protocol):
    def __call__(self, amount: str = ..., **changes: Any) -> PaymentIntent: ...


def intent_builder(amount: str = "500.00", **defaults: Any) -> IntentBuilder:
    """`example_intent` with `amount` and `defaults` as the defaults of every call."""

    def build(amount: str = amount, **changes: Any) -> PaymentIntent:
        return example_intent(amount, **{**defaults, **changes})

    return build


def intent_body(amount: object = "10.00", **changes: Any) -> dict[str, Any]:
    """The JSON body of a transfer (REST) or the arguments of `request_payment` (MCP): what an
    agent sends, without the agent, which its key names. `amount` may be any JSON value."""
    body: dict[str, Any] = {
        "action": "payments.transfer",
        "amount": amount,
        "currency": "USD",
        "recipient": "vendor.example.com",
    }
    body.update(changes)
    return body


# The seed policies' example payment (src/paywarden/examples, docs): the treasury agent paying
# the vendor account `vendor-corp-123`; with `example_intent(amount, **TREASURY_TRANSFER)`.
TREASURY_TRANSFER: dict[str, Any] = {"agent": "treasury-agent", "recipient": "vendor-corp-123"}
