"""Every python block of docs/agents.md runs as it is; the OpenAI-compatible one against the
fake server on loopback, configured through the documented environment variables."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from agent_fake_llm import fake_llm

AGENTS_MD = Path(__file__).resolve().parents[2] / "docs" / "agents.md"
_FENCE = re.compile(r"^```python\n(?P<body>.*?)^```[ \t]*$", re.S | re.M)


def _blocks() -> list[tuple[int, str]]:
    text = AGENTS_MD.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group("body")) for m in _FENCE.finditer(text)]


def test_there_is_an_example_for_the_loop_the_decorator_and_each_adapter() -> None:
    bodies = "\n".join(body for _, body in _blocks())
    needles = ("run_goal", "OpenAIPlanner", "guarded_payment", "openai_agents", "langchain")
    for needle in (*needles, "agents.pydantic_ai", "agents.autogen", "agents.llama_index"):
        assert needle in bodies


# LlamaIndex's workflows read pydantic's deprecated attributes (`__fields__`...).
@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecationWarning")
@pytest.mark.parametrize(("line", "body"), _blocks(), ids=[f"agents.md:{n}" for n, _ in _blocks()])
def test_agents_example_runs(
    line: int,
    body: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if "from crewai" in body:  # its own environment: test_crewai_adapter.py runs it there
        pytest.importorskip("crewai")
    monkeypatch.chdir(tmp_path)
    answer = json.dumps({"amount": "50.00", "currency": "USD", "recipient": "api.openai.com"})
    with fake_llm(answer) as (_, url):
        monkeypatch.setenv("PAYWARDEN_LLM_BASE_URL", url)
        monkeypatch.setenv("PAYWARDEN_LLM_MODEL", "fake-model")
        monkeypatch.setenv("PAYWARDEN_LLM_API_KEY", "sk-docs")
        exec(compile(body, f"docs/agents.md:{line}", "exec"), {"__name__": "__docs_example__"})
    out = capsys.readouterr().out
    if 'run_goal("Buy a MacBook' in body:
        assert out.splitlines() == ["paid", "1 denied denied_by_rule", "2 paid allowed"]
    if "OpenAIPlanner" in body:
        assert out.strip() == "paid fake-model"
    if "guarded_payment" in body:
        assert out.splitlines() == ["ordered usb-c-cable", "no_rule_matched True"]
    adapters = ("openai_agents", "langchain", "agents.pydantic_ai")
    if any(name in body for name in (*adapters, "agents.autogen", "agents.llama_index")):
        assert out.strip().endswith("['settled']")
