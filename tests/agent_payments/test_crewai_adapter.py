"""The CrewAI adapter against the real package: a `Crew` whose agent's LLM is a scripted
`BaseLLM` (no network) calls the payment tool the way CrewAI does (its ReAct text loop). A
denial is a tool error the model reads, and a payment that needs a human is paid once an
operator approved it.

CrewAI cannot be installed beside the other extras (it pins older mcp, openai and pydantic),
so these tests skip without it, except with `PAYWARDEN_REQUIRE_CREWAI=1`: `.ci/run` runs this
file in an environment of its own (`.venv-crewai`) with that set."""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
from agent_support import GOAL_POLICY

if os.environ.get("PAYWARDEN_REQUIRE_CREWAI") != "1":
    pytest.importorskip("crewai")

# Importing CrewAI warns (ImportWarning: its lazy `crewai.rag` refuses a child attribute).
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ImportWarning)
    from crewai import Agent, Crew, Task
    from crewai.llms.base_llm import BaseLLM

from paywarden import Warden
from paywarden.agents.crewai import payment_tool
from support.wardens import OpenWarden

# CrewAI's own deprecations (its agents read their own deprecated fields when they start).
pytestmark = [
    pytest.mark.filterwarnings("ignore::ImportWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:crewai"),
]

AGENTS_MD = Path(__file__).resolve().parents[2] / "docs" / "agents.md"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """CrewAI's telemetry and tracing stay off: nothing leaves the machine."""
    for name in ("OTEL_SDK_DISABLED", "CREWAI_DISABLE_TELEMETRY", "CREWAI_TESTING"):
        monkeypatch.setenv(name, "true")
    monkeypatch.setenv("CREWAI_TRACING_ENABLED", "false")


@pytest.fixture
def warden(open_warden: OpenWarden) -> Warden:
    warden = open_warden(GOAL_POLICY)
    warden.add_operator("alice", name="Alice")
    return warden


class ScriptedLLM(BaseLLM):
    """Answers each call with the next scripted text and keeps what it was told."""

    script: list[str] = []
    seen: list[str] = []

    def call(self, messages: Any, *args: Any, **kwargs: Any) -> str:
        self.seen.append(json.dumps(messages) if not isinstance(messages, str) else messages)
        return self.script.pop(0)

    def supports_function_calling(self) -> bool:
        return False


def _pay(amount: str, recipient: str = "shop.example") -> str:
    arguments = json.dumps({"amount": amount, "currency": "USD", "recipient": recipient})
    return f"Thought: I pay.\nAction: pay\nAction Input: {arguments}"


def _kickoff(warden: Warden, *replies: str) -> ScriptedLLM:
    llm = ScriptedLLM(model="scripted", script=[*replies], seen=[])
    buyer = Agent(
        role="buyer",
        goal="buy what the task asks for",
        backstory="pays through paywarden",
        llm=llm,
        tools=[payment_tool(warden, agent="agent-a")],
    )
    task = Task(description="buy a cable", expected_output="what was bought", agent=buyer)
    Crew(agents=[buyer], tasks=[task]).kickoff()
    assert llm.script == []  # every scripted turn was used
    return llm


def test_a_denial_is_a_tool_error_the_model_reads_then_it_adapts(warden: Warden) -> None:
    done = "Thought: done\nFinal Answer: bought"
    llm = _kickoff(warden, _pay("50.00", "evil.example"), _pay("50.00"), done)
    assert "payment denied [denied_by_rule]: this recipient is on the deny list" in llm.seen[1]
    assert "paid 50.00 USD to shop.example" in llm.seen[2]
    assert [(p.amount_minor, p.state) for p in warden.payments()] == [(5000, "settled")]


def test_a_payment_that_needs_a_human_is_paid_once_approved(warden: Warden) -> None:
    llm = _kickoff(warden, _pay("9000.00"), "Thought: wait\nFinal Answer: asked a human")
    (approval,) = warden.approvals(status="pending")
    assert f"approval {approval.approval_id} is pending" in llm.seen[1]
    assert warden.payments() == []
    warden.approve(approval.approval_id, operator="alice", reason="budgeted")
    llm = _kickoff(warden, _pay("9000.00"), "Thought: done\nFinal Answer: bought")
    assert "is settled" in llm.seen[1]
    assert [(p.amount_minor, p.state) for p in warden.payments()] == [(900000, "settled")]
    assert warden.approval(approval.approval_id).status == "consumed"


def test_the_docs_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/agents.md's CrewAI example (tests/agent_payments/test_agents_docs.py skips it where
    CrewAI is not installed)."""
    text = AGENTS_MD.read_text(encoding="utf-8")
    (body,) = [b for b in re.findall(r"^```python\n(.*?)^```", text, re.S | re.M) if "crewai" in b]
    monkeypatch.chdir(tmp_path)
    exec(compile(body, "docs/agents.md (CrewAI)", "exec"), {"__name__": "__docs_example__"})
    assert capsys.readouterr().out.strip().endswith("['settled']")
