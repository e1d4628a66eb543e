"""Authorizations per second over HTTP on loopback: `POST /v1/authorizations` with N clients.

Run: .venv/bin/python bench/http_gateway.py [--clients 32] [--seconds 10] [--rounds 5] [--workers 1]
     [--cpus 0,1]

Starts `paywarden serve` (uvicorn, access log off) on a free 127.0.0.1 port and a fresh SQLite
file (WAL, synchronous=FULL: every allowed decision is durable before it is answered), with a
policy of one allow rule, one daily budget and one per-agent budget, so each request runs the
whole path: key authentication, request validation, the decision, the budget holds, the decision
record and its audit entry in one transaction. Each of the `--clients` concurrent clients holds
one keep-alive connection and sends one request at a time, a new intent each time, and times it
from the first byte sent to the last byte of the answer. The client is a minimal HTTP/1.1 client
on asyncio streams in one process, so it takes as little CPU from the server as possible; with
`--cpus` both the server and the client are pinned to those CPUs (`taskset`), which is how the
2-core figures are taken.

Each round runs 2 s of warm-up, then `--seconds` of measurement; the figures are the median over
rounds of each round's throughput, p50 and p99. Every answer must be 200 with `"outcome":
"allow"`, or the run fails.
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
from dataclasses import dataclass

from paywarden import Warden

POLICY = """
currency: USD
rules:
  - {id: bench, effect: allow, actions: ["payments.*"], amount: {lte: 1000}}
budgets:
  - {id: daily, limit: 1000000000000, window: day}
  - {id: per-agent, limit: 1000000000000, window: day, scope: agent}
"""
WARMUP_SECONDS = 2.0


@dataclass
class Round:
    requests: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_server(
    directory: Path, port: int, workers: int, cpus: str | None
) -> subprocess.Popen[bytes]:
    (directory / "policy.yaml").write_text(POLICY, encoding="utf-8")
    command = [
        str(Path(sys.executable).with_name("paywarden")), "serve",
        "--database", str(directory / "bench.db"), "--policy", str(directory / "policy.yaml"),
        "--port", str(port), "--workers", str(workers),
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    if cpus:
        command = ["taskset", "-c", cpus, *command]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
                if answer.status == 200:
                    return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    errors = process.stderr.read().decode() if process.stderr else ""
    raise SystemExit(f"the gateway did not start: {errors}")


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
) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    counted, index = 0, number * 10_000_000
    try:
        while True:
            started = time.perf_counter()
            if started >= stop_at:
                return counted
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


async def one_round(key: str, port: int, clients: int, seconds: float) -> Round:
    begin = time.perf_counter()
    measure_from = begin + WARMUP_SECONDS
    stop_at = measure_from + seconds
    latencies: list[float] = []
    counts = await asyncio.gather(
        *(client(key, port, n, stop_at, measure_from, latencies) for n in range(clients))
    )
    return Round(sum(counts), seconds, latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--cpus", default=None, help="pin server and client, e.g. 0,1")
    args = parser.parse_args()
    if args.cpus:
        os.sched_setaffinity(0, {int(cpu) for cpu in args.cpus.split(",")})
    directory = Path(tempfile.mkdtemp(prefix="paywarden-bench-http-"))
    port = free_port()
    with Warden.open(None, database=directory / "bench.db") as warden:
        key, _ = warden.create_key(role="agent", agent="bench-agent", actor="bench")
    server = start_server(directory, port, args.workers, args.cpus)
    rounds: list[Round] = []
    try:
        for number in range(args.rounds):
            result = asyncio.run(one_round(key, port, args.clients, args.seconds))
            rounds.append(result)
            print(
                f"round {number + 1}: {result.rate:,.0f} authorizations/s, "
                f"p50 {result.percentile(0.50):.2f} ms, p99 {result.percentile(0.99):.2f} ms"
            )
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)
    rate = statistics.median(r.rate for r in rounds)
    p50 = statistics.median(r.percentile(0.50) for r in rounds)
    p99 = statistics.median(r.percentile(0.99) for r in rounds)
    cpus = args.cpus or f"all {os.cpu_count()}"
    print(
        f"median of {args.rounds} rounds ({args.clients} clients, {args.workers} worker(s), "
        f"CPUs {cpus}): {rate:,.0f} authorizations/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms"
    )


if __name__ == "__main__":
    main()
