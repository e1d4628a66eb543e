"""paywarden for the OpenAI Agents SDK (the `openai-agents` extra): a payment function tool.

`payment_tool(warden, agent=...)` is a `FunctionTool` (`pay(amount, currency, recipient,
purpose)`) with three layers, all keyed on the SDK's tool-call id:

* a tool input guardrail authorizes the call (idempotency key `<call id>`) and refuses a denied
  one with its reason (`reject_content`): the model reads why and can adapt;
* `needs_approval` is true when the policy said `require_approval`, so the run stops with an
  interruption; `resolve_interruptions(state, warden)` approves or rejects each one as the
  paywarden approval was decided by a human (`warden.approve` / `reject`), and leaves the
  undecided ones pending;
* the tool body pays with `warden.pay`: the real enforcement (the guardrails only shape the
  agent's experience). A call the human approved pays with the key `<call id>.approved`,
  which consumes the approval once.

Run with `RunConfig(tool_execution=ToolExecutionConfig(pre_approval_tool_input_guardrails=True))`
so the guardrail decides before the approval step.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from agents import FunctionTool, RunContextWrapper, function_tool
from agents.items import ToolApprovalItem
from agents.run_state import RunState
from agents.tool_context import ToolContext
from agents.tool_guardrails import (
    ToolGuardrailFunctionOutput,
    ToolInputGuardrailData,
    tool_input_guardrail,
)

from paywarden.agents.proposal import ProposalError, parse_proposal
from paywarden.agents.tools import DESCRIPTION, PaymentPort, paid, refusal
from paywarden.intent import PaymentIntent
from paywarden.policy.decision import Decision


def payment_tool(
    warden: PaymentPort, *, agent: str, action: str = "purchase", name: str = "pay"
) -> FunctionTool:
    """The guarded payment tool for `agent` (see the module docstring)."""

    def intent(arguments: str, key: str) -> PaymentIntent:
        return parse_proposal(arguments).intent(agent=agent, action=action, idempotency_key=key)

    def decide(arguments: str, call_id: str) -> Decision:
        return warden.authorize(intent(arguments, f"oa.{call_id}"))

    @tool_input_guardrail
    async def policy_guardrail(data: ToolInputGuardrailData) -> ToolGuardrailFunctionOutput:
        context = data.context
        try:
            decision = await asyncio.to_thread(decide, context.tool_arguments, context.tool_call_id)
        except ProposalError as error:
            return ToolGuardrailFunctionOutput.reject_content(f"invalid payment: {error}")
        if decision.outcome == "deny":
            return ToolGuardrailFunctionOutput.reject_content(refusal(decision))
        return ToolGuardrailFunctionOutput.allow(decision.reason_code)

    async def needs_approval(
        context: RunContextWrapper[Any], params: dict[str, Any], call_id: str
    ) -> bool:
        try:
            decision = await asyncio.to_thread(decide, _arguments(params), call_id)
        except ProposalError:
            return False  # the guardrail refuses it
        return decision.outcome == "require_approval"

    async def pay(
        context: ToolContext[Any],
        amount: str,
        currency: str,
        recipient: str,
        purpose: str | None = None,
    ) -> str:
        arguments = _arguments(
            {"amount": amount, "currency": currency, "recipient": recipient, "purpose": purpose}
        )
        call_id = context.tool_call_id
        first = await asyncio.to_thread(decide, arguments, call_id)
        key = f"oa.{call_id}.approved" if first.outcome == "require_approval" else f"oa.{call_id}"
        outcome = await asyncio.to_thread(warden.pay, intent(arguments, key))
        decision: Decision = outcome.decision
        if not decision.allowed:
            return refusal(decision)
        return paid(amount, currency, recipient, outcome)

    tool: FunctionTool = function_tool(
        pay,
        name_override=name,
        description_override=DESCRIPTION,
        needs_approval=needs_approval,
        tool_input_guardrails=[policy_guardrail],
    )
    return tool


def resolve_interruptions(
    state: RunState[Any, Any], warden: PaymentPort, *, agent: str, action: str = "purchase"
) -> list[ToolApprovalItem]:
    """Approve or reject each payment interruption of `state` as its paywarden approval was
    decided; the interruptions still pending a human, which stay as they are."""
    pending: list[ToolApprovalItem] = []
    for item in state.get_interruptions():
        call_id, arguments = item.call_id, item.arguments
        if call_id is None or arguments is None:
            pending.append(item)
            continue
        key = f"oa.{call_id}"
        decision = warden.authorize(
            parse_proposal(arguments).intent(agent=agent, action=action, idempotency_key=key)
        )
        status = warden.approval(decision.approval_id).status if decision.approval_id else None
        if status in ("approved", "consumed"):
            state.approve(item)
        elif status in ("rejected", "expired", "voided"):
            state.reject(item, rejection_message=f"a human refused this payment ({status})")
        else:
            pending.append(item)
    return pending


def _arguments(params: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in params.items() if v is not None})
