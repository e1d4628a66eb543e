"""The LangChain / LangGraph adapter against the real packages, with a scripted chat model (no
network): a denial is a tool error the model reads, an approval interrupts the graph until a
paywarden operator decides, and resuming (which runs the node again) pays exactly once."""

from __future__ import annotations

from typing import Any

import pytest
from agent_support import GOAL_POLICY

pytest.importorskip("langgraph")

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Command

from paywarden import Warden
from paywarden.agents.langchain import payment_tool
from support.wardens import OpenWarden


@pytest.fixture
def warden(open_warden: OpenWarden) -> Warden:
    warden = open_warden(GOAL_POLICY)
    warden.add_operator("alice", name="Alice")
    return warden


def _pay(call_id: str, amount: str, recipient: str = "shop.example") -> AIMessage:
    args = {"amount": amount, "currency": "USD", "recipient": recipient}
    return AIMessage(content="", tool_calls=[{"name": "pay", "args": args, "id": call_id}])


def _graph(warden: Warden, *replies: AIMessage) -> Any:
    model = GenericFakeChatModel(messages=iter(replies))

    def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode([payment_tool(warden, agent="agent-a")]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    builder.add_edge("agent", END)
    return builder.compile(checkpointer=InMemorySaver())


def _tool_messages(result: dict[str, Any]) -> list[str]:
    return [str(m.content) for m in result["messages"] if isinstance(m, ToolMessage)]


def test_a_denial_is_a_tool_error_the_model_reads_then_it_adapts(warden: Warden) -> None:
    graph = _graph(
        warden, _pay("c1", "50.00", "evil.example"), _pay("c2", "50.00"), AIMessage(content="done")
    )
    config = {"configurable": {"thread_id": "t1"}}
    result = graph.invoke({"messages": [("user", "buy a cable")]}, config)
    denied, paid = _tool_messages(result)
    assert "payment denied [denied_by_rule]: this recipient is on the deny list" in denied
    assert paid.startswith("paid 50.00 USD to shop.example")
    assert [(p.amount_minor, p.state) for p in warden.payments()] == [(5000, "settled")]


def test_an_approval_interrupts_and_the_resumed_node_pays_once(warden: Warden) -> None:
    graph = _graph(warden, _pay("big", "9000.00"), AIMessage(content="bought"))
    config = {"configurable": {"thread_id": "t2"}}
    first = graph.invoke({"messages": [("user", "buy the rack")]}, config)
    (pending,) = first["__interrupt__"]
    approval_id = pending.value["approval_id"]
    assert pending.value["kind"] == "paywarden.approval"
    assert warden.payments() == []
    again = graph.invoke(Command(resume="check"), config)  # nobody decided yet: ask again
    (still,) = again["__interrupt__"]
    assert still.value["approval_id"] == approval_id and warden.payments() == []
    warden.approve(approval_id, operator="alice", reason="budgeted")
    done = graph.invoke(Command(resume="approved"), config)
    assert done["messages"][-1].content == "bought"
    assert [(p.amount_minor, p.state) for p in warden.payments()] == [(900000, "settled")]
    assert len(warden.approvals(status="pending")) == 0


def test_a_rejected_approval_is_a_tool_error_and_nothing_is_paid(warden: Warden) -> None:
    graph = _graph(warden, _pay("big", "9000.00"), AIMessage(content="gave up"))
    config = {"configurable": {"thread_id": "t3"}}
    first = graph.invoke({"messages": [("user", "buy the rack")]}, config)
    (pending,) = first["__interrupt__"]
    warden.reject(pending.value["approval_id"], operator="alice", reason="no")
    done = graph.invoke(Command(resume="rejected"), config)
    assert "payment not approved" in _tool_messages(done)[-1]
    assert warden.payments() == []
