"""What observing decisions costs: `warden.authorize` with Prometheus metrics attached
(`paywarden.metrics.WardenMetrics.attach`, the gateway's way) against the same Warden with
none, in one process, in the same run; and the check of alert rules that a decision runs in its
transaction (`actions.alerts.after_decision`, with a `budget_threshold` and a
`large_transaction` rule that do not fire, the common case), timed alone.

Run: .venv/bin/python -P bench/metrics_overhead.py [--calls 2000] [--rounds 5] [--memory]

Each Warden decides on a fresh SQLite file (durable: WAL, synchronous=FULL), or in memory with
`--memory`, with one allow rule and a daily budget, a new intent each call. On and off take
turns call by call (both see the same ledger size and the same machine noise), with the garbage
collector off during timing and 50 untimed warm-up turns. Also timed alone, in batches:
`WardenMetrics.count` (the counter's label lookup and increment and the histogram's
observation), which with the timer is the whole difference between on and off, and the alert
check (two Wardens on two files differ by more than the check costs, so it is not compared end
to end). Prints per-round medians, the median over rounds, and each overhead as a share of a
decision.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from paywarden import PaymentIntent, Warden
from paywarden.actions import alerts
from paywarden.metrics import WardenMetrics

POLICY = """
currency: USD
rules:
  - {id: bench, effect: allow, actions: ["payments.*"], amount: {lte: 1000}}
budgets:
  - {id: daily, limit: 1000000000000, window: day}
"""
ALERTS = """alerts:
  - {id: budget-80, kind: budget_threshold, percent: [80, 95], gates: true}
  - {id: big, kind: large_transaction, amount: 5000}
"""
VARIANTS = ("off", "metrics")


def _intent(number: int) -> PaymentIntent:
    return PaymentIntent(
        agent="bench-agent",
        action="payments.transfer",
        amount="1.00",
        currency="USD",
        recipient="vendor.example.com",
        idempotency_key=f"bench-{number}",
    )


def _round(
    wardens: dict[str, Warden],
    attach: Callable[[Warden], Callable[[], None]],
    calls: int,
    start: int,
) -> dict[str, float]:
    """Median seconds per decision of each variant, taking turns."""
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    number = start
    for turn in range(calls * len(VARIANTS)):
        variant = VARIANTS[turn % len(VARIANTS)]
        warden = wardens[variant]
        detach = attach(warden) if variant != "off" else None
        intent = _intent(number)
        number += 1
        began = time.perf_counter()
        decision = warden.authorize(intent)
        elapsed = time.perf_counter() - began
        if detach is not None:
            detach()
        assert decision.outcome == "allow", decision.reason_code
        times[variant].append(elapsed)
    return {variant: statistics.median(values) for variant, values in times.items()}


def _count_cost(metrics: WardenMetrics, decision_source: Warden, calls: int) -> float:
    """Median seconds of one `WardenMetrics.count` call, timed in batches of 100."""
    decision = decision_source.authorize(_intent(10**9))
    batches = []
    for _ in range(max(calls // 100, 1)):
        began = time.perf_counter()
        for _ in range(100):
            metrics.count(decision, "payments.transfer", 0.001)
        batches.append((time.perf_counter() - began) / 100)
    return statistics.median(batches)


def _alert_check_cost(warden: Warden, calls: int) -> float:
    """Median seconds of one `alerts.after_decision` (rules that do not fire), in batches of
    100, inside one write transaction (as in a decision)."""
    intent = _intent(10**9 + 1)
    decision = warden.authorize(intent)
    runtime, policy = warden.runtime, warden.policy
    assert policy is not None and policy.alerts.rules
    batches = []
    with runtime.store.write() as tx:
        for _ in range(max(calls // 100, 1)):
            began = time.perf_counter()
            for _ in range(100):
                alerts.after_decision(runtime, tx, policy, intent, decision, 0)
            batches.append((time.perf_counter() - began) / 100)
        assert tx.alerts.list_recent(None, 1) == []  # nothing fired: the common case
    return statistics.median(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--memory", action="store_true", help="an in-memory ledger")
    args = parser.parse_args()
    rounds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as folder:

        def database(name: str) -> str:
            return ":memory:" if args.memory else str(Path(folder) / f"{name}.db")

        plain = Warden.open(POLICY, database=database("plain"))
        alerting = Warden.open(POLICY + ALERTS, database=database("alerts"))
        wardens = {"off": plain, "metrics": plain}
        metrics = WardenMetrics(lambda: plain)
        try:
            _round(wardens, metrics.attach, 50, 0)  # warm-up
            gc.disable()
            for index in range(args.rounds):
                medians = _round(wardens, metrics.attach, args.calls, (index + 1) * 10 * args.calls)
                rounds.append(medians)
                shown = "  ".join(f"{v} {medians[v] * 1e6:8.1f} us" for v in VARIANTS)
                print(f"round {index + 1}: {shown}")
            count = _count_cost(metrics, plain, 100_000)
            check = _alert_check_cost(alerting, 20_000)
            gc.enable()
        finally:
            plain.close()
            alerting.close()
    result = {v: statistics.median(r[v] for r in rounds) for v in VARIANTS}
    off = result["off"]
    ledger = "memory" if args.memory else "SQLite file"
    print(f"ledger: {ledger}; {args.calls} calls per variant per round, {args.rounds} rounds")
    for variant in VARIANTS:
        share = (result[variant] / off - 1) * 100
        print(f"authorize, {variant:<15}: {result[variant] * 1e6:8.1f} us  ({share:+.2f} %)")
    for name, cost in (("WardenMetrics.count", count), ("alert rules check", check)):
        print(f"{name} alone: {cost * 1e6:.2f} us ({cost / off * 100:.2f} % of a decision)")


if __name__ == "__main__":
    main()
