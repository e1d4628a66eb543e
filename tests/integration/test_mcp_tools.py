"""The MCP tools through the SDK's in-process client, in both of its modes: `auto` (a direct
dispatcher pair, no JSON-RPC framing) and `legacy` (JSON-RPC over in-memory streams with the
initialize handshake). Method: a real Warden on a SQLite file, real API keys, and a server
whose identity is the key, re-checked on every call, exactly as `paywarden mcp` builds it."""

from __future__ import annotations

import json

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult

from paywarden import Warden
from paywarden.entrypoints.mcp.server import build_server
from support.intents import intent_body
from support.mcp import key_server, run_client, structured
from support.wardens import OpenWarden

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
    "start_session",
    "advance_session_phase",
    "get_session",
}


@pytest.fixture
def warden(open_warden: OpenWarden) -> Warden:
    warden = open_warden(POLICY)
    warden.add_operator("op-1", name="Olive Operator")
    return warden


def _agent_server(warden: Warden, agent: str, environment: str | None = None) -> MCPServer:
    secret, _ = warden.create_key(role="agent", agent=agent, environment=environment, actor="t")
    return key_server(warden, secret)


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
            # Published flat (schemas.py): what a client checks each result against.
            published = json.dumps(tool.output_schema)
            assert "$ref" not in published and "anyOf" not in published, tool.name
        pay = next(tool for tool in tools if tool.name == "request_payment")
        assert pay.output_schema is not None
        assert {"status", "reason_code", "reason", "approval_id"} <= set(
            pay.output_schema["properties"]
        )

    run_client(_agent_server(warden, "agent-a"), body, mode)


@pytest.mark.parametrize("mode", MODES)
def test_a_payment_is_made_as_the_agent_of_the_key(warden: Warden, mode: str) -> None:
    async def body(client: Client) -> None:
        # An `agent` argument is not a parameter of the tool: it is refused, and pays nothing.
        forged = await client.call_tool("request_payment", intent_body("40.00", agent="agent-b"))
        assert forged.is_error and "agent" in str(forged.content[0])
        paid = structured(await client.call_tool("request_payment", intent_body("40.00")))
        assert (paid["status"], paid["reason_code"]) == ("paid", "allowed")
        assert paid["receipt"]["status"] == "settled"
        payment_id = paid["payment"]["payment_id"]
        status = structured(
            await client.call_tool("get_payment_status", {"payment_id": payment_id})
        )
        assert (status["state"], status["amount"], status["amount_minor"]) == (
            "settled",
            "40.00",
            4000,
        )
        listed = structured(await client.call_tool("list_my_payments", {}))
        assert [p["payment_id"] for p in listed["payments"]] == [payment_id]

    run_client(_agent_server(warden, "agent-a"), body, mode)
    (row,) = warden.payments()
    assert row.agent == "agent-a"
    assert warden.payments(agent="agent-b") == []


@pytest.mark.parametrize("mode", MODES)
def test_a_denial_is_a_result_with_the_reason_to_adapt_to(warden: Warden, mode: str) -> None:
    async def body(client: Client) -> None:
        denied = structured(
            await client.call_tool(
                "request_payment", intent_body("40.00", recipient="bets.casino.example")
            )
        )
        assert (denied["status"], denied["reason_code"]) == ("denied", "denied_by_rule")
        assert denied["reason"] == "no gambling" and denied["payment"] is None
        assert denied["rule_ids"] == ["no-casinos"]
        for _ in range(2):
            paid = structured(await client.call_tool("request_payment", intent_body("99.00")))
            assert paid["status"] == "paid"
        budget = structured(await client.call_tool("request_payment", intent_body("5.00")))
        assert budget["reason_code"] == "budget_exceeded"
        assert "get_budget_status" in budget["next_step"]

    run_client(_agent_server(warden, "agent-a"), body, mode)


@pytest.mark.parametrize("mode", MODES)
def test_an_approval_is_polled_then_used_by_the_same_request(warden: Warden, mode: str) -> None:
    args = intent_body("150.00", purpose="annual licence")

    async def request(client: Client) -> None:
        pending = structured(await client.call_tool("request_payment", args))
        assert (pending["status"], pending["reason_code"]) == (
            "approval_required",
            "approval_required",
        )
        approval_id = pending["approval_id"]
        view = structured(
            await client.call_tool("get_approval_status", {"approval_id": approval_id})
        )
        assert (view["status"], view["amount"], view["approvals"]) == ("pending", "150.00", 0)
        warden.approve(approval_id, operator="op-1", reason="known vendor")
        view = structured(
            await client.call_tool("get_approval_status", {"approval_id": approval_id})
        )
        assert view["status"] == "approved" and "request_payment again" in view["next_step"]
        assert view["votes"][0]["operator_id"] == "op-1"
        paid = structured(await client.call_tool("request_payment", args))
        assert (paid["status"], paid["reason_code"]) == ("paid", "approved")
        view = structured(
            await client.call_tool("get_approval_status", {"approval_id": approval_id})
        )
        assert view["status"] == "consumed"

    run_client(_agent_server(warden, "agent-a"), request, mode)


@pytest.mark.parametrize("mode", MODES)
def test_another_agents_payment_and_approval_read_as_not_found(warden: Warden, mode: str) -> None:
    ids: dict[str, str] = {}

    async def as_a(client: Client) -> None:
        ids["payment"] = structured(
            await client.call_tool("request_payment", intent_body("40.00"))
        )["payment"]["payment_id"]
        ids["approval"] = structured(
            await client.call_tool("request_payment", intent_body("150.00"))
        )["approval_id"]

    async def as_b(client: Client) -> None:
        for tool, args in (
            ("get_payment_status", {"payment_id": ids["payment"]}),
            ("get_payment_status", {"payment_id": "pay_unknown"}),
            ("get_approval_status", {"approval_id": ids["approval"]}),
        ):
            assert _error_code(await client.call_tool(tool, args)) == "not_found"
        assert structured(await client.call_tool("list_my_payments", {}))["count"] == 0

    run_client(_agent_server(warden, "agent-a"), as_a, mode)
    run_client(_agent_server(warden, "agent-b"), as_b, mode)


@pytest.mark.parametrize("mode", MODES)
def test_errors_are_tool_errors_carrying_the_code(warden: Warden, mode: str) -> None:
    async def body(client: Client) -> None:
        cases = [
            (intent_body("-5"), "invalid_amount"),
            (intent_body("40.00", currency="XYZ"), "invalid_currency"),
            (intent_body("40.00", action="Not An Action!"), "invalid_intent"),
        ]
        for args, code in cases:
            assert _error_code(await client.call_tool("request_payment", args)) == code
        keyed = intent_body("40.00", idempotency_key="order-7")
        first = structured(await client.call_tool("request_payment", keyed))
        again = structured(await client.call_tool("request_payment", keyed))
        assert (
            again["replayed"] and again["payment"]["payment_id"] == first["payment"]["payment_id"]
        )
        changed = intent_body("41.00", idempotency_key="order-7")
        conflict = await client.call_tool("request_payment", changed)
        assert _error_code(conflict) == "idempotency_key_reused"

    run_client(_agent_server(warden, "agent-a"), body, mode)
    assert len(warden.payments()) == 1


@pytest.mark.parametrize("mode", MODES)
def test_operator_admin_and_revoked_keys_cannot_use_the_tools(warden: Warden, mode: str) -> None:
    operator, _ = warden.create_key(role="operator", operator="op-1", actor="t")
    admin, _ = warden.create_key(role="admin", actor="t")
    agent, row = warden.create_key(role="agent", agent="agent-a", actor="t")

    async def forbidden(client: Client) -> None:
        assert (
            _error_code(await client.call_tool("request_payment", intent_body("40.00")))
            == "forbidden"
        )
        assert _error_code(await client.call_tool("list_my_payments", {})) == "forbidden"

    async def revoked(client: Client) -> None:
        assert structured(await client.call_tool("list_my_payments", {}))["count"] == 0
        warden.revoke_key(row.key_id, actor="t")
        result = await client.call_tool("request_payment", intent_body("40.00"))
        assert _error_code(result) == "unauthenticated"

    run_client(key_server(warden, operator), forbidden, mode)
    run_client(key_server(warden, admin), forbidden, mode)
    run_client(key_server(warden, agent), revoked, mode)
    assert warden.payments() == []


@pytest.mark.parametrize("mode", MODES)
def test_budgets_and_limits_show_only_what_applies_to_the_agent(
    mode: str, open_warden: OpenWarden
) -> None:
    with open_warden(POLICY, environment="staging") as warden:
        _limits_of_a_staging_agent(warden, mode)


def _limits_of_a_staging_agent(warden: Warden, mode: str) -> None:
    async def body(client: Client) -> None:
        structured(await client.call_tool("request_payment", intent_body("40.00")))
        budgets = structured(await client.call_tool("get_budget_status", {}))
        by_id = {b["budget_id"]: b for b in budgets["budgets"]}
        assert set(by_id) == {"hourly", "shared"}  # b-budget counts agent-b only
        hourly = by_id["hourly"]
        assert (hourly["scope_key"], hourly["spent_minor"], hourly["remaining"]) == (
            "agent-a",
            4000,
            "160.00",
        )
        limits = structured(await client.call_tool("describe_my_limits", {}))
        assert [r["rule_id"] for r in limits["rules"]] == ["no-casinos", "big", "pay"]
        assert limits["environment"] == "staging"
        assert [v["velocity_id"] for v in limits["velocity"]] == ["burst"]
        assert any("needs a human approval" in line for line in limits["summary"])

    run_client(_agent_server(warden, "agent-a", environment="staging"), body, mode)
    (row,) = warden.payments()
    assert json.loads(row.intent)["environment"] == "staging"


def test_inline_tool_bodies_decide_and_pay_the_same(warden: Warden) -> None:
    secret, _ = warden.create_key(role="agent", agent="agent-a", actor="t")
    server = build_server(warden, lambda: warden.authenticate(secret), offload=False)

    async def body(client: Client) -> None:
        paid = structured(await client.call_tool("request_payment", intent_body("40.00")))
        assert (paid["status"], paid["payment"]["amount_minor"]) == ("paid", 4000)
        assert _error_code(await client.call_tool("get_payment_status", {"payment_id": "x"})) == (
            "not_found"
        )

    run_client(server, body, "auto")
    assert [row.agent for row in warden.payments()] == ["agent-a"]


def test_a_reloaded_policy_is_what_the_tools_describe_and_enforce(warden: Warden) -> None:
    server = _agent_server(warden, "agent-a")
    stricter = POLICY.replace("limit: 200, window: hour", "limit: 30, window: hour")

    async def body(client: Client) -> None:
        before = structured(await client.call_tool("get_budget_status", {}))
        assert before["budgets"][0]["limit"] == "200.00"
        warden.reload_policy(stricter, actor="admin")
        after = structured(await client.call_tool("describe_my_limits", {}))
        assert after["budgets"][0]["limit"] == "30.00"
        denied = structured(await client.call_tool("request_payment", intent_body("40.00")))
        assert denied["reason_code"] == "budget_exceeded"

    run_client(server, body, "auto")
