"""An MCP agent works under a `sessions.required` policy through the SDK's client, in both of
its modes: it starts its own session, advances it EXPLORE -> DECIDE -> COMMIT and pays from it.
Method: a real Warden on a SQLite file, real agent keys, the server as `paywarden mcp` builds it
(its identity the key, re-checked on every call)."""

from __future__ import annotations

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult

from paywarden import Warden
from support.intents import intent_body
from support.mcp import key_server, run_client, structured
from support.wardens import OpenWarden

POLICY = """
currency: USD
sessions:
  payment_phases: [COMMIT]
  required: true
rules:
  - {id: pay, effect: allow, actions: ["payments.*"]}
"""
MODES = ["auto", "legacy"]


@pytest.fixture
def warden(open_warden: OpenWarden) -> Warden:
    return open_warden(POLICY)


def _server(warden: Warden, agent: str) -> MCPServer:
    secret, _ = warden.create_key(role="agent", agent=agent, actor="t")
    return key_server(warden, secret)


def _code(result: CallToolResult) -> str:
    assert result.is_error and result.structured_content is not None
    return str(result.structured_content["code"])


@pytest.mark.parametrize("mode", MODES)
def test_an_agent_pays_only_from_its_own_session_in_commit(warden: Warden, mode: str) -> None:
    async def body(client: Client) -> None:
        pay = "request_payment"
        no_session = structured(await client.call_tool(pay, intent_body("5.00")))
        assert (no_session["status"], no_session["reason_code"]) == ("denied", "phase_required")

        started = structured(await client.call_tool("start_session", {"session_id": "s-1"}))
        assert (started["phase"], started["next_phase"], started["can_pay"]) == (
            "EXPLORE",
            "DECIDE",
            False,
        )
        assert started["payment_phases"] == ["COMMIT"]
        exploring = structured(await client.call_tool(pay, intent_body("5.00", session_id="s-1")))
        assert exploring["reason_code"] == "phase_not_allowed"

        skip = await client.call_tool(
            "advance_session_phase", {"session_id": "s-1", "phase": "COMMIT"}
        )
        assert _code(skip) == "phase_transition_invalid"
        for phase in ("DECIDE", "COMMIT"):
            moved = structured(
                await client.call_tool(
                    "advance_session_phase", {"session_id": "s-1", "phase": phase}
                )
            )
            assert moved["phase"] == phase
        read = structured(await client.call_tool("get_session", {"session_id": "s-1"}))
        assert (read["phase"], read["next_phase"], read["can_pay"]) == ("COMMIT", None, True)

        paid = structured(await client.call_tool(pay, intent_body("5.00", session_id="s-1")))
        assert (paid["status"], paid["reason_code"]) == ("paid", "allowed")
        again = await client.call_tool(
            "advance_session_phase", {"session_id": "s-1", "phase": "COMMIT"}
        )
        assert _code(again) == "phase_transition_invalid"

    run_client(_server(warden, "agent-a"), body, mode)
    assert warden.session("agent-a", "s-1").phase == "COMMIT"
    (payment,) = warden.payments()
    assert (payment.agent, payment.state) == ("agent-a", "settled")
    kinds = [entry.kind for entry in warden.audit_entries() if entry.kind.startswith("session.")]
    assert kinds == ["session.started", "session.phase", "session.phase"]


@pytest.mark.parametrize("mode", MODES)
def test_another_agents_session_is_neither_read_advanced_nor_used(
    warden: Warden, mode: str
) -> None:
    warden.start_session("agent-b", "shared-id")
    warden.advance_phase("agent-b", "shared-id", "DECIDE")
    warden.advance_phase("agent-b", "shared-id", "COMMIT")

    async def body(client: Client) -> None:
        read = await client.call_tool("get_session", {"session_id": "shared-id"})
        assert _code(read) == "not_found"
        moved = await client.call_tool(
            "advance_session_phase", {"session_id": "shared-id", "phase": "DECIDE"}
        )
        assert _code(moved) == "not_found"
        paid = structured(
            await client.call_tool("request_payment", intent_body("5.00", session_id="shared-id"))
        )
        assert paid["reason_code"] == "phase_required"
        forged = await client.call_tool("start_session", {"session_id": "x", "agent": "agent-b"})
        assert forged.is_error
        fresh = structured(await client.call_tool("start_session", {}))
        assert fresh["session_id"].startswith("ses_") and fresh["phase"] == "EXPLORE"
        taken = await client.call_tool("start_session", {"session_id": fresh["session_id"]})
        assert _code(taken) == "phase_transition_invalid"
        bad = await client.call_tool(
            "advance_session_phase", {"session_id": fresh["session_id"], "phase": "EXPLORE"}
        )
        assert bad.is_error

    run_client(_server(warden, "agent-a"), body, mode)
    assert warden.session("agent-b", "shared-id").phase == "COMMIT"
    assert warden.payments() == []
