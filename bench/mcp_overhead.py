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
- over HTTP to uvicorn on 127.0.0.1, with httpx2 clients: the REST gateway's
  `POST /v1/payments` (a new `Idempotency-Key` each call) and `request_payment` at the same
  gateway's `/mcp`, modern (2026-07-28) and legacy (initialize handshake, session) protocol,
  and at a standalone `McpHttpApp` (as `paywarden mcp --transport http` serves it);
- `get_budget_status` in process against `warden.budgets()`, for a read;
- paywarden's tool layer without the SDK: the key check, the intent, `pay` and the typed
  result with its JSON, exactly what the `request_payment` tool body does;
- the SDK's own floor: an async tool that returns a one-field model at once, in process;
- the SDK client's check of a `request_payment` result against the tool's output schema (it
  runs inside every tool call above, on the client side), and the same check against the
  nested schema pydantic writes (what was published before schemas were flattened).

Prints each variant's median of per-round medians, wall-clock and CPU (the process's CPU time
over the call, every thread: on a shared machine it moves far less than wall time), and the
MCP overhead: a tool call minus the library call it wraps (`pay`, or `budgets`), and minus a
bare `authorize`; over HTTP, MCP against the REST route (goal: at most 2x).
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
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx2
import uvicorn
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel
from referencing import Registry

from paywarden import Warden
from paywarden.adapters.rails.sandbox import SandboxRail
from paywarden.entrypoints.mcp.agent_tools import AgentTools, PaymentArgs, caller_of
from paywarden.entrypoints.mcp.http import McpHttpApp
from paywarden.entrypoints.mcp.models import PaymentRequestResult
from paywarden.entrypoints.mcp.server import build_server
from paywarden.entrypoints.rest.app import create_app
from paywarden.entrypoints.rest.settings import Settings
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
CHECK_NESTED = "the same check against the nested schema"
REST = "POST /v1/payments, HTTP (gateway)"


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


Medians = dict[str, tuple[float, float]]  # variant -> (wall µs, CPU µs) per call


async def _interleaved(variants: dict[str, Call], count: int) -> Medians:
    """Median µs per variant (wall, CPU), calling each once per turn so all see the same
    ledger size."""
    walls: dict[str, list[int]] = {name: [] for name in variants}
    cpus: dict[str, list[int]] = {name: [] for name in variants}
    wall_ns, cpu_ns = time.perf_counter_ns, time.process_time_ns
    gc.collect()
    gc.disable()
    try:
        for turn in range(WARMUP + count):
            for name, call in variants.items():
                start, start_cpu = wall_ns(), cpu_ns()
                await call()
                if turn >= WARMUP:
                    walls[name].append(wall_ns() - start)
                    cpus[name].append(cpu_ns() - start_cpu)
    finally:
        gc.enable()
    return {
        name: (statistics.median(walls[name]) / 1000, statistics.median(cpus[name]) / 1000)
        for name in variants
    }


@contextlib.contextmanager
def _uvicorn(app: Any) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
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


async def _in_process(warden: Warden, secret: str, count: int) -> Medians:
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

        # The schema pydantic writes (`$defs`, `$ref`, `anyOf` for nullable fields), checked
        # the way the SDK client checks: what each call cost before schemas were published flat.
        nested = PaymentRequestResult.model_json_schema()
        nested_validator = validator_for(nested)(nested, registry=Registry())

        async def check_nested() -> object:
            return best_match(nested_validator.iter_errors(sample.structured_content))

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
            CHECK_NESTED: check_nested,
            "request_payment, in process (auto)": _tool(auto, "request_payment", ARGS),
            "request_payment, in process (legacy)": _tool(legacy, "request_payment", ARGS),
            "request_payment, in process (auto, inline)": _tool(inline, "request_payment", ARGS),
        }
        return await _interleaved(variants, count)


def _rest_payment(http: httpx2.AsyncClient, url: str) -> Call:
    async def run() -> object:
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        response = await http.post(f"{url}/v1/payments", json=ARGS, headers=headers)
        if response.status_code != 200 or response.json()["state"] != "settled":
            raise SystemExit(f"POST /v1/payments failed: {response.status_code} {response.text}")
        return response

    return run


async def _over_http(warden: Warden, secret: str, urls: dict[str, str], count: int) -> Medians:
    """A second phase: the HTTP server threads and client streams would disturb the first."""
    headers = {"Authorization": f"Bearer {secret}"}
    variants = {"pay (bare, HTTP phase)": _sync(lambda: warden.pay(_intent()))}
    async with contextlib.AsyncExitStack() as stack:
        rest = await stack.enter_async_context(httpx2.AsyncClient(headers=headers, timeout=60))
        variants[REST] = _rest_payment(rest, urls["gateway"])
        for label, server, mode in (
            ("gateway /mcp, modern", "gateway", "auto"),
            ("gateway /mcp, legacy", "gateway", "legacy"),
            ("McpHttpApp, modern", "mcp", "auto"),
        ):
            http = await stack.enter_async_context(httpx2.AsyncClient(headers=headers, timeout=60))
            transport = streamable_http_client(f"{urls[server]}/mcp", http_client=http)
            client = await stack.enter_async_context(Client(transport, mode=mode))
            variants[f"request_payment, HTTP ({label})"] = _tool(client, "request_payment", ARGS)
        return await _interleaved(variants, count)


def _round(warden: Warden, secret: str, count: int) -> Medians:
    found = anyio.run(_in_process, warden, secret, count)
    gateway = create_app(Settings(reconcile_on_start=False), warden=warden)
    with _uvicorn(gateway) as gateway_url, _uvicorn(McpHttpApp(warden)) as mcp_url:
        urls = {"gateway": gateway_url, "mcp": mcp_url}
        found.update(anyio.run(_over_http, warden, secret, urls, count))
    return found


def _report(rounds: list[Medians]) -> None:
    wall = {name: statistics.median(r[name][0] for r in rounds) for name in rounds[0]}
    cpu = {name: statistics.median(r[name][1] for r in rounds) for name in rounds[0]}
    print(f"\n{'variant':<48} {'wall µs':>8} {'CPU µs':>8}   per-round wall medians")
    for name in wall:
        runs = ", ".join(f"{r[name][0]:.0f}" for r in rounds)
        print(f"{name:<48} {wall[name]:>8.0f} {cpu[name]:>8.0f}   {runs}")
    print(f"\n{'MCP overhead (wall / CPU µs)':<48} {'over pay':>15} {'over authorize':>15}")
    for name in wall:
        if name.startswith("request_payment"):
            pay = "pay (bare, HTTP phase)" if "HTTP" in name else "pay (bare)"
            over_pay = f"{wall[name] - wall[pay]:.0f} / {cpu[name] - cpu[pay]:.0f}"
            over_authorize = f"{wall[name] - wall['authorize (bare)']:.0f}"
            print(f"{name:<48} {over_pay:>15} {over_authorize:>15}")
    read = f"{wall[READ] - wall['budgets (bare)']:.0f} / {cpu[READ] - cpu['budgets (bare)']:.0f}"
    print(f"{READ:<48} {read:>15}   (over budgets)")
    layer = f"{wall[LAYER] - wall['pay (bare)']:.0f} / {cpu[LAYER] - cpu['pay (bare)']:.0f}"
    print(f"{LAYER:<48} {layer:>15}")
    print(f"{FLOOR:<48} {wall[FLOOR]:>15.0f}   (the whole call)")
    print(f"{CHECK:<48} {wall[CHECK]:>15.0f}   (of each request_payment call)")
    print(f"{CHECK_NESTED:<48} {wall[CHECK_NESTED]:>15.0f}   (before flat schemas)")
    print(f"\n{'over HTTP, against ' + REST:<48} {'wall':>7} {'CPU':>7}")
    for name in wall:
        if name.startswith("request_payment, HTTP"):
            print(f"{name:<48} {wall[name] / wall[REST]:>6.2f}x {cpu[name] / cpu[REST]:>6.2f}x")


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
