"""The MCP tools over streamable HTTP on a loopback port, under a real uvicorn: a bearer agent
key per request names the agent, other keys are refused before any MCP processing, a session
answers only to the key that opened it, and concurrent payments cannot overspend. The last test
mounts the app in a FastAPI host the way `paywarden serve` does, to prove the instructions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import anyio
import httpx2
import pytest
from mcp import Client

from paywarden import Warden
from paywarden.entrypoints.mcp.http import McpHttpApp
from paywarden.entrypoints.rest.app import create_app
from paywarden.entrypoints.rest.settings import Settings
from support.intents import intent_body
from support.mcp import INITIALIZE, JSON_RPC_HEADERS, http_client, structured
from support.policies import policy_text
from support.servers import serving
from support.wardens import OpenWarden

POLICY = policy_text("pay_200_an_hour_per_agent")
PAY = intent_body("40.00")


@pytest.fixture
def warden(open_warden: OpenWarden) -> Warden:
    return open_warden(POLICY)


@pytest.fixture
def url(warden: Warden) -> Iterator[str]:
    with serving(McpHttpApp(warden)) as base:
        yield f"{base}/mcp"


def _key(warden: Warden, agent: str) -> str:
    secret, _ = warden.create_key(role="agent", agent=agent, actor="t")
    return secret


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_each_request_acts_as_the_agent_of_its_key(warden: Warden, url: str, mode: str) -> None:
    keys = {agent: _key(warden, agent) for agent in ("agent-a", "agent-b")}
    seen: dict[str, list[str]] = {}

    async def as_agent(agent: str, payments: int) -> None:
        async with http_client(url, keys[agent], mode) as client:
            for _ in range(payments):
                assert structured(await client.call_tool("request_payment", PAY))["status"] == (
                    "paid"
                )
            listed = structured(await client.call_tool("list_my_payments", {}))
            seen[agent] = [p["payment_id"] for p in listed["payments"]]

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(as_agent, "agent-a", 2)
            group.start_soon(as_agent, "agent-b", 1)

    anyio.run(main)
    for agent, count in (("agent-a", 2), ("agent-b", 1)):
        assert sorted(seen[agent]) == sorted(p.payment_id for p in warden.payments(agent=agent))
        assert len(seen[agent]) == count


def test_missing_unknown_revoked_and_non_agent_keys_are_refused(warden: Warden, url: str) -> None:
    warden.add_operator("op-1", name="Olive")
    operator, _ = warden.create_key(role="operator", operator="op-1", actor="t")
    admin, _ = warden.create_key(role="admin", actor="t")
    revoked, row = warden.create_key(role="agent", agent="agent-a", actor="t")
    warden.revoke_key(row.key_id, actor="t")
    cases: list[tuple[dict[str, str], int, str]] = [
        ({}, 401, "unauthenticated"),
        ({"authorization": "Basic abc"}, 401, "unauthenticated"),
        ({"authorization": "Bearer pw_live_0123456789ab_" + "0" * 48}, 401, "unauthenticated"),
        ({"authorization": f"Bearer {revoked}"}, 401, "unauthenticated"),
        ({"authorization": f"Bearer {operator}"}, 403, "forbidden"),
        ({"authorization": f"Bearer {admin}"}, 403, "forbidden"),
    ]

    async def main() -> None:
        async with httpx2.AsyncClient(timeout=30) as http:
            for headers, status, code in cases:
                response = await http.post(
                    url, json=INITIALIZE, headers={**JSON_RPC_HEADERS, **headers}
                )
                assert (response.status_code, response.json()["error"]["code"]) == (status, code)
                if status == 401:
                    assert response.headers["www-authenticate"].startswith("Bearer")

    anyio.run(main)


def test_a_session_answers_only_to_the_key_that_opened_it(warden: Warden, url: str) -> None:
    key_a, key_b = _key(warden, "agent-a"), _key(warden, "agent-b")
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call"}
    call["params"] = {"name": "list_my_payments", "arguments": {}}  # type: ignore[assignment]

    async def main() -> None:
        async with httpx2.AsyncClient(timeout=30) as http:
            opened = await http.post(
                url,
                json=INITIALIZE,
                headers={**JSON_RPC_HEADERS, "authorization": f"Bearer {key_a}"},
            )
            assert opened.status_code == 200
            session = {
                **JSON_RPC_HEADERS,
                "mcp-session-id": opened.headers["mcp-session-id"],
                "mcp-protocol-version": "2025-11-25",
            }
            stolen = await http.post(
                url, json=call, headers={**session, "authorization": f"Bearer {key_b}"}
            )
            assert stolen.status_code == 404
            own = await http.post(
                url, json=call, headers={**session, "authorization": f"Bearer {key_a}"}
            )
            assert own.status_code == 200 and '"count":0' in own.text.replace(" ", "")

    anyio.run(main)


def test_twenty_concurrent_http_payments_of_40_against_200_pay_exactly_5(
    warden: Warden, url: str
) -> None:
    key = _key(warden, "agent-a")
    statuses: list[str] = []

    async def main() -> None:
        async with http_client(url, key) as client, anyio.create_task_group() as group:
            for _ in range(20):
                group.start_soon(pay, client)

    async def pay(client: Client) -> None:
        statuses.append(structured(await client.call_tool("request_payment", PAY))["status"])

    anyio.run(main)
    assert Counter(statuses) == {"paid": 5, "denied": 15}
    assert len(warden.payments(state="settled")) == 5


def test_paywarden_serves_mcp_at_slash_mcp_beside_the_rest_api(warden: Warden) -> None:
    """The gateway app itself (as `paywarden serve` runs it), started twice: each run gets its
    own MCP session manager, and a payment made over MCP is the agent's over REST too."""
    key = _key(warden, "agent-a")
    app = create_app(Settings(), warden=warden)
    paid: list[str] = []

    async def main(base: str) -> None:
        async with http_client(f"{base}/mcp", key) as client:
            result = structured(await client.call_tool("request_payment", PAY))
        assert result["status"] == "paid", result
        payment_id = result["payment"]["payment_id"]
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx2.AsyncClient(timeout=30, headers=headers) as http:
            response = await http.get(f"{base}/v1/payments/{payment_id}")
        assert response.status_code == 200, response.text
        assert response.json()["payment_id"] == payment_id
        paid.append(payment_id)

    for _run in range(2):
        with serving(app) as base:
            anyio.run(main, base)
    assert len(set(paid)) == 2
    assert "/mcp" not in app.openapi()["paths"]
