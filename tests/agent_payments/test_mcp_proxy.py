"""The MCP proxy in front of a real MCP server of our own over stdio (upstream_wallet.py): a
mapped tool reaches the upstream only when paywarden allows it; an upstream error voids the
hold, a timeout leaves the payment unknown; other tools pass or are blocked by the mapping."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from paywarden import FrozenClock, Warden
from paywarden.entrypoints.mcp.proxy import McpToolRail, build_proxy, load_mapping
from paywarden.errors import InvalidInputError

UPSTREAM = Path(__file__).with_name("upstream_wallet.py")
POLICY = """
currency: USD
rules:
  - {id: no-evil, effect: deny, reason: deny-listed, recipients: [evil.example]}
  - {id: big, effect: require_approval, reason: needs a human, amount: {gt: 500}}
  - {id: wallet, effect: allow, reason: wallet payments, actions: [wallet.send]}
budgets:
  - {id: daily, limit: 1000, window: day}
"""
# Generous for a loaded machine (a first call through a fresh upstream process may take
# seconds); the upstream's `slow.example` answers far later than this.
UPSTREAM_TIMEOUT_SECONDS = 8
MAPPING = """
tools:
  send_payment: {amount: amount, currency: currency, recipient: to, action: wallet.send}
unmapped: pass
block: [export_keys]
"""
Body = Callable[[Client, Warden], Awaitable[None]]


def _run(tmp_path: Path, body: Body, mapping: str = MAPPING) -> list[str]:
    """Run `body` with a client of the proxy; the lines of payments the upstream really made."""
    log = tmp_path / "wallet.log"
    log.touch()

    async def main() -> None:
        upstream_params = StdioServerParameters(
            command=sys.executable, args=[str(UPSTREAM), str(log)]
        )
        async with Client(upstream_params) as upstream:
            rail = McpToolRail(upstream, timeout_seconds=UPSTREAM_TIMEOUT_SECONDS)
            with Warden.open(
                POLICY, database=tmp_path / "l.db", clock=FrozenClock(), rails={"mcp-proxy": rail}
            ) as warden:
                proxy = build_proxy(warden, upstream, load_mapping(mapping), rail, agent="agent-a")
                async with Client(proxy) as client:
                    await body(client, warden)

    anyio.run(main)
    return log.read_text(encoding="utf-8").splitlines()


def _send(amount: str, to: str = "shop.example") -> dict[str, str]:
    return {"amount": amount, "currency": "USD", "to": to}


def _text(result: object) -> str:
    return " ".join(getattr(c, "text", "") for c in getattr(result, "content", []))


def test_only_allowed_payments_reach_the_upstream(tmp_path: Path) -> None:
    async def body(client: Client, warden: Warden) -> None:
        names = sorted(t.name for t in (await client.list_tools()).tools)
        assert names == ["get_balance", "send_payment"]  # export_keys is blocked
        paid = await client.call_tool("send_payment", _send("120.00"))
        assert not paid.is_error and _text(paid) == "sent 120.00 USD to shop.example"
        denied = await client.call_tool("send_payment", _send("10.00", "EVIL.example."))
        assert denied.is_error and _text(denied).startswith("denied_by_rule: deny-listed")
        pending = await client.call_tool("send_payment", _send("550.00"))
        assert pending.is_error and "approval_required" in _text(pending)
        over = await client.call_tool(
            "send_payment", _send("490.00")
        )  # 120 + 550 held + 490 > 1000
        assert over.is_error and _text(over).startswith("budget_exceeded")
        assert not (await client.call_tool("get_balance", {})).is_error
        blocked = await client.call_tool("export_keys", {})
        assert blocked.is_error and "blocked" in _text(blocked)
        bad = await client.call_tool(
            "send_payment", {"amount": 12.5, "currency": "USD", "to": "a.example"}
        )
        assert bad.is_error
        assert [(p.amount_minor, p.state) for p in warden.payments()] == [(12000, "settled")]

    assert _run(tmp_path, body) == ["sent 120.00 USD to shop.example"]


def test_an_upstream_error_voids_and_a_timeout_leaves_it_unknown(tmp_path: Path) -> None:
    async def body(client: Client, warden: Warden) -> None:
        failed = await client.call_tool("send_payment", _send("50.00", "broken.example"))
        assert failed.is_error
        slow = await client.call_tool("send_payment", _send("60.00", "slow.example"))
        assert slow.is_error and _text(slow).startswith("payment_unknown")
        states = sorted((p.amount_minor, p.state) for p in warden.payments())
        assert states == [(5000, "failed"), (6000, "unknown")]
        (daily,) = [b for b in warden.budgets() if b.budget_id == "daily"]
        assert (daily.spent_minor, daily.held_minor) == (0, 6000)  # the unknown one stays held

    _run(tmp_path, body)


def test_unmapped_tools_can_be_blocked(tmp_path: Path) -> None:
    async def body(client: Client, warden: Warden) -> None:
        assert [t.name for t in (await client.list_tools()).tools] == ["send_payment"]
        assert (await client.call_tool("get_balance", {})).is_error

    _run(tmp_path, body, MAPPING.replace("unmapped: pass", "unmapped: block"))


@pytest.mark.parametrize(
    "text",
    [
        "tools: {pay: {currency: c, recipient: r}}",
        "tools: {pay: {amount: a, recipient: r}}",
        "tools: {pay: {amount: a, currency: c, currency_value: USD, recipient: r}}",
        "tools: {pay: {amount: a, currency: c, recipient: r, rail: x}}",
        "unmapped: maybe",
        "extra: 1",
    ],
)
def test_a_bad_mapping_is_refused(text: str) -> None:
    with pytest.raises(InvalidInputError):
        load_mapping(text)


def test_the_mcp_proxy_command_serves_over_stdio(tmp_path: Path) -> None:
    database = tmp_path / "ledger.db"
    with Warden.open(POLICY, database=database) as warden:
        key, _ = warden.create_key(role="agent", agent="agent-a", actor="test")
    (tmp_path / "policy.yaml").write_text(POLICY, encoding="utf-8")
    (tmp_path / "mapping.yaml").write_text(MAPPING, encoding="utf-8")
    log = tmp_path / "wallet.log"
    log.touch()
    upstream = f"{sys.executable} {UPSTREAM} {log}"
    args = ["mcp-proxy", "--upstream", upstream, "--mapping", str(tmp_path / "mapping.yaml"),
            "--policy", str(tmp_path / "policy.yaml"), "--database", str(database)]  # fmt: skip
    paywarden = str(Path(sys.executable).with_name("paywarden"))
    params = StdioServerParameters(command=paywarden, args=args, env={"PAYWARDEN_AGENT_KEY": key})

    async def main() -> None:
        async with Client(params) as client:
            assert "export_keys" not in [t.name for t in (await client.list_tools()).tools]
            paid = await client.call_tool("send_payment", _send("20.00"))
            assert not paid.is_error
            denied = await client.call_tool("send_payment", _send("20.00", "evil.example"))
            assert denied.is_error and "denied_by_rule" in _text(denied)

    anyio.run(main)
    assert log.read_text(encoding="utf-8").splitlines() == ["sent 20.00 USD to shop.example"]
    with Warden.open(POLICY, database=database) as warden:
        assert [(p.agent, p.state) for p in warden.payments()] == [("agent-a", "settled")]
