"""What the x402 guard adds to a paid call, against the unguarded SDK client in the same run.

Run: .venv/bin/python -P bench/x402_guard.py [--calls 300] [--rounds 3]

One paid call is a GET that the SDK's FastAPI middleware answers 402, then the client signs a
real EIP-3009 authorization (throwaway key), retries, and the middleware verifies and settles
with the fake facilitator (in process over ASGI, no network). Variants, taking turns call by
call with the garbage collector off and 30 untimed warm-up turns:
- `unguarded`: the SDK's `x402AsyncTransport` over an `x402Client` with spend controls off;
- `guarded`: `paywarden.x402.async_httpx_client` (decide and hold before signing, check the
  signed payload, capture the settled amount), on a SQLite ledger file;
- `ledger`: the same Warden's durable `authorize` of an `x402.pay` intent, the payment's record
  on the `x402` rail and its settlement (which captures the hold), alone: the three durable
  transactions the guard asks of the ledger per paid call.

A `budgets()` read takes turns with them as a gauge of the machine's load across runs.

Prints each variant's median of per-round medians (µs per call), and the guard's own work: the
time spent in its hooks less the time of the three ledger calls made inside them, per paid call
(median). Goal: at most 200 µs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from x402 import x402Client
from x402.http.clients.httpx import x402AsyncTransport
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact import ExactEvmClientScheme

from paywarden import Warden
from paywarden.rails import Receipt
from paywarden.x402 import X402Guard, async_httpx_client, ledger
from paywarden.x402.mapping import Requirement, intent_for
from paywarden.x402.paid_api import NETWORK, PAY_TO, FakeFacilitator, paid_app

POLICY = """
currency: USD
fx: {as_of: 2026-11-01, rates: {"USDC/USD": "1"}}
rules:
  - {id: per-call-limit, effect: deny, amount: {gt: "0.10"}}
  - {id: paid-apis, effect: allow, actions: [x402.pay]}
budgets:
  - {id: daily, limit: 1000000000, window: day, scope: agent}
"""
WARMUP = 30
USDC = "0x036cbd53842c5426634e7929541ec2318f3dcf7e"
Call = Callable[[], Awaitable[object]]


def _client() -> x402Client:
    scheme = ExactEvmClientScheme(EthAccountSigner(Account.create()))
    return x402Client().register(NETWORK, scheme)


def _ledger_only(warden: Warden) -> Call:
    requirement = Requirement("exact", NETWORK, 10_000, USDC, PAY_TO, 300, "{}", None)
    intent = intent_for(requirement, agent="bench-ledger", called_url="http://api.local/quote")
    keys = itertools.count()
    authorize, record, settle = warden.authorize, ledger.record, ledger.settle  # not timed

    async def run() -> object:  # a new idempotency key per call, as the guard sends
        keyed = intent.replace(idempotency_key=f"x402_bench_{next(keys)}")
        decision = authorize(keyed)
        row, _ = record(warden, decision, keyed)
        return settle(warden, row.payment_id, Receipt("settled", "0xbench"))

    return run


def _budgets(warden: Warden) -> Call:
    """A fixed read taking turns with the variants: compare it across runs to compare load."""

    async def run() -> object:
        return warden.budgets()

    return run


def _get(http: httpx.AsyncClient) -> Call:
    async def run() -> object:
        response = await http.get("/quote")
        if response.status_code != 200:
            raise SystemExit(f"paid call failed: {response.status_code}")
        return response

    return run


async def _round(variants: dict[str, Call], count: int) -> dict[str, float]:
    times: dict[str, list[int]] = {name: [] for name in variants}
    gc.collect()
    gc.disable()
    try:
        for turn in range(WARMUP + count):
            for name, call in variants.items():
                start = time.perf_counter_ns()
                await call()
                if turn >= WARMUP:
                    times[name].append(time.perf_counter_ns() - start)
    finally:
        gc.enable()
    return {name: statistics.median(values) / 1000 for name, values in times.items()}


async def _bench(directory: Path, calls: int, rounds: int) -> dict[str, float]:
    app = paid_app(FakeFacilitator(), {"quote": "$0.01"})
    with Warden.open(POLICY, database=directory / "ledger.db") as warden:
        plain = _client().set_spend_controls(False)
        guard = X402Guard(warden, agent="bench-agent")
        ledger_only = _ledger_only(warden)
        spent = _instrument(guard, warden)
        base = "http://api.local"
        async with (
            httpx.AsyncClient(
                transport=x402AsyncTransport(plain, transport=httpx.ASGITransport(app=app)),
                base_url=base,
            ) as unguarded,
            async_httpx_client(
                guard, _client(), transport=httpx.ASGITransport(app=app), base_url=base
            ) as guarded,
        ):
            variants = {
                "unguarded SDK client": _get(unguarded),
                "guarded client": _get(guarded),
                "ledger: authorize, record, settle": ledger_only,
                "budgets() read (load gauge)": _budgets(warden),
            }
            results = [await _round(variants, calls) for _ in range(rounds)]
    medians = {name: statistics.median(r[name] for r in results) for name in variants}
    calls = spent.calls[WARMUP:]
    own_wall = [c["guard"] - c["ledger"] for c in calls]
    own_cpu = [c["guard_cpu"] - c["ledger_cpu"] for c in calls]
    medians["guard own work, wall"] = statistics.median(own_wall) / 1000
    medians["guard own work, thread CPU"] = statistics.median(own_cpu) / 1000
    return medians


class _Spent:
    """Per paid call: ns in the guard's hooks, and ns of the Warden calls made inside them,
    wall-clock and this thread's CPU time (which other processes' load does not inflate)."""

    def __init__(self) -> None:
        self.now = dict.fromkeys(("guard", "ledger", "guard_cpu", "ledger_cpu"), 0)
        self.calls: list[dict[str, int]] = []

    def close_call(self) -> None:
        self.calls.append(self.now)
        self.now = dict.fromkeys(self.now, 0)


def _instrument(guard: X402Guard, warden: Warden) -> _Spent:
    """Time the guard's hooks and, inside them, the Warden calls they make."""
    spent = _Spent()

    def timed(function: Callable[..., Any], bucket: str) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
            try:
                return function(*args, **kwargs)
            finally:
                spent.now[bucket] += time.perf_counter_ns() - start
                spent.now[f"{bucket}_cpu"] += time.thread_time_ns() - start_cpu

        return run

    hooks = ("candidates", "before_creation", "after_creation", "payment_response")
    hooks += ("reusable", "sent_as_checked")
    for name in hooks:
        setattr(guard, name, timed(getattr(guard, name), "guard"))
    respond = guard.payment_response

    def payment_response(ctx: Any) -> None:
        respond(ctx)
        spent.close_call()

    guard.payment_response = payment_response  # type: ignore[method-assign]
    warden.authorize = timed(warden.authorize, "ledger")  # type: ignore[method-assign]
    ledger.record = timed(ledger.record, "ledger")  # type: ignore[assignment]
    ledger.settle = timed(ledger.settle, "ledger")  # type: ignore[assignment]
    return spent


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        medians = asyncio.run(_bench(Path(directory), args.calls, args.rounds))
    for name, micros in medians.items():
        print(f"{name:<34} {micros:>10.1f} µs per paid call")
    added = medians["guarded client"] - medians["unguarded SDK client"]
    print(f"{'guarded - unguarded':<34} {added:>10.1f} µs (wall, shared machine: noisy)")
    print("guard own work: time in the guard's hooks less the ledger calls made inside them")
    print("(median per paid call; goal <= 200 µs)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
