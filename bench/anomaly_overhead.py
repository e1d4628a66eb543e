"""What anomaly facts cost a decision: durable `warden.authorize` with a policy that reads all
three facts (`anomaly.amount_score`, `anomaly.new_recipient`, `anomaly.rate_spike`) against the
same policy without them, in one process, in the same run.

Run: .venv/bin/python -P bench/anomaly_overhead.py [--calls 1000] [--rounds 5] [--agents 20]
     [--memory]

Two Wardens, each on a fresh SQLite file of its own (durable: WAL, synchronous=FULL), or in
memory with `--memory`, take turns call by call, so both see the same ledger size and the same
machine noise. The policies differ only in the conditions of two rules that never match: on,
they read the facts (an `anomaly:` condition and a `when:` on all three); off, the intent only.
Every decision is allowed, and the facts land in the proof trace of each "on" decision.
Intents rotate over `--agents` agents, five recipients and varied amounts. The facts are read
from each agent's stored history (its last 50 allowed amounts, whether it paid the recipient,
its decisions in 5 minutes and in 24 hours), so their cost grows with an agent's decisions in
the last 24 hours. Both variants write each decision's fact row. Prints per-round medians, then
the median over rounds and the overhead of the facts as a share of a decision.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from pathlib import Path

from paywarden import PaymentIntent, Warden

BASE = """
currency: USD
rules:
  - {id: bench, effect: allow, actions: ["payments.*"], amount: {lte: 1000}}
  - {id: extra-1, effect: deny, CONDITION_1}
  - {id: extra-2, effect: deny, CONDITION_2}
budgets:
  - {id: daily, limit: 1000000000000, window: day}
"""
# The same two extra rules, never matching, reading the anomaly facts (on) or not (off).
ON = BASE.replace("CONDITION_1", "anomaly: {amount_score: {gt: 100000}}").replace(
    "CONDITION_2", "when: 'anomaly.new_recipient && anomaly.rate_spike && amount_minor < 0'"
)
OFF = BASE.replace("CONDITION_1", "amount: {gt: 100000}").replace(
    "CONDITION_2", "when: 'amount_minor < 0'"
)


def _intent(number: int, agents: int) -> PaymentIntent:
    return PaymentIntent(
        agent=f"bench-agent-{number % agents}",
        action="payments.transfer",
        amount=f"{1 + number % 97}.{number % 100:02d}",
        currency="USD",
        recipient=f"vendor-{number % 5}.example.com",
        idempotency_key=f"bench-{number}",
    )


def _round(on: Warden, off: Warden, calls: int, start: int, agents: int) -> tuple[float, float]:
    """Median seconds per decision with the facts on and off, taking turns."""
    timings: dict[bool, list[float]] = {True: [], False: []}
    for turn in range(calls * 2):
        facts = turn % 2 == 0
        intent = _intent(start + turn // 2, agents)
        began = time.perf_counter()
        decision = (on if facts else off).authorize(intent)
        timings[facts].append(time.perf_counter() - began)
        assert decision.outcome == "allow", decision.reason
    return statistics.median(timings[True]), statistics.median(timings[False])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--memory", action="store_true", help="in-memory ledgers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        databases = [":memory:"] * 2 if args.memory else [Path(folder) / n for n in ("on", "off")]
        on = Warden.open(ON, database=databases[0])
        off = Warden.open(OFF, database=databases[1])
        assert on.policy is not None and on.policy.anomaly.used
        assert off.policy is not None and not off.policy.anomaly.used
        try:
            _round(on, off, 50, 0, args.agents)  # warm-up
            ons, offs = [], []
            gc.disable()
            for index in range(args.rounds):
                start = (index + 1) * 10 * args.calls
                with_facts, without = _round(on, off, args.calls, start, args.agents)
                ons.append(with_facts)
                offs.append(without)
                print(
                    f"round {index + 1}: on {with_facts * 1e6:8.1f} us  off {without * 1e6:8.1f} us"
                )
            gc.enable()
        finally:
            on.close()
            off.close()
    with_facts, without = statistics.median(ons), statistics.median(offs)
    ledger = "memory" if args.memory else "SQLite file"
    print(f"ledger: {ledger}; {args.calls} calls per variant per round, {args.rounds} rounds,")
    each = args.calls * (args.rounds + 1) // args.agents
    print(f"{args.agents} agents ({each} decisions each at the end)")
    print(f"authorize, anomaly facts on : {with_facts * 1e6:8.1f} us (median of round medians)")
    print(f"authorize, anomaly facts off: {without * 1e6:8.1f} us")
    share = (with_facts / without - 1) * 100
    print(f"difference: {(with_facts - without) * 1e6:+.1f} us ({share:+.2f} %)")


if __name__ == "__main__":
    main()
