"""The MCP tools through the SDK's in-process client, in both of its modes: `auto` (a direct
dispatcher pair, no JSON-RPC framing) and `legacy` (JSON-RPC over in-memory streams with the
initialize handshake). Method: a real Warden on a SQLite file, real API keys, and a server
whose identity is the key, re-checked on every call, exactly as `paywarden mcp` builds it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult

from paywarden import FrozenClock, Warden
from paywarden.entrypoints.mcp.server import build_server

POLICY = """
currency: USD
rules:
  - {id: no-casinos, effect: deny, recipients: ["*.casino.example"], reason: no gambling}
  - {id: big, effect: require_approval, actions: ["payments.*"], amount: {gt: 100}}
  - {id: b-only, effect: deny, agents: [agent-b], actions: [payments.crypto]}
  - {id: prod-only, effect: deny, environments: [production], categories: [travel]}
  - {id: pay, effect: allow, actions: ["payments.*"]}
budgets:
  - {id: hourly, limit: 200, window: hour, scope: agent}
  - {id: b-budget, limit: 50, window: day, scope: agent, agents: [agent-b]}
  - {id: shared, limit: 100000, window: month}
velocity:
  - {id: burst, max_count: 100, window: 60s, scope: agent}
"""
MODES = ["auto", "legacy"]
EXPECTED_TOOLS = {
    "request_payment",
    "get_payment_status",
    "list_my_payments",
    "get_budget_status",
    "get_approval_status",
    "describe_my_limits",
}


@pytest.fixture
def warden(tmp_path: Path) -> Iterator[Warden]:
    with Warden.open(POLICY, database=tmp_path / "ledger.db", clock=FrozenClock()) as opened:
        opened.add_operator("op-1", name="Olive Operator")
        yield opened


def _server(warden: Warden, secret: str) -> MCPServer:
    return build_server(warden, lambda: warden.authenticate(secret))


def _agent_server(warden: Warden, agent: str, environment: str | None = None) -> MCPServer:
    secret, _ = warden.create_key(role="agent", agent=agent, environment=environment, actor="t")
    return _server(warden, secret)


def _run(server: MCPServer, mode: str, body: Callable[[Client], Awaitable[None]]) -> None:
    async def main() -> None:
        async with Client(server, mode=mode) as client:
            await body(client)

    anyio.run(main)


def _pay_args(amount: str = "40.00", **changes: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "action": "payments.transfer",
        "amount": amount,
        "currency": "USD",
        "recipient": "vendor.example.com",
    }
    args.update(changes)
    return args


def _ok(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def _error_code(result: CallToolResult) -> str:
    assert result.is_error
    assert result.structured_content is not None
    code = str(result.structured_content["code"])
    text = result.content[0].text  # type: ignore[union-attr]
    assert text.startswith(f"{code}: "), text
    return code


@pytest.mark.parametrize("mode", MODES)
def test_only_agent_tools_are_listed_with_typed_outputs(warden: Warden, mode: str) -> None:
    async def body(client: Client) -> None:
        tools = (await client.list_tools()).tools
        assert {tool.name for tool in tools} == EXPECTED_TOOLS
        for tool in tools:
            assert tool.output_schema is not None and tool.description
            assert not {"agent", "environment", "operator"} & set(tool.input_schema["properties"])
        pay = next(tool for tool in tools if tool.name == "request_payment")
        assert pay.output_schema is not None
        assert {"status", "reason_code", "reason", "approval_id"} <= set(
            pay.output_schema["properties"]
        )

    _run(_agent_server(warden, "agent-a"), mode, body)


@pytest.mark.parametrize("mode", MODES)
def test_a_payment_is_made_as_the_agent_of_the_key(warden: Warden, mode: str) -> None:
    async def body(client: Client) -> None:
        # An `agent` argument is not a parameter of the tool: it is refused, and pays nothing.
        forged = await client.call_tool("request_payment", _pay_args(agent="agent-b"))
        assert forged.is_error and "agent" in str(forged.content[0])
        paid = _ok(await client.call_tool("request_payment", _pay_args()))
        assert (paid["status"], paid["reason_code"]) == ("paid", "allowed")
        assert paid["receipt"]["status"] == "settled"
        payment_id = paid["payment"]["payment_id"]
        status = _ok(await client.call_tool("get_payment_status", {"payment_id": payment_id}))
        assert (status["state"], status["amount"], status["amount_minor"]) == (
            "settled",
            "40.00",
            4000,
        )
        listed = _ok(await client.call_tool("list_my_payments", {}))
        assert [p["payment_id"] for p in listed["payments"]] == [payment_id]

    _run(_agent_server(warden, "agent-a"), mode, body)
    (row,) = warden.payments()
    assert row.agent == "agent-a"
    assert warden.payments(agent="agent-b") == []


@pytest.mark.parametrize("mode", MODES)
def test_a_denial_is_a_result_with_the_reason_to_adapt_to(warden: Warden, mode: str) -> None:
    async def body(client: Client) -> None:
        denied = _ok(
            await client.call_tool("request_payment", _pay_args(recipient="bets.casino.example"))
        )
        assert (denied["status"], denied["reason_code"]) == ("denied", "denied_by_rule")
        assert denied["reason"] == "no gambling" and denied["payment"] is None
        assert denied["rule_ids"] == ["no-casinos"]
        for _ in range(2):
            assert _ok(await client.call_tool("request_payment", _pay_args("99.00")))["status"] == (
                "paid"
            )
        budget = _ok(await client.call_tool("request_payment", _pay_args("5.00")))
        assert budget["reason_code"] == "budget_exceeded"
        assert "get_budget_status" in budget["next_step"]

    _run(_agent_server(warden, "agent-a"), mode, body)


@pytest.mark.parametrize("mode", MODES)
def test_an_approval_is_polled_then_used_by_the_same_request(warden: Warden, mode: str) -> None:
    args = _pay_args("150.00", purpose="annual licence")

    async def request(client: Client) -> None:
        pending = _ok(await client.call_tool("request_payment", args))
        assert (pending["status"], pending["reason_code"]) == (
            "approval_required",
            "approval_required",
        )
        approval_id = pending["approval_id"]
        view = _ok(await client.call_tool("get_approval_status", {"approval_id": approval_id}))
        assert (view["status"], view["amount"], view["approvals"]) == ("pending", "150.00", 0)
        warden.approve(approval_id, operator="op-1", reason="known vendor")
        view = _ok(await client.call_tool("get_approval_status", {"approval_id": approval_id}))
        assert view["status"] == "approved" and "request_payment again" in view["next_step"]
        assert view["votes"][0]["operator_id"] == "op-1"
        paid = _ok(await client.call_tool("request_payment", args))
        assert (paid["status"], paid["reason_code"]) == ("paid", "approved")
        view = _ok(await client.call_tool("get_approval_status", {"approval_id": approval_id}))
        assert view["status"] == "consumed"

    _run(_agent_server(warden, "agent-a"), mode, request)


@pytest.mark.parametrize("mode", MODES)
def test_another_agents_payment_and_approval_read_as_not_found(warden: Warden, mode: str) -> None:
    ids: dict[str, str] = {}

    async def as_a(client: Client) -> None:
        ids["payment"] = _ok(await client.call_tool("request_payment", _pay_args()))["payment"][
            "payment_id"
        ]
        ids["approval"] = _ok(await client.call_tool("request_payment", _pay_args("150.00")))[
            "approval_id"
        ]

    async def as_b(client: Client) -> None:
        for tool, args in (
            ("get_payment_status", {"payment_id": ids["payment"]}),
            ("get_payment_status", {"payment_id": "pay_unknown"}),
            ("get_approval_status", {"approval_id": ids["approval"]}),
        ):
            assert _error_code(await client.call_tool(tool, args)) == "not_found"
        assert _ok(await client.call_tool("list_my_payments", {}))["count"] == 0

    _run(_agent_server(warden, "agent-a"), mode, as_a)
    _run(_agent_server(warden, "agent-b"), mode, as_b)


@pytest.mark.parametrize("mode", MODES)
def test_errors_are_tool_errors_carrying_the_code(warden: Warden, mode: str) -> None:
    async def body(client: Client) -> None:
        cases = [
            (_pay_args("-5"), "invalid_amount"),
            (_pay_args(currency="XYZ"), "invalid_currency"),
            (_pay_args(action="Not An Action!"), "invalid_intent"),
        ]
        for args, code in cases:
            assert _error_code(await client.call_tool("request_payment", args)) == code
        keyed = _pay_args(idempotency_key="order-7")
        first = _ok(await client.call_tool("request_payment", keyed))
        again = _ok(await client.call_tool("request_payment", keyed))
        assert (
            again["replayed"] and again["payment"]["payment_id"] == first["payment"]["payment_id"]
        )
        changed = _pay_args("41.00", idempotency_key="order-7")
        conflict = await client.call_tool("request_payment", changed)
        assert _error_code(conflict) == "idempotency_key_reused"

    _run(_agent_server(warden, "agent-a"), mode, body)
    assert len(warden.payments()) == 1


@pytest.mark.parametrize("mode", MODES)
def test_operator_admin_and_revoked_keys_cannot_use_the_tools(warden: Warden, mode: str) -> None:
    operator, _ = warden.create_key(role="operator", operator="op-1", actor="t")
    admin, _ = warden.create_key(role="admin", actor="t")
    agent, row = warden.create_key(role="agent", agent="agent-a", actor="t")

    async def forbidden(client: Client) -> None:
        assert _error_code(await client.call_tool("request_payment", _pay_args())) == "forbidden"
        assert _error_code(await client.call_tool("list_my_payments", {})) == "forbidden"

    async def revoked(client: Client) -> None:
        assert _ok(await client.call_tool("list_my_payments", {}))["count"] == 0
        warden.revoke_key(row.key_id, actor="t")
        result = await client.call_tool("request_payment", _pay_args())
        assert _error_code(result) == "unauthenticated"

    _run(_server(warden, operator), mode, forbidden)
    _run(_server(warden, admin), mode, forbidden)
    _run(_server(warden, agent), mode, revoked)
    assert warden.payments() == []


@pytest.mark.parametrize("mode", MODES)
def test_budgets_and_limits_show_only_what_applies_to_the_agent(tmp_path: Path, mode: str) -> None:
    staging = Warden.open(
        POLICY, database=tmp_path / "ledger.db", clock=FrozenClock(), environment="staging"
    )
    with staging as warden:
        _limits_of_a_staging_agent(warden, mode)


def _limits_of_a_staging_agent(warden: Warden, mode: str) -> None:
    async def body(client: Client) -> None:
        _ok(await client.call_tool("request_payment", _pay_args("40.00")))
        budgets = _ok(await client.call_tool("get_budget_status", {}))
        by_id = {b["budget_id"]: b for b in budgets["budgets"]}
        assert set(by_id) == {"hourly", "shared"}  # b-budget counts agent-b only
        hourly = by_id["hourly"]
        assert (hourly["scope_key"], hourly["spent_minor"], hourly["remaining"]) == (
            "agent-a",
            4000,
            "160.00",
        )
        limits = _ok(await client.call_tool("describe_my_limits", {}))
        assert [r["rule_id"] for r in limits["rules"]] == ["no-casinos", "big", "pay"]
        assert limits["environment"] == "staging"
        assert [v["velocity_id"] for v in limits["velocity"]] == ["burst"]
        assert any("needs a human approval" in line for line in limits["summary"])

    _run(_agent_server(warden, "agent-a", environment="staging"), mode, body)
    (row,) = warden.payments()
    assert json.loads(row.intent)["environment"] == "staging"


def test_inline_tool_bodies_decide_and_pay_the_same(warden: Warden) -> None:
    secret, _ = warden.create_key(role="agent", agent="agent-a", actor="t")
    server = build_server(warden, lambda: warden.authenticate(secret), offload=False)

    async def body(client: Client) -> None:
        paid = _ok(await client.call_tool("request_payment", _pay_args()))
        assert (paid["status"], paid["payment"]["amount_minor"]) == ("paid", 4000)
        assert _error_code(await client.call_tool("get_payment_status", {"payment_id": "x"})) == (
            "not_found"
        )

    _run(server, "auto", body)
    assert [row.agent for row in warden.payments()] == ["agent-a"]


def test_a_reloaded_policy_is_what_the_tools_describe_and_enforce(warden: Warden) -> None:
    server = _agent_server(warden, "agent-a")
    stricter = POLICY.replace("limit: 200, window: hour", "limit: 30, window: hour")

    async def body(client: Client) -> None:
        before = _ok(await client.call_tool("get_budget_status", {}))
        assert before["budgets"][0]["limit"] == "200.00"
        warden.reload_policy(stricter, actor="admin")
        after = _ok(await client.call_tool("describe_my_limits", {}))
        assert after["budgets"][0]["limit"] == "30.00"
        denied = _ok(await client.call_tool("request_payment", _pay_args("40.00")))
        assert denied["reason_code"] == "budget_exceeded"

    _run(server, "auto", body)
