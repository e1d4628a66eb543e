"""The PydanticAI adapter against the real package with a scripted FunctionModel (no network):
a denial is a retry the model reads, an approval defers the call until a paywarden operator
decides, and the approved call is paid once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agent_support import GOAL_POLICY

pytest.importorskip("pydantic_ai")

from pydantic_ai import Agent, DeferredToolRequests
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from paywarden import Warden
from paywarden.agents.pydantic_ai import deferred_results, payment_tool
from support.wardens import OpenWarden


@pytest.fixture
def warden(open_warden: OpenWarden) -> Warden:
    warden = open_warden(GOAL_POLICY)
    warden.add_operator("alice", name="Alice")
    return warden


def _scripted(*calls: dict[str, str] | str) -> FunctionModel:
    """Each model turn takes the next step: tool arguments to call `pay` with, or final text."""
    steps = list(calls)

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        step = steps.pop(0)
        if isinstance(step, str):
            return ModelResponse(parts=[TextPart(step)])
        return ModelResponse(parts=[ToolCallPart("pay", step, tool_call_id=f"call_{len(steps)}")])

    return FunctionModel(respond)


def _agent(warden: Warden, model: FunctionModel) -> Agent[None, Any]:
    return Agent(
        model,
        output_type=[str, DeferredToolRequests],
        tools=[payment_tool(warden, agent="agent-a")],
    )


def _returns(result: Any) -> list[str]:
    return [
        str(part.content)
        for message in result.all_messages()
        for part in getattr(message, "parts", [])
        if isinstance(part, ToolReturnPart) or part.part_kind == "retry-prompt"
    ]


def test_a_denial_is_a_retry_and_the_adapted_call_is_paid(warden: Warden) -> None:
    evil = {"amount": "50.00", "currency": "USD", "recipient": "evil.example"}
    good = {"amount": "50.00", "currency": "USD", "recipient": "shop.example"}
    result = asyncio.run(_agent(warden, _scripted(evil, good, "done")).run("buy a cable"))
    assert result.output == "done"
    said = " ".join(_returns(result))
    assert "payment denied [denied_by_rule]: this recipient is on the deny list" in said
    assert [(p.amount_minor, p.state) for p in warden.payments()] == [(5000, "settled")]


def test_an_approval_defers_the_call_until_an_operator_decides(warden: Warden) -> None:
    big = {"amount": "9000.00", "currency": "USD", "recipient": "shop.example"}
    agent = _agent(warden, _scripted(big, "bought"))
    first = asyncio.run(agent.run("buy the rack"))
    assert isinstance(first.output, DeferredToolRequests) and warden.payments() == []
    assert deferred_results(first.output, warden) is None  # nobody decided yet
    (approval,) = warden.approvals(status="pending")
    warden.approve(approval.approval_id, operator="alice", reason="budgeted")
    results = deferred_results(first.output, warden)
    done = asyncio.run(
        agent.run(message_history=first.all_messages(), deferred_tool_results=results)
    )
    assert done.output == "bought"
    assert [(p.amount_minor, p.state) for p in warden.payments()] == [(900000, "settled")]


def test_a_rejected_approval_is_denied_and_nothing_is_paid(warden: Warden) -> None:
    big = {"amount": "9000.00", "currency": "USD", "recipient": "shop.example"}
    agent = _agent(warden, _scripted(big, "gave up"))
    first = asyncio.run(agent.run("buy the rack"))
    (approval,) = warden.approvals(status="pending")
    warden.reject(approval.approval_id, operator="alice", reason="no")
    results = deferred_results(first.output, warden)
    done = asyncio.run(
        agent.run(message_history=first.all_messages(), deferred_tool_results=results)
    )
    assert done.output == "gave up" and warden.payments() == []
    assert any("a human refused this payment" in text for text in _returns(done))
