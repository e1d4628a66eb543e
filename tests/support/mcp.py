"""The MCP server of a Warden driven by the SDK's client: in process (as `paywarden mcp` builds
it, its identity the key, re-checked on every call) or over streamable HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult

from paywarden import Warden
from paywarden.entrypoints.mcp.server import build_server

# Raw JSON-RPC over HTTP: the headers every request carries, and the opening `initialize`.
JSON_RPC_HEADERS = {"accept": "application/json, text/event-stream"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}


def key_server(warden: Warden, secret: str) -> MCPServer:
    """The MCP server of `warden` acting as the holder of the API key `secret`."""
    return build_server(warden, lambda: warden.authenticate(secret))


def run_client(
    server: MCPServer, body: Callable[[Client], Awaitable[None]], mode: str = "legacy"
) -> None:
    """Run `body` with an in-process client of `server` in `mode` (`auto` or `legacy`)."""

    async def main() -> None:
        async with Client(server, mode=mode) as client:
            await body(client)

    anyio.run(main)


def mcp_call(warden: Warden, secret: str, tool: str, arguments: dict[str, Any]) -> CallToolResult:
    """One tool call as the holder of `secret` (legacy mode), its whole result."""
    results: list[CallToolResult] = []

    async def body(client: Client) -> None:
        results.append(await client.call_tool(tool, arguments))

    run_client(key_server(warden, secret), body)
    return results[0]


def tool_text(result: CallToolResult) -> str:
    return "".join(getattr(part, "text", "") for part in result.content)


def structured(result: CallToolResult) -> dict[str, Any]:
    """The structured result of a call that succeeded."""
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return dict(result.structured_content)


@contextlib.asynccontextmanager
async def http_client(url: str, key: str, mode: str = "auto") -> AsyncIterator[Client]:
    """An MCP client over streamable HTTP at `url`, sending `key` as its bearer token."""
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client
