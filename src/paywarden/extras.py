"""Optional dependencies ("extras"), and the one-line error when a feature's extra is missing.

The base install is the library and the command line. `server` (the REST gateway, with MCP
over HTTP), `mcp` (the stdio MCP server), `stripe` (the Stripe rail) and `postgres` (the
PostgreSQL store) are extras; `all` is every one of them. pyproject.toml declares the same
sets; a test keeps the two in step.
"""

from __future__ import annotations

# The top-level modules each extra brings that paywarden imports itself. `server` includes
# `mcp`: the gateway also serves MCP over HTTP at /mcp.
_MCP_MODULES = frozenset({"mcp", "mcp_types", "pydantic", "pydantic_core", "anyio"})
MODULES_OF_EXTRA: dict[str, frozenset[str]] = {
    "server": _MCP_MODULES
    | {"fastapi", "starlette", "uvicorn", "uvloop", "prometheus_client"}
    | {"jinja2", "python_multipart", "multipart"},  # the console (/console)
    "mcp": _MCP_MODULES,
    "stripe": frozenset({"stripe", "requests", "urllib3"}),
    "postgres": frozenset({"psycopg", "psycopg_pool", "psycopg_binary"}),
    "metrics": frozenset({"prometheus_client"}),
    # Agents that pay (docs/agents.md); `openai-agents` installs the `agents` module.
    "llm": frozenset({"openai", "httpx", "pydantic"}),
    "openai-agents": frozenset({"agents", "openai-agents", "openai", "httpx", "pydantic"}),
    "langchain": frozenset({"langchain_core", "langgraph", "pydantic"}),
    "pydantic-ai": frozenset({"pydantic_ai", "pydantic-ai-slim", "pydantic"}),
    "autogen": frozenset(
        {"autogen_agentchat", "autogen_core", "autogen_ext"}
        | {"autogen-agentchat", "autogen-core", "autogen-ext"}
    ),
    "llama-index": frozenset({"llama_index", "llama-index-core"}),
    "x402": frozenset({"x402", "eth_account", "fastapi", "starlette", "httpx", "requests"}),
    "ap2": frozenset({"sd_jwt", "rfc8785", "jwcrypto"}),
}
# Extras that cannot install beside the others, so not in `all` (CI tests each in a virtual
# environment of its own): `crewai` pins older mcp, openai and pydantic.
MODULES_OF_SEPARATE_EXTRA: dict[str, frozenset[str]] = {"crewai": frozenset({"crewai"})}
# Built-in rails whose SDK is an extra: rail name -> extra.
EXTRA_OF_RAIL: dict[str, str] = {"stripe": "stripe"}


def install_hint(extra: str) -> str:
    """`pip install 'paywarden[server]'`: the command that installs `extra`."""
    return f"pip install 'paywarden[{extra}]'"


def missing_extra(error: ImportError, extra: str) -> bool:
    """Whether `error` says a module of `extra` is not installed (not a bug in paywarden)."""
    top_level = (error.name or "").partition(".")[0]
    return top_level in (MODULES_OF_EXTRA.get(extra) or MODULES_OF_SEPARATE_EXTRA[extra])


def needs_extra_message(feature: str, extra: str) -> str:
    """`paywarden serve needs the server extra: pip install 'paywarden[server]'`."""
    return f"{feature} needs the {extra} extra: {install_hint(extra)}"
