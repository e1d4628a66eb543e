"""What the framework payment tools share (`openai_agents`, `langchain`, `pydantic_ai`, and the
thin `autogen`, `llama_index` and `crewai`): the tool's description, what a tool needs of a
`Warden`, the sentences the model reads, and the thin tools' whole body (`pay_call`)."""

from __future__ import annotations

import secrets
from typing import Any, Protocol

from paywarden.agents.proposal import ProposalError, parse_proposal
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


class PaymentRefusedError(Exception):
    """What a thin tool (`autogen`, `llama_index`, `crewai`) raises when nothing was paid: the
    message is the sentence the model reads (each framework hands a tool's error back to it)."""


def fresh_key(prefix: str) -> str:
    """An idempotency key for a tool call the framework gives no id: `<prefix>.<random>`."""
    return f"{prefix}.{secrets.token_hex(12)}"


def pay_call(
    warden: PaymentPort,
    amount: str,
    currency: str,
    recipient: str,
    purpose: str | None = None,
    *,
    agent: str,
    action: str,
    key: str,
) -> str:
    """One thin tool call: the model's arguments parsed strictly, paid with `warden.pay` under the
    idempotency key `key`, and the sentence the model reads returned; a refusal raises
    `PaymentRefusedError`. A payment that needs a human names its approval: the same payment
    asked again (a new call) once an operator approved it consumes the approval and pays; while
    it is pending, the same request is answered again (no second request)."""
    arguments = {"amount": amount, "currency": currency, "recipient": recipient}
    try:
        proposal = parse_proposal({**arguments, **({"purpose": purpose} if purpose else {})})
        intent = proposal.intent(agent=agent, action=action, idempotency_key=key)
    except ProposalError as error:
        raise PaymentRefusedError(f"invalid payment: {error}") from error
    outcome = warden.pay(intent)
    decision: Decision = outcome.decision
    if decision.outcome == "require_approval":
        raise PaymentRefusedError(
            f"payment waits for a human [{decision.reason_code}]: {decision.reason}; approval "
            f"{decision.approval_id} is pending. Make the same call again once it is approved."
        )
    if not decision.allowed:
        raise PaymentRefusedError(refusal(decision))
    return paid(amount, currency, recipient, outcome)
