"""The AutoGen adapter against the real packages: an `AssistantAgent` driven by AutoGen's own
`ReplayChatCompletionClient` (scripted, no network) calls the payment tool through its
workbench. A denial is a tool error the model reads, a payment is keyed on the tool-call id,
and one that needs a human is paid once an operator approved it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from agent_support import GOAL_POLICY, decision_keys

pytest.importorskip("autogen_agentchat")

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.messages import ToolCallExecutionEvent
from autogen_core import CancellationToken, FunctionCall
from autogen_core.models import CreateResult, ModelFamily, ModelInfo, RequestUsage
from autogen_ext.models.replay import ReplayChatCompletionClient

from paywarden import Warden
from paywarden.agents.autogen import payment_tool
from support.wardens import OpenWarden

TOOLS_MODEL = ModelInfo(
    vision=False,
    function_calling=True,
    json_output=False,
    family=ModelFamily.UNKNOWN,
    structured_output=False,
)


@pytest.fixture
def warden(open_warden: OpenWarden) -> Warden:
    warden = open_warden(GOAL_POLICY)
    warden.add_operator("alice", name="Alice")
    return warden


def _pay(call_id: str, amount: str, recipient: str = "shop.example") -> CreateResult:
    arguments = json.dumps({"amount": amount, "currency": "USD", "recipient": recipient})
    call = FunctionCall(id=call_id, arguments=arguments, name="pay")
    usage = RequestUsage(prompt_tokens=0, completion_tokens=0)
    return CreateResult(finish_reason="function_calls", content=[call], usage=usage, cached=False)


def _run(warden: Warden, *replies: CreateResult | str) -> list[tuple[str, bool]]:
    """Run the agent on a task; each tool result it handed the model, with its error flag."""
    agent = AssistantAgent(
        "buyer",
        model_client=ReplayChatCompletionClient(list(replies), model_info=TOOLS_MODEL),
        tools=[payment_tool(warden, agent="agent-a")],
        max_tool_iterations=len(replies),
    )
    result = asyncio.run(agent.run(task="buy a cable"))
    return [
        (str(item.content), item.is_error)
        for message in result.messages
        if isinstance(message, ToolCallExecutionEvent)
        for item in message.content
    ]


def test_a_denial_is_a_tool_error_the_model_reads_then_it_adapts(warden: Warden) -> None:
    denied, allowed = _run(warden, _pay("c1", "50.00", "evil.example"), _pay("c2", "50.00"), "done")
    assert denied[1] is True
    assert "payment denied [denied_by_rule]: this recipient is on the deny list" in denied[0]
    assert allowed[1] is False and "paid 50.00 USD to shop.example" in allowed[0]
    assert [(p.amount_minor, p.state) for p in warden.payments()] == [(5000, "settled")]
    assert decision_keys(warden) == ["ag.c1", "ag.c2"]


def test_an_invalid_call_is_refused_and_nothing_is_paid(warden: Warden) -> None:
    ((text, is_error),) = _run(warden, _pay("c1", "5e1"), "gave up")
    assert is_error and "invalid payment" in text
    assert warden.payments() == [] and decision_keys(warden) == []


def test_a_payment_that_needs_a_human_is_paid_once_approved(warden: Warden) -> None:
    (waiting,) = _run(warden, _pay("c1", "9000.00"), "asked")
    (approval,) = warden.approvals(status="pending")
    assert waiting[1] and approval.approval_id in waiting[0] and warden.payments() == []
    again = _run(warden, _pay("c2", "9000.00"), "asked again")  # still pending: no new request
    assert approval.approval_id in again[0][0] and len(warden.approvals()) == 1
    warden.approve(approval.approval_id, operator="alice", reason="budgeted")
    assert _run(warden, _pay("c3", "9000.00"), "bought")[0][1] is False
    assert [(p.amount_minor, p.state) for p in warden.payments()] == [(900000, "settled")]
    assert warden.approval(approval.approval_id).status == "consumed"


def test_a_rerun_of_the_same_call_id_pays_once(warden: Warden) -> None:
    tool = payment_tool(warden, agent="agent-a")
    arguments: dict[str, Any] = {"amount": "20.00", "currency": "USD", "recipient": "shop.example"}
    for _ in range(2):
        asyncio.run(tool.run_json(arguments, CancellationToken(), call_id="c9"))
    assert [(p.amount_minor, p.state) for p in warden.payments()] == [(2000, "settled")]
    assert decision_keys(warden) == ["ag.c9"]
