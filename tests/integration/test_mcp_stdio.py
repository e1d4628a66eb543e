"""`paywarden mcp` as an MCP client really starts it: a subprocess speaking MCP on stdio, with
the agent key in `PAYWARDEN_AGENT_KEY` (or `--key`). Method: the SDK's stdio client launches
the command against a ledger file this test created the keys in, then the test reads the
ledger directly to see who paid."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from paywarden import Warden
from support.intents import intent_body
from support.policies import policy_path

POLICY = policy_path("pay_200_an_hour_per_agent")
KEY_SECRET = "stdio-test-server-secret-0123456789abcdef"
CLI = "from paywarden.entrypoints.cli.main import main; main()"


@pytest.fixture
def ledger(database: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv("PAYWARDEN_KEY_SECRET", KEY_SECRET)
    return POLICY, database


def _command(policy: Path, database: Path, *extra: str) -> list[str]:
    return ["-c", CLI, "mcp", "--policy", str(policy), "--database", str(database), *extra]


def _run_mcp(
    policy: Path, database: Path, *extra: str, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`paywarden mcp` run to its end, its output captured."""
    return subprocess.run(
        [sys.executable, *_command(policy, database, *extra)],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _create_key(database: Path, policy: Path, **fields: str) -> str:
    with Warden.open(policy, database=database) as warden:
        if fields.get("role") == "operator":
            warden.add_operator("op-1", name="Olive")
        secret, _ = warden.create_key(actor="test", **fields)
    return secret


@pytest.mark.parametrize("key_from", ["env", "flag"])
def test_a_stdio_client_pays_as_the_agent_of_the_key(
    ledger: tuple[Path, Path], key_from: str
) -> None:
    policy, database = ledger
    secret = _create_key(database, policy, role="agent", agent="agent-a")
    env = {"PAYWARDEN_KEY_SECRET": KEY_SECRET}
    extra: tuple[str, ...] = ()
    if key_from == "env":
        env["PAYWARDEN_AGENT_KEY"] = secret
    else:
        extra = ("--key", secret)
    params = StdioServerParameters(
        command=sys.executable, args=_command(policy, database, *extra), env=env
    )
    seen: dict[str, object] = {}

    async def main() -> None:
        async with Client(params) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert "request_payment" in names and len(names) == 9
            result = await client.call_tool(
                "request_payment",
                intent_body("40.00"),
            )
            assert not result.is_error and result.structured_content is not None
            seen.update(result.structured_content)
            budgets = await client.call_tool("get_budget_status", {})
            assert budgets.structured_content is not None
            seen["remaining"] = budgets.structured_content["budgets"][0]["remaining"]

    anyio.run(main)
    assert (seen["status"], seen["remaining"]) == ("paid", "160.00")
    with Warden.open(policy, database=database) as warden:
        (payment,) = warden.payments()
    assert (payment.agent, payment.state) == ("agent-a", "settled")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"role": "operator", "operator": "op-1"}, "agent keys only"),
        ({"role": "admin"}, "agent keys only"),
        ({}, "invalid or revoked API key"),
    ],
)
def test_a_key_that_is_not_an_agent_key_stops_the_command(
    ledger: tuple[Path, Path], fields: dict[str, str], message: str
) -> None:
    policy, database = ledger
    secret = (
        _create_key(database, policy, **fields) if fields else "pw_live_0123456789ab_" + "0" * 48
    )
    if not fields:
        _create_key(database, policy, role="agent", agent="agent-a")  # the ledger exists
    completed = _run_mcp(
        policy,
        database,
        env={"PAYWARDEN_AGENT_KEY": secret, "PAYWARDEN_KEY_SECRET": KEY_SECRET},
        stdin="",
    )
    assert completed.returncode == 2
    assert message in completed.stderr
    assert completed.stdout == ""


def test_a_missing_key_or_ledger_is_a_usage_error(ledger: tuple[Path, Path]) -> None:
    policy, database = ledger
    no_key = _run_mcp(policy, database, env={})
    assert no_key.returncode == 2 and "PAYWARDEN_AGENT_KEY" in no_key.stderr
    no_ledger = _run_mcp(policy, database, "--key", "pw_x", env={})
    assert no_ledger.returncode == 2 and "no ledger" in no_ledger.stderr
