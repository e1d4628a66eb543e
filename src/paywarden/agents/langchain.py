"""paywarden for LangChain and LangGraph (the `langchain` extra): a guarded payment tool.

`payment_tool(warden, agent=...)` is a LangChain tool `pay(amount, currency, recipient,
purpose)` whose body is the enforcement: it pays with `warden.pay`, keyed on the tool-call id
(`lc.<call id>`), and

* raises `ToolException` with the reason code and sentence when the policy denies (with
  `ToolNode(handle_tool_errors=True)`, or the tool's own `handle_tool_error`, the model reads
  why and can adapt);
* on `require_approval`, calls LangGraph's `interrupt()` with the approval to decide; once a
  paywarden operator approved it (`warden.approve`), resume the graph with
  `Command(resume=...)` and the tool pays with the key `lc.<call id>.approved`, consuming the
  approval once. A rejected or expired approval raises `ToolException`.

LangGraph runs an interrupted node again from its start on resume: every step above replays
by its key (the first authorization is not made twice, a payment is never made twice), so the
tool is idempotent under node re-runs. The graph needs a checkpointer (e.g. `InMemorySaver`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from langchain_core.tools import BaseTool, InjectedToolCallId, ToolException, tool
from langgraph.types import interrupt

from paywarden.agents.proposal import ProposalError, parse_proposal
from paywarden.agents.tools import DESCRIPTION, PaymentPort, paid, refusal
from paywarden.policy.decision import Decision


def payment_tool(
    warden: PaymentPort, *, agent: str, action: str = "purchase", name: str = "pay"
) -> BaseTool:
    """The guarded payment tool for `agent` (see the module docstring)."""

    def pay_with(arguments: dict[str, object], key: str) -> Any:
        try:
            proposal = parse_proposal({k: v for k, v in arguments.items() if v is not None})
            intent = proposal.intent(agent=agent, action=action, idempotency_key=key)
        except ProposalError as error:
            raise ToolException(f"invalid payment: {error}") from error
        return warden.pay(intent)

    @tool(name, description=DESCRIPTION)
    def pay(
        amount: str,
        currency: str,
        recipient: str,
        tool_call_id: Annotated[str, InjectedToolCallId],
        purpose: str | None = None,
    ) -> str:
        arguments: dict[str, object] = {
            "amount": amount,
            "currency": currency,
            "recipient": recipient,
            "purpose": purpose,
        }
        outcome = pay_with(arguments, f"lc.{tool_call_id}")
        decision: Decision = outcome.decision
        if decision.outcome == "require_approval" and decision.approval_id is not None:
            _wait_for_human(warden, decision, arguments)
            outcome = pay_with(arguments, f"lc.{tool_call_id}.approved")
            decision = outcome.decision
        if not decision.allowed:
            raise ToolException(refusal(decision))
        return paid(amount, currency, recipient, outcome)

    pay.handle_tool_error = True
    return pay


def _wait_for_human(warden: PaymentPort, decision: Decision, arguments: dict[str, object]) -> None:
    """Interrupt the graph until the approval is decided; raise unless it was approved."""
    approval_id = str(decision.approval_id)
    question = {
        "kind": "paywarden.approval",
        "approval_id": approval_id,
        "reason": decision.reason,
        "payment": json.loads(json.dumps(arguments)),
    }
    # Each resume answers one interrupt; while nobody has decided, ask again (the next
    # interrupt of this node pauses the graph once more).
    interrupt(question)
    status = warden.approval(approval_id).status
    while status == "pending":
        interrupt(question)
        status = warden.approval(approval_id).status
    if status not in ("approved", "consumed"):  # consumed: by this call, on an earlier run
        raise ToolException(
            f"payment not approved: approval {approval_id} is {status} (a human decides it "
            "with paywarden, then the graph is resumed)"
        )
