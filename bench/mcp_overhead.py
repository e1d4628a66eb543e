"""What the MCP layer adds to a payment: `request_payment` as a tool call, against the bare
library calls, in process and over HTTP.

Run: .venv/bin/python -P bench/mcp_overhead.py [--calls 1000] [--rounds 3] [--memory]

Timed one call at a time, each with a new intent. The variants take turns call by call (every
variant sees the same ledger size and the same machine noise), with the garbage collector off
during timing and 50 untimed warm-up turns:
- `warden.authorize(intent)`: the bare decision (hold, decision record, audit entry);
- `warden.pay(intent)`: what `request_payment` runs (authorize, then pay on the sandbox rail);
- `request_payment` through the SDK's in-process client, direct mode (`mode="auto"`) and
  JSON-RPC over memory streams (`mode="legacy"`), with the tool body on a worker thread (the
  default) and, in direct mode, inline on the event loop (`build_server(..., offload=False)`);
- `request_payment` over streamable HTTP to uvicorn on 127.0.0.1, modern (2026-07-28) and
  legacy (initialize handshake, session) protocol;
- `get_budget_status` in process against `warden.budgets()`, for a read;
- paywarden's tool layer without the SDK: the key check, the intent, `pay` and the typed
  result with its JSON, exactly what the `request_payment` tool body does;
- the SDK's own floor: an async tool that returns a one-field model at once, in process;
- the SDK client's check of a `request_payment` result against the tool's output schema (it
  runs inside every tool call above, on the client side).

Prints each variant's median of per-round medians, and the MCP overhead: a tool call minus the
library call it wraps (`pay`, or `budgets`), and minus a bare `authorize`.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx2
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel

from paywarden import Warden
from paywarden.adapters.rails.sandbox import SandboxRail
from paywarden.entrypoints.mcp.agent_tools import AgentTools, PaymentArgs, caller_of
from paywarden.entrypoints.mcp.http import McpHttpApp
from paywarden.entrypoints.mcp.server import build_server
from paywarden.intent import PaymentIntent
from paywarden.keys import Principal

POLICY = """
currency: USD
rules:
  - {id: deny-sanctioned, effect: deny, recipients: ["*.evil.example"]}
  - {id: approve-large, effect: require_approval, actions: ["payments.*"], amount: {gt: 5000}}
  - {id: allow-payments, effect: allow, actions: ["payments.*"]}
budgets:
  - {id: daily, limit: 1000000000, window: day, scope: agent}
  - {id: monthly, limit: 1000000000, window: month}
"""
AGENT = "agent-bench"
ARGS = {
    "action": "payments.transfer",
    "amount": "12.50",
    "currency": "USD",
    "recipient": "vendor.example.com",
}
WARMUP = 50
FLOOR = "SDK floor: no-op tool, in process (auto)"
READ = "get_budget_status, in process (auto)"
LAYER = "paywarden tool layer, no SDK"
CHECK = "client's output-schema check (SDK, jsonschema)"


def _intent() -> PaymentIntent:
    return PaymentIntent(agent=AGENT, **ARGS)


Call = Callable[[], Awaitable[object]]


def _sync(call: Callable[[], object]) -> Call:
    async def run() -> object:
        return call()

    return run


def _tool(client: Client, name: str, args: dict[str, Any]) -> Call:
    async def run() -> object:
        result = await client.call_tool(name, args)
        if result.is_error:
            raise SystemExit(f"{name} failed: {result.content}")
        return result

    return run


async def _interleaved(variants: dict[str, Call], count: int) -> dict[str, float]:
    """Median µs per variant, calling each once per turn so all see the same ledger size."""
    samples: dict[str, list[int]] = {name: [] for name in variants}
    gc.collect()
    gc.disable()
    try:
        for turn in range(WARMUP + count):
            for name, call in variants.items():
                start = time.perf_counter_ns()
                await call()
                if turn >= WARMUP:
                    samples[name].append(time.perf_counter_ns() - start)
    finally:
        gc.enable()
    return {name: statistics.median(values) / 1000 for name, values in samples.items()}


@contextlib.contextmanager
def _uvicorn(app: McpHttpApp) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        thread.join()


class Pong(BaseModel):
    ok: bool


def _floor_server() -> MCPServer:
    floor = MCPServer("floor")

    @floor.tool()
    async def ping() -> Pong:
        return Pong(ok=True)

    return floor


async def _in_process(warden: Warden, secret: str, count: int) -> dict[str, float]:
    def identity() -> Principal:
        return warden.authenticate(secret)

    async with contextlib.AsyncExitStack() as stack:
        auto = await stack.enter_async_context(Client(build_server(warden, identity)))
        legacy = await stack.enter_async_context(
            Client(build_server(warden, identity), mode="legacy")
        )
        inline = await stack.enter_async_context(
            Client(build_server(warden, identity, offload=False))
        )
        floor = await stack.enter_async_context(Client(_floor_server()))
        sample = await auto.call_tool("request_payment", ARGS)

        async def check() -> object:
            await auto.session.validate_tool_result("request_payment", sample)
            return None

        tools = AgentTools(warden)

        def layer() -> object:
            result = tools.request_payment(caller_of(identity()), PaymentArgs(**ARGS))
            return result.model_dump_json(), result.model_dump(mode="json")

        variants = {
            "authorize (bare)": _sync(lambda: warden.authorize(_intent())),
            "pay (bare)": _sync(lambda: warden.pay(_intent())),
            "budgets (bare)": _sync(warden.budgets),
            LAYER: _sync(layer),
            FLOOR: _tool(floor, "ping", {}),
            READ: _tool(auto, "get_budget_status", {}),
            CHECK: check,
            "request_payment, in process (auto)": _tool(auto, "request_payment", ARGS),
            "request_payment, in process (legacy)": _tool(legacy, "request_payment", ARGS),
            "request_payment, in process (auto, inline)": _tool(inline, "request_payment", ARGS),
        }
        return await _interleaved(variants, count)


async def _over_http(warden: Warden, secret: str, url: str, count: int) -> dict[str, float]:
    """A second phase: the HTTP server thread and client streams would disturb the first."""
    headers = {"Authorization": f"Bearer {secret}"}
    variants = {"pay (bare, HTTP phase)": _sync(lambda: warden.pay(_intent()))}
    async with contextlib.AsyncExitStack() as stack:
        for label, mode in (("modern", "auto"), ("legacy", "legacy")):
            http = await stack.enter_async_context(httpx2.AsyncClient(headers=headers, timeout=60))
            transport = streamable_http_client(url, http_client=http)
            client = await stack.enter_async_context(Client(transport, mode=mode))
            variants[f"request_payment, HTTP ({label})"] = _tool(client, "request_payment", ARGS)
        return await _interleaved(variants, count)


def _round(warden: Warden, secret: str, count: int) -> dict[str, float]:
    found = anyio.run(_in_process, warden, secret, count)
    with _uvicorn(McpHttpApp(warden)) as url:
        found.update(anyio.run(_over_http, warden, secret, url, count))
    return found


def _report(rounds: list[dict[str, float]]) -> None:
    medians = {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}
    print(f"\n{'variant':<44} {'median µs':>10}   per-round medians")
    for name, value in medians.items():
        runs = ", ".join(f"{r[name]:.0f}" for r in rounds)
        print(f"{name:<44} {value:>10.0f}   {runs}")
    authorize = medians["authorize (bare)"]
    print(f"\n{'MCP overhead':<44} {'over pay':>10} {'over authorize':>15}")
    for name, value in medians.items():
        if name.startswith("request_payment"):
            pay = medians["pay (bare, HTTP phase)" if "HTTP" in name else "pay (bare)"]
            print(f"{name:<44} {value - pay:>10.0f} {value - authorize:>15.0f}")
    read = medians[READ] - medians["budgets (bare)"]
    print(f"{READ:<44} {read:>10.0f}   (over budgets)")
    print(f"{LAYER:<44} {medians[LAYER] - medians['pay (bare)']:>10.0f}")
    print(f"{FLOOR:<44} {medians[FLOOR]:>10.0f}   (the whole call)")
    print(f"{CHECK:<44} {medians[CHECK]:>10.0f}   (of each request_payment call)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="timed calls per variant")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory", action="store_true", help="in-memory SQLite, not a file")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        database = ":memory:" if options.memory else Path(directory) / "bench.db"
        rails = {"sandbox": SandboxRail()}
        with Warden.open(POLICY, database=database, rails=rails) as warden:
            secret, _ = warden.create_key(role="agent", agent=AGENT, actor="bench")
            rounds = []
            for number in range(1, options.rounds + 1):
                print(f"round {number}/{options.rounds} ...", flush=True)
                rounds.append(_round(warden, secret, options.calls))
    print(
        f"\n{options.calls} calls per variant per round, {options.rounds} rounds, "
        f"SQLite {'in memory' if options.memory else 'file'}; Python {sys.version.split()[0]}"
    )
    _report(rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
