"""The MCP entry point: paywarden's agent tools over the official `mcp` SDK.

- `paywarden.entrypoints.mcp.server.build_server(warden, identity)`: the `MCPServer`.
- `paywarden.entrypoints.mcp.http.McpHttpApp(warden)`: streamable HTTP, one API key per request.
- `paywarden.entrypoints.mcp.cli.mcp_command`: `paywarden mcp`, stdio.

Nothing is imported here, so `paywarden` commands other than `mcp` do not load the SDK.
"""
