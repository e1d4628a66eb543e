"""What counting a decision for Prometheus costs: `warden.authorize` through the REST routes'
counting hook (`metrics.timed`) with metrics on, against the same hook with metrics off
(`metrics_enabled = false`), in one process, in the same run.

Run: .venv/bin/python -P bench/metrics_overhead.py [--calls 2000] [--rounds 5] [--memory]

The Warden decides on a fresh SQLite file (durable: WAL, synchronous=FULL), or in memory with
`--memory`, with one allow rule and a daily budget, a new intent each call. On and off take
turns call by call (both see the same ledger size and the same machine noise), with the garbage
collector off during timing and 50 untimed warm-up turns. Also timed alone: `GatewayMetrics.count`
(the counter's label lookup and increment and the histogram's observation), which is the whole
difference between the two. Prints per-round medians, then the median over rounds, and the
overhead of metrics on as a share of a decision.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from pathlib import Path

from paywarden import PaymentIntent, Warden
from paywarden.entrypoints.rest.metrics import GatewayMetrics, timed

POLICY = """
currency: USD
rules:
  - {id: bench, effect: allow, actions: ["payments.*"], amount: {lte: 1000}}
budgets:
  - {id: daily, limit: 1000000000000, window: day}
"""


def _intent(number: int) -> PaymentIntent:
    return PaymentIntent(
        agent="bench-agent",
        action="payments.transfer",
        amount="1.00",
        currency="USD",
        recipient="vendor.example.com",
        idempotency_key=f"bench-{number}",
    )


def _round(warden: Warden, metrics: GatewayMetrics, calls: int, start: int) -> tuple[float, float]:
    """Median seconds per decision with metrics on and off, taking turns."""
    on: list[float] = []
    off: list[float] = []
    number = start
    for turn in range(calls * 2):
        counting = metrics if turn % 2 == 0 else None
        intent = _intent(number)
        number += 1
        began = time.perf_counter()
        decision = timed(counting, intent.action, lambda i=intent: warden.authorize(i))
        elapsed = time.perf_counter() - began
        assert decision.outcome == "allow", decision.reason_code
        (on if counting is not None else off).append(elapsed)
    return statistics.median(on), statistics.median(off)


def _count_cost(metrics: GatewayMetrics, decision_source: Warden, calls: int) -> float:
    """Median seconds of one `GatewayMetrics.count` call, timed in batches of 100."""
    decision = decision_source.authorize(_intent(10**9))
    batches = []
    for _ in range(max(calls // 100, 1)):
        began = time.perf_counter()
        for _ in range(100):
            metrics.count(decision, "payments.transfer", 0.001)
        batches.append((time.perf_counter() - began) / 100)
    return statistics.median(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--memory", action="store_true", help="an in-memory ledger")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        database = ":memory:" if args.memory else str(Path(folder) / "bench.db")
        warden = Warden.open(POLICY, database=database)
        metrics = GatewayMetrics(lambda: warden)
        try:
            _round(warden, metrics, 50, 0)  # warm-up
            ons, offs = [], []
            gc.disable()
            for index in range(args.rounds):
                on, off = _round(warden, metrics, args.calls, (index + 1) * 10 * args.calls)
                ons.append(on)
                offs.append(off)
                print(f"round {index + 1}: on {on * 1e6:8.1f} us  off {off * 1e6:8.1f} us")
            count = _count_cost(metrics, warden, 100_000)
            gc.enable()
        finally:
            warden.close()
    on, off = statistics.median(ons), statistics.median(offs)
    ledger = "memory" if args.memory else "SQLite file"
    print(f"ledger: {ledger}; {args.calls} calls per variant per round, {args.rounds} rounds")
    print(f"authorize, metrics on : {on * 1e6:8.1f} us (median of round medians)")
    print(f"authorize, metrics off: {off * 1e6:8.1f} us")
    print(f"difference: {(on - off) * 1e6:+.1f} us ({(on / off - 1) * 100:+.2f} %)")
    print(
        f"GatewayMetrics.count alone: {count * 1e6:.2f} us "
        f"({count / off * 100:.2f} % of a decision)"
    )


if __name__ == "__main__":
    main()
