"""`paywarden mcp-proxy`: paywarden in front of an existing payment MCP server.

The proxy is an MCP server that forwards the upstream server's tools to the agent. A mapping
file names the money-moving tools and, for each, which argument is the amount (major units,
decimal text or an integer), the currency and the recipient (an argument, or a fixed value):

```yaml
# fragment: an mcp-proxy mapping file
tools:
  send_payment:
    amount: amount          # the argument holding the amount
    currency: currency      # ... or `currency_value: USD`
    recipient: to           # ... or `recipient_value: wallet.example`
    action: wallet.send     # default: mcp.<tool name>
unmapped: pass              # other tools: pass (default) or block
block: [export_keys]        # tools never listed nor forwarded
```

A mapped call becomes a `PaymentIntent` and goes through `warden.pay` on the proxy's own rail
(`McpToolRail`): the upstream tool is called only when paywarden allows it. An upstream success
captures the hold; an upstream error voids it; a timeout or an exception leaves the payment
`unknown` for an operator (`paywarden payments list --state unknown`, `paywarden reconcile`).
A denial or a pending approval is a tool error naming the reason code, so the agent can adapt.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import yaml
from mcp import Client
from mcp.server.lowlevel.server import Server
from mcp_types import CallToolRequestParams, CallToolResult, ListToolsResult, TextContent

from paywarden.errors import InvalidInputError, PaywardenError
from paywarden.intent import PaymentIntent
from paywarden.rails import RailPayment, Receipt
from paywarden.warden import Warden

RAIL_NAME = "mcp-proxy"
_TOOL_KEYS = {"amount", "currency", "currency_value", "recipient", "recipient_value", "action"}


@dataclass(frozen=True, slots=True)
class ToolMapping:
    amount: str
    currency: str | None = None
    currency_value: str | None = None
    recipient: str | None = None
    recipient_value: str | None = None
    action: str | None = None


@dataclass(frozen=True, slots=True)
class ProxyMapping:
    tools: Mapping[str, ToolMapping] = field(default_factory=dict)
    unmapped: str = "pass"
    block: frozenset[str] = frozenset()


def load_mapping(text: str) -> ProxyMapping:
    """A mapping file's text, checked: `InvalidInputError` says what is wrong."""
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict) or set(data) - {"tools", "unmapped", "block"}:
        raise InvalidInputError("a mapping file has `tools`, `unmapped` and `block` only")
    tools: dict[str, ToolMapping] = {}
    for name, spec in (data.get("tools") or {}).items():
        if not isinstance(spec, dict) or set(spec) - _TOOL_KEYS or "amount" not in spec:
            raise InvalidInputError(f"tool `{name}`: `amount` and {sorted(_TOOL_KEYS)} only")
        if ("currency" in spec) == ("currency_value" in spec):
            raise InvalidInputError(f"tool `{name}`: one of `currency` or `currency_value`")
        if ("recipient" in spec) == ("recipient_value" in spec):
            raise InvalidInputError(f"tool `{name}`: one of `recipient` or `recipient_value`")
        tools[str(name)] = ToolMapping(**{k: str(v) for k, v in spec.items()})
    unmapped = data.get("unmapped", "pass")
    if unmapped not in ("pass", "block"):
        raise InvalidInputError("`unmapped` is `pass` or `block`")
    return ProxyMapping(tools, unmapped, frozenset(str(n) for n in data.get("block") or ()))


class McpToolRail:
    """The rail of the proxy: paying is calling the upstream tool (from a worker thread of the
    proxy's event loop). Each call's tool and arguments wait here under a one-time token that
    the intent carries in its metadata (set by the proxy, never by the agent)."""

    name = RAIL_NAME

    def __init__(self, upstream: Client | None, timeout_seconds: float) -> None:
        self.upstream = upstream
        self.timeout_seconds = timeout_seconds
        self.calls: dict[str, tuple[str, dict[str, Any]]] = {}
        self.results: dict[str, CallToolResult] = {}

    def pay(self, payment: RailPayment) -> Receipt:
        token = str(payment.metadata.get("mcp_call", ""))
        tool, arguments = self.calls.pop(token)
        try:
            result = anyio.from_thread.run(self._call, tool, arguments)
        except Exception as error:  # a timeout or a broken pipe: it may have been paid
            return Receipt("unknown", error=f"upstream `{tool}`: {error or type(error).__name__}")
        self.results[token] = result
        if result.is_error:
            return Receipt("failed", error=f"upstream `{tool}` answered an error")
        return Receipt("settled", rail_payment_id=f"mcp_{token}")

    async def _call(self, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        if self.upstream is None:
            raise RuntimeError("the upstream MCP server is not connected")
        with anyio.fail_after(self.timeout_seconds):
            return await self.upstream.call_tool(tool, arguments)

    def status(self, payment: RailPayment) -> Receipt:
        return Receipt("unknown", error="an MCP tool cannot be asked about an earlier call")

    def refund(self, payment: RailPayment, amount_minor: int, refund_key: str) -> Receipt:
        return Receipt("failed", error="refund through the upstream MCP server's own tools")


def _failure(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


def intent_for(
    mapping: ToolMapping, tool: str, arguments: Mapping[str, Any], agent: str, token: str
) -> PaymentIntent:
    """The intent a mapped call asks for; `InvalidInputError` (a missing or bad argument)."""

    def argument(name: str) -> Any:
        if name not in arguments:
            raise InvalidInputError(f"`{tool}` needs the argument `{name}`")
        return arguments[name]

    amount = argument(mapping.amount)
    if isinstance(amount, bool) or not isinstance(amount, str | int):
        raise InvalidInputError(f"`{mapping.amount}` must be decimal text or an integer")
    currency = mapping.currency_value or argument(str(mapping.currency))
    recipient = mapping.recipient_value or argument(str(mapping.recipient))
    return PaymentIntent(
        agent=agent,
        action=mapping.action or f"mcp.{tool}",
        amount=Decimal(amount) if isinstance(amount, int) else amount,
        currency=str(currency),
        recipient=str(recipient),
        rail=RAIL_NAME,
        metadata={"mcp_call": token, "mcp_tool": tool},
    )


def build_proxy(
    warden: Warden, upstream: Client, mapping: ProxyMapping, rail: McpToolRail, *, agent: str
) -> Server[Any]:
    """The proxy server (see the module docstring); `warden` must have `rail` as its
    `mcp-proxy` rail (`Warden.open(..., rails={"mcp-proxy": rail})`)."""

    def listed(name: str) -> bool:
        if name in mapping.block:
            return False
        return name in mapping.tools or mapping.unmapped == "pass"

    async def list_tools(ctx: Any, params: Any) -> ListToolsResult:
        upstream_tools = await upstream.list_tools()
        return ListToolsResult(tools=[t for t in upstream_tools.tools if listed(t.name)])

    async def call_tool(ctx: Any, params: CallToolRequestParams) -> CallToolResult:
        name, arguments = params.name, dict(params.arguments or {})
        if not listed(name):
            return _failure(f"blocked: paywarden does not forward `{name}`")
        tool = mapping.tools.get(name)
        if tool is None:
            return await upstream.call_tool(name, arguments)
        return await _pay_through(warden, rail, tool, name, arguments, agent)

    return Server("paywarden-mcp-proxy", on_list_tools=list_tools, on_call_tool=call_tool)


async def _pay_through(
    warden: Warden,
    rail: McpToolRail,
    tool: ToolMapping,
    name: str,
    arguments: dict[str, Any],
    agent: str,
) -> CallToolResult:
    token = secrets.token_hex(12)
    try:
        intent = intent_for(tool, name, arguments, agent, token)
    except PaywardenError as error:
        return _failure(f"{error.code}: {error}")
    rail.calls[token] = (name, arguments)
    try:
        outcome = await anyio.to_thread.run_sync(warden.pay, intent)
    finally:
        rail.calls.pop(token, None)
    decision = outcome.decision
    if not decision.allowed:
        approval = f" (approval {decision.approval_id})" if decision.approval_id else ""
        return _failure(f"{decision.reason_code}: {decision.reason}{approval}")
    result = rail.results.pop(token, None)
    if result is not None:
        return result
    payment = outcome.payment
    state = payment.state if payment is not None else "not_submitted"
    return _failure(f"payment_{state}: the upstream answer is not known; an operator will check")
