"""`paywarden agent run|show` and `paywarden demo agent`, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from agent_support import GOAL_POLICY
from click.testing import CliRunner

from paywarden.entrypoints.cli.main import cli


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env={"PAYWARDEN_LLM_MODEL": ""})
    return result.exit_code, result.output


def test_agent_run_prints_a_transcript_and_show_reads_it_back(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(GOAL_POLICY, encoding="utf-8")
    database = str(tmp_path / "ledger.db")
    code, out = _invoke(
        "agent", "run", "Buy a MacBook Pro for the new engineer",
        "--policy", str(policy), "--database", database, "--agent", "agent-a",
    )  # fmt: skip
    assert code == 0, out
    lines = out.splitlines()
    assert "2499.00 USD to apple.com (MacBook Pro 14-inch)" in lines[1]
    assert lines[2].split()[:2] == ["DENIED", "[denied_by_rule]"]
    assert lines[4].split()[:2] == ["PAID", "[allowed]"]
    assert lines[-1] == "result: paid, 2 of 4 attempts"
    run_id = lines[0].split()[2]
    code, shown = _invoke("agent", "show", run_id, "--database", database, "--json")
    assert code == 0
    data = json.loads(shown)
    assert data["status"] == "paid" and len(data["attempts"]) == 2


def test_a_run_that_pays_nothing_exits_1(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(GOAL_POLICY, encoding="utf-8")
    code, out = _invoke(
        "agent", "run", "pay evil.example 10 USD", "--policy", str(policy),
        "--database", str(tmp_path / "l.db"), "--max-attempts", "2", "--offline",
    )  # fmt: skip
    assert code == 1
    assert out.splitlines()[-1] == "result: denied (every attempt was used), 2 of 2 attempts"


def test_demo_agent_tells_the_three_stories() -> None:
    code, out = _invoke("demo", "agent")
    assert code == 0, out
    results = [line for line in out.splitlines() if line.startswith("result:")]
    assert results == [
        "result: paid, 1 of 4 attempts",
        "result: paid, 2 of 4 attempts",
        "result: exhausted (every attempt was used), 4 of 4 attempts",
    ]
    assert "[budget_exceeded]" in out
    assert "ap-agent paid 10,000.00 USD of 15,000.00" in out
