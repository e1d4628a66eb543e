"""Authorizations per second over HTTP on loopback: `POST /v1/authorizations` with N clients,
against the same stack's ceiling, measured in the same run.

Run: .venv/bin/python bench/http_gateway.py [--clients 32] [--seconds 10] [--rounds 5]
     [--workers 1] [--cpus 0,1] [--before /tmp/head/src] [--no-ceiling]

Starts `paywarden serve` (uvicorn, access log off) on a free 127.0.0.1 port and a fresh SQLite
file (WAL, synchronous=FULL: every allowed decision is durable before it is answered), with a
policy of one allow rule, one daily budget and one per-agent budget, so each request runs the
whole path: key authentication, request validation, the decision, the budget holds, the decision
record and its audit entry in one transaction.

Beside it, on one worker, the same stack's ceiling: a FastAPI app under uvicorn (its default
event loop and HTTP parser) whose `async` endpoint parses a pydantic body with the same fields
and returns a small model, with no storage. With `--before SRC`, a third server runs the
paywarden tree at SRC (e.g. a `git archive` of HEAD) through `PYTHONPATH`, for a before/after
comparison on the same machine at the same time.

Each of the `--clients` concurrent clients holds one keep-alive connection and sends one request
at a time, a new intent each time, and times it from the first byte sent to the last byte of
the answer. The client is a minimal HTTP/1.1 client on asyncio streams in one process, so it
takes as little CPU from the servers as possible; with `--cpus` the servers and the client are
pinned to those CPUs (`taskset`). Every round runs each server in turn (2 s of warm-up, then
`--seconds` measured); the figures are the medians over rounds of throughput, p50 and p99, the
slowest request of all rounds, each server's rate as a share of the ceiling's, and the server's
CPU time per request (all its processes, from /proc; the steadiest figure on a shared machine).
Every answer must be 200 with `"outcome":"allow"`, or the run fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the standard library's `http` package: run as a script, its folder is
# first on sys.path and would shadow it. Drop the folder before anything imports `http`.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field

POLICY = """
currency: USD
rules:
  - {id: bench, effect: allow, actions: ["payments.*"], amount: {lte: 1000}}
budgets:
  - {id: daily, limit: 1000000000000, window: day}
  - {id: per-agent, limit: 1000000000000, window: day, scope: agent}
"""
WARMUP_SECONDS = 2.0
PAYWARDEN = str(Path(sys.executable).with_name("paywarden"))


@dataclass
class Round:
    requests: int
    seconds: float
    latencies_ms: list[float]
    cpu_seconds: float = 0.0  # the server's CPU time (all its processes) during the round
    total_requests: int = 0  # warm-up included, to divide the CPU time by

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Server:
    """One server under test: its name, port, key and process, and its rounds."""

    name: str
    port: int
    key: str
    process: subprocess.Popen[bytes]
    rounds: list[Round] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        return {
            "cpu_ms": statistics.median(
                1000 * r.cpu_seconds / max(r.total_requests, 1) for r in self.rounds
            ),
            "rate": statistics.median(r.rate for r in self.rounds),
            "p50": statistics.median(r.percentile(0.50) for r in self.rounds),
            "p99": statistics.median(r.percentile(0.99) for r in self.rounds),
            "max": max(max(r.latencies_ms) for r in self.rounds),
        }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and its children (uvicorn's workers)."""
    total = 0.0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    for process in [pid, *map(int, children)]:
        try:
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def pinned(command: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *command] if cpus else command


def wait_ready(process: subprocess.Popen[bytes], port: int, path: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    process.kill()
    errors = process.stderr.read().decode() if process.stderr else ""
    raise SystemExit(f"the server on port {port} did not start: {errors}")


def start_gateway(
    name: str, directory: Path, workers: int, cpus: str | None, source: str | None
) -> Server:
    """`paywarden serve` on a fresh ledger, from this tree or from `source` (PYTHONPATH)."""
    directory.mkdir(parents=True)
    environ = {**os.environ, "PYTHONPATH": source} if source else dict(os.environ)
    (directory / "policy.yaml").write_text(POLICY, encoding="utf-8")
    database = str(directory / "bench.db")
    created = subprocess.run(
        [PAYWARDEN, "keys", "create", "--database", database, "--role", "agent",
         "--agent", "bench-agent", "--json"],
        env=environ, check=True, capture_output=True,
    )  # fmt: skip
    key = json.loads(created.stdout)["key"]
    port = free_port()
    command = [
        PAYWARDEN, "serve", "--database", database, "--policy", str(directory / "policy.yaml"),
        "--port", str(port), "--workers", str(workers), "--no-access-log",
        "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(
        pinned(command, cpus), env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    wait_ready(process, port, "/readyz")
    return Server(name, port, key, process)


def start_ceiling(cpus: str | None) -> Server:
    """The same stack's ceiling: FastAPI under uvicorn, one worker, no storage."""
    port = free_port()
    command = [sys.executable, str(Path(__file__).resolve()), "--serve-ceiling", str(port)]
    process = subprocess.Popen(
        pinned(command, cpus), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    wait_ready(process, port, "/readyz")
    return Server("ceiling", port, "none", process)


def serve_ceiling(port: int) -> None:
    """Run the ceiling app (in its own process, started by `start_ceiling`)."""
    import uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel, ConfigDict, Field

    class Body(BaseModel):
        model_config = ConfigDict(extra="forbid")
        action: str = Field(max_length=128)
        amount: str = Field(pattern=r"^[0-9]{1,20}(\.[0-9]{1,18})?$")
        currency: str = Field(pattern=r"^[A-Za-z]{3,12}$")
        recipient: str = Field(min_length=1, max_length=2048)
        metadata: dict[str, str | int | bool | None] = Field(default_factory=dict)

    class Out(BaseModel):
        decision_id: str
        outcome: str
        amount: str

    app = FastAPI()
    counter = iter(range(1 << 62))

    async def authorize(body: Body) -> Out:
        return Out(decision_id=f"dec_{next(counter)}", outcome="allow", amount=body.amount)

    async def ready() -> dict[str, bool]:
        return {"ready": True}

    # This module's annotations are text (`from __future__`): give FastAPI the classes.
    authorize.__annotations__ = {"body": Body, "return": Out}
    ready.__annotations__ = {"return": dict[str, bool]}
    app.add_api_route("/v1/authorizations", authorize, methods=["POST"])
    app.add_api_route("/readyz", ready, methods=["GET"])

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def request_bytes(key: str, port: int, index: int) -> bytes:
    body = json.dumps(
        {
            "action": "payments.transfer",
            "amount": f"{1 + index % 50}.00",
            "currency": "USD",
            "recipient": f"vendor-{index % 97}.example.com",
            "metadata": {"n": index},
        },
        separators=(",", ":"),
    ).encode()
    head = (
        f"POST /v1/authorizations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, await reader.readexactly(length)


async def client(
    key: str, port: int, number: int, stop_at: float, measure_from: float, latencies: list[float]
) -> tuple[int, int]:
    """Requests measured and requests sent (warm-up included)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    counted, index = 0, number * 10_000_000
    try:
        while True:
            started = time.perf_counter()
            if started >= stop_at:
                return counted, index - number * 10_000_000
            writer.write(request_bytes(key, port, index))
            index += 1
            status, body = await read_response(reader)
            finished = time.perf_counter()
            if status != 200 or b'"outcome":"allow"' not in body:
                raise SystemExit(f"unexpected answer {status}: {body[:300]!r}")
            if started >= measure_from:
                latencies.append((finished - started) * 1000)
                counted += 1
    finally:
        writer.close()
        await writer.wait_closed()


async def one_round(server: Server, clients: int, seconds: float) -> Round:
    cpu_before = cpu_seconds(server.process.pid)
    begin = time.perf_counter()
    measure_from = begin + WARMUP_SECONDS
    stop_at = measure_from + seconds
    latencies: list[float] = []
    counts = await asyncio.gather(
        *(
            client(server.key, server.port, n, stop_at, measure_from, latencies)
            for n in range(clients)
        )
    )
    cpu = cpu_seconds(server.process.pid) - cpu_before
    measured, sent = (sum(column) for column in zip(*counts, strict=True))
    return Round(measured, seconds, latencies, cpu, sent)


def report(servers: list[Server], args: argparse.Namespace) -> None:
    cpus = args.cpus or f"all {os.cpu_count()}"
    print(
        f"\nmedians of {args.rounds} rounds ({args.clients} clients, {args.workers} gateway "
        f"worker(s), CPUs {cpus}):"
    )
    ceiling = next((s.summary()["rate"] for s in servers if s.name == "ceiling"), None)
    for server in servers:
        s = server.summary()
        share = f", {s['rate'] / ceiling:.0%} of the ceiling" if ceiling else ""
        print(
            f"  {server.name:8} {s['rate']:7,.0f}/s  p50 {s['p50']:7.2f} ms  p99 {s['p99']:7.2f}"
            f" ms ({s['p99'] / s['p50']:.1f}x p50)  slowest {s['max']:8.2f} ms "
            f"({s['max'] / s['p50']:.1f}x p50)  CPU {s['cpu_ms']:.2f} ms/request{share}"
        )


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--cpus", default=None, help="pin servers and client, e.g. 0,1")
    parser.add_argument("--before", default=None, help="also serve the paywarden tree at SRC")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the ceiling server")
    parser.add_argument("--serve-ceiling", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


def start_servers(args: argparse.Namespace, directory: Path) -> list[Server]:
    servers: list[Server] = []
    if not args.no_ceiling:
        servers.append(start_ceiling(args.cpus))
    if args.before:
        servers.append(
            start_gateway("before", directory / "before", args.workers, args.cpus, args.before)
        )
    servers.append(start_gateway("gateway", directory / "after", args.workers, args.cpus, None))
    return servers


def main() -> None:
    args = parse_arguments()
    if args.serve_ceiling is not None:
        serve_ceiling(args.serve_ceiling)
        return
    if args.cpus:
        os.sched_setaffinity(0, {int(cpu) for cpu in args.cpus.split(",")})
    directory = Path(tempfile.mkdtemp(prefix="paywarden-bench-http-"))
    servers: list[Server] = []
    try:
        servers = start_servers(args, directory)
        for number in range(args.rounds):
            for server in servers:
                result = asyncio.run(one_round(server, args.clients, args.seconds))
                server.rounds.append(result)
                print(
                    f"round {number + 1} {server.name:8} {result.rate:7,.0f}/s, "
                    f"p50 {result.percentile(0.50):.2f} ms, p99 {result.percentile(0.99):.2f} ms,"
                    f" slowest {max(result.latencies_ms):.2f} ms, server CPU "
                    f"{1000 * result.cpu_seconds / max(result.total_requests, 1):.2f} ms/request",
                    flush=True,
                )
    finally:
        for server in servers:
            server.process.send_signal(signal.SIGINT)
        for server in servers:
            server.process.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)
    report(servers, args)


if __name__ == "__main__":
    main()
