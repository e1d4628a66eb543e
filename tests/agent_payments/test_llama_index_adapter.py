"""The LlamaIndex adapter against the real package: a `FunctionAgent` driven by LlamaIndex's own
`MockFunctionCallingLLM` with a scripted response generator (no network) calls the payment
tool. A denial is a tool error the model reads, a float amount is refused, and a payment that
needs a human is paid once an operator approved it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from agent_support import GOAL_POLICY

pytest.importorskip("llama_index.core")

from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult
from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
from llama_index.core.llms.mock import MockFunctionCallingLLM

from paywarden import Warden
from paywarden.agents.llama_index import payment_tool
from support.wardens import OpenWarden

# LlamaIndex's workflows read pydantic's deprecated attributes (`__fields__`...) when they
# collect their steps.
pytestmark = pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecationWarning")


@pytest.fixture
def warden(open_warden: OpenWarden) -> Warden:
    warden = open_warden(GOAL_POLICY)
    warden.add_operator("alice", name="Alice")
    return warden


def _pay(amount: object, recipient: str = "shop.example") -> dict[str, object]:
    return {"amount": amount, "currency": "USD", "recipient": recipient}


def _run(warden: Warden, *steps: dict[str, object] | str) -> list[tuple[str, bool]]:
    """Run the agent; each model turn takes the next step (arguments to call `pay` with, or
    the final text). Each tool output the model was handed, with its error flag."""
    script = list(steps)

    def respond(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        step = script.pop(0)
        if isinstance(step, str):
            return ChatMessage(role=MessageRole.ASSISTANT, content=step)
        call = ToolCallBlock(tool_call_id=f"call_{len(script)}", tool_name="pay", tool_kwargs=step)
        return ChatMessage(role=MessageRole.ASSISTANT, blocks=[call])

    agent = FunctionAgent(
        tools=[payment_tool(warden, agent="agent-a")],
        llm=MockFunctionCallingLLM(response_generator=respond),
    )

    async def run() -> list[tuple[str, bool]]:
        handler = agent.run(user_msg="buy a cable")
        seen = [
            (str(event.tool_output.content), event.tool_output.is_error)
            async for event in handler.stream_events()
            if isinstance(event, ToolCallResult)
        ]
        await handler
        return seen

    results = asyncio.run(run())
    assert script == []  # every scripted turn was used
    return results


def test_a_denial_is_a_tool_error_the_model_reads_then_it_adapts(warden: Warden) -> None:
    denied, allowed = _run(warden, _pay("50.00", "evil.example"), _pay("50.00"), "done")
    assert denied[1] is True
    assert "payment denied [denied_by_rule]: this recipient is on the deny list" in denied[0]
    assert allowed[1] is False and "paid 50.00 USD to shop.example" in allowed[0]
    assert [(p.amount_minor, p.state) for p in warden.payments()] == [(5000, "settled")]


def test_a_float_amount_is_refused_and_nothing_is_paid(warden: Warden) -> None:
    ((text, is_error),) = _run(warden, _pay(50.0), "gave up")
    assert is_error and text.startswith("invalid payment")
    assert warden.payments() == [] and warden.approvals() == []


def test_a_payment_that_needs_a_human_is_paid_once_approved(warden: Warden) -> None:
    ((waiting, is_error),) = _run(warden, _pay("9000.00"), "asked")
    (approval,) = warden.approvals(status="pending")
    assert is_error and approval.approval_id in waiting and warden.payments() == []
    warden.approve(approval.approval_id, operator="alice", reason="budgeted")
    ((done, is_error),) = _run(warden, _pay("9000.00"), "bought")
    assert not is_error and "is settled" in done
    assert [(p.amount_minor, p.state) for p in warden.payments()] == [(900000, "settled")]
    assert warden.approval(approval.approval_id).status == "consumed"
