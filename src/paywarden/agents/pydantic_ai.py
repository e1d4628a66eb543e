"""paywarden for PydanticAI (the `pydantic-ai` extra): a thin guarded payment tool.

`payment_tool(warden, agent=...)` is a `pydantic_ai.Tool` `pay(amount, currency, recipient,
purpose)` whose body pays with `warden.pay`, keyed on the tool-call id (`pa.<call id>`):

* a denial raises `ModelRetry` with the reason code and sentence, so the model reads why and
  can adapt (at most `max_retries` times, 3 by default);
* `require_approval` raises `ApprovalRequired` (metadata: the paywarden `approval_id`), so the
  run ends with `DeferredToolRequests` (give the agent `output_type=[str,
  DeferredToolRequests]`); `deferred_results(requests, warden)` answers each call as a
  paywarden operator decided it, and the next run pays an approved call with the key
  `pa.<call id>.approved`, consuming the approval once.
"""

from __future__ import annotations

from typing import Any

from pydantic_ai import (
    ApprovalRequired,
    DeferredToolRequests,
    DeferredToolResults,
    ModelRetry,
    RunContext,
    Tool,
    ToolDenied,
)

from paywarden.agents.proposal import ProposalError, parse_proposal
from paywarden.agents.tools import DESCRIPTION, PaymentPort, paid, refusal


def payment_tool(
    warden: PaymentPort,
    *,
    agent: str,
    action: str = "purchase",
    name: str = "pay",
    max_retries: int = 3,
) -> Tool[Any]:
    """The guarded payment tool for `agent` (see the module docstring)."""

    def pay(
        ctx: RunContext[Any], amount: str, currency: str, recipient: str, purpose: str | None = None
    ) -> str:
        key = f"pa.{ctx.tool_call_id}" + (".approved" if ctx.tool_call_approved else "")
        arguments = {"amount": amount, "currency": currency, "recipient": recipient}
        try:
            proposal = parse_proposal({**arguments, "purpose": purpose})
            intent = proposal.intent(agent=agent, action=action, idempotency_key=key)
        except ProposalError as error:
            raise ModelRetry(f"invalid payment: {error}") from error
        outcome = warden.pay(intent)
        decision = outcome.decision
        if decision.outcome == "require_approval" and not ctx.tool_call_approved:
            raise ApprovalRequired(
                metadata={"approval_id": decision.approval_id, "reason": decision.reason}
            )
        if not decision.allowed:
            raise ModelRetry(refusal(decision))
        return paid(amount, currency, recipient, outcome)

    return Tool(pay, name=name, description=DESCRIPTION, max_retries=max_retries)


def deferred_results(
    requests: DeferredToolRequests, warden: PaymentPort
) -> DeferredToolResults | None:
    """Each approval request answered as its paywarden approval was decided (approved: the
    call runs; rejected or expired: denied with why); None while any is still pending."""
    results = DeferredToolResults()
    for call in requests.approvals:
        metadata = requests.metadata.get(call.tool_call_id, {})
        approval_id = metadata.get("approval_id")
        status = warden.approval(str(approval_id)).status if approval_id else "unknown"
        if status == "pending":
            return None
        if status == "approved":
            results.approvals[call.tool_call_id] = True
        else:
            message = f"a human refused this payment (approval {approval_id} is {status})"
            results.approvals[call.tool_call_id] = ToolDenied(message)
    return results
