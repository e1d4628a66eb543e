"""The OpenAI Agents SDK adapter against the real package, driven by its ScriptedModel (no
network): the guardrail refuses a denied call with the reason, an allowed one is paid by the
tool body, and a call that needs a human interrupts the run until a paywarden operator decides."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from agent_support import GOAL_POLICY

pytest.importorskip("agents")

from agents import Agent, RunConfig, Runner, set_tracing_disabled
from agents.run_config import ToolExecutionConfig
from agents.testing import ScriptedModel, assistant_message, function_call

from paywarden import Warden
from paywarden.agents.openai_agents import payment_tool, resolve_interruptions
from support.wardens import OpenWarden

set_tracing_disabled(True)  # nothing leaves the machine
CONFIG = RunConfig(tool_execution=ToolExecutionConfig(pre_approval_tool_input_guardrails=True))


@pytest.fixture
def warden(open_warden: OpenWarden) -> Warden:
    warden = open_warden(GOAL_POLICY)
    warden.add_operator("alice", name="Alice")
    return warden


def _call(call_id: str, amount: str, recipient: str = "shop.example") -> Any:
    arguments = {"amount": amount, "currency": "USD", "recipient": recipient, "purpose": None}
    return function_call("pay", arguments, call_id=call_id)


def _agent(warden: Warden, *steps: Any) -> tuple[Agent[Any], ScriptedModel]:
    model = ScriptedModel(list(steps))
    tool = payment_tool(warden, agent="agent-a")
    return Agent(name="buyer", instructions="buy things", model=model, tools=[tool]), model


def _tool_outputs(model: ScriptedModel) -> list[str]:
    outputs = []
    for call in model.calls:
        items = call.input if isinstance(call.input, list) else []
        outputs.extend(
            str(item.get("output"))
            for item in items
            if isinstance(item, dict) and item.get("type") == "function_call_output"
        )
    return outputs


def test_an_allowed_call_is_paid_and_a_denied_one_refused_with_the_reason(warden: Warden) -> None:
    agent, model = _agent(
        warden,
        [_call("call_1", "50.00", "evil.example")],
        [_call("call_2", "50.00")],
        [assistant_message("done")],
    )
    result = asyncio.run(Runner.run(agent, "buy a cable", run_config=CONFIG))
    assert result.final_output == "done"
    outputs = _tool_outputs(model)
    assert any(
        "payment denied [denied_by_rule]: this recipient is on the deny list" in o for o in outputs
    )
    assert any(o.startswith("paid 50.00 USD to shop.example") for o in outputs)
    payments = warden.payments()
    assert [(p.amount_minor, p.state) for p in payments] == [(5000, "settled")]
    assert json.loads(payments[0].intent)["recipient"] == "shop.example"


def test_a_malformed_call_is_refused_not_paid(warden: Warden) -> None:
    bad = function_call(
        "pay", {"amount": "1e999999", "currency": "USD", "recipient": "a.example"}, call_id="c"
    )
    agent, model = _agent(warden, [bad], [assistant_message("ok")])
    asyncio.run(Runner.run(agent, "buy", run_config=CONFIG))
    assert any("invalid payment" in o for o in _tool_outputs(model))
    assert warden.payments() == []


def test_an_approval_interrupts_until_a_paywarden_operator_decides(warden: Warden) -> None:
    agent, model = _agent(warden, [_call("call_big", "9000.00")], [assistant_message("bought")])
    result = asyncio.run(Runner.run(agent, "buy the rack", run_config=CONFIG))
    assert len(result.interruptions) == 1 and warden.payments() == []
    state = result.to_state()
    assert len(resolve_interruptions(state, warden, agent="agent-a")) == 1  # still pending
    (approval,) = warden.approvals(status="pending")
    warden.approve(approval.approval_id, operator="alice", reason="budgeted")
    assert resolve_interruptions(state, warden, agent="agent-a") == []
    resumed = asyncio.run(Runner.run(agent, state, run_config=CONFIG))
    assert resumed.final_output == "bought"
    assert [(p.amount_minor, p.state) for p in warden.payments()] == [(900000, "settled")]


def test_a_rejected_approval_is_never_paid(warden: Warden) -> None:
    agent, model = _agent(warden, [_call("call_big", "9000.00")], [assistant_message("gave up")])
    result = asyncio.run(Runner.run(agent, "buy the rack", run_config=CONFIG))
    state = result.to_state()
    (approval,) = warden.approvals(status="pending")
    warden.reject(approval.approval_id, operator="alice", reason="not this quarter")
    assert resolve_interruptions(state, warden, agent="agent-a") == []
    resumed = asyncio.run(Runner.run(agent, state, run_config=CONFIG))
    assert resumed.final_output == "gave up"
    assert warden.payments() == []
    assert any("a human refused this payment (rejected)" in o for o in _tool_outputs(model))
