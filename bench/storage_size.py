"""Bytes on disk per durable decision, by table and index, at 10k, 100k and 1M decisions.

Run: .venv/bin/python bench/storage_size.py [--counts 10000,100000,1000000] [--verify]

One realistic decision, written again and again through `Warden.authorize` on a SQLite file: a
20-rule treasury policy, two budgets (a per-agent day and a global month), a velocity limit,
an idempotency key, a purpose and three metadata entries; every decision is allowed, so each
one writes everything a decision can write (its audit entry, its index rows, a hold with two
budget charges, a velocity event). The clock is frozen and moves 250 us per decision, so no
hold expires during the run.

At each count the script reads SQLite's `dbstat` table (the pages of every b-tree) and prints
bytes per decision for each table and index, and the whole file. With `--verify` it also times
`verify_file` (one worker, and the default parallel workers) on the file.

`--batch N` commits N decisions per transaction (default 1: one commit each, as in production):
only the speed of the run changes, not what each decision stores. It is for measuring size only.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_eval import NATIVE_POLICY_NO_CEL

# The 20-rule treasury policy of the policy benchmark (without CEL), with budgets and a velocity
# limit added so that every decision writes everything a decision can write.
POLICY = (
    NATIVE_POLICY_NO_CEL
    + """\
budgets:
  - {id: agent-daily, limit: 100000000, window: day, scope: agent}
  - {id: global-monthly, limit: 1000000000, window: month}
velocity:
  - {id: agent-burst, max_count: 100000000, window: 1m, scope: agent}
"""
)

AGENTS = ("treasury-bot", "a1", "procurement-bot")
RECIPIENTS = ("vendor-1", "vendor-2", "payroll.example.com", "billing.stripe.com")
CATEGORIES = ("software", "saas", "cloud")
STEP = timedelta(microseconds=250)


def intent(index: int) -> object:
    from paywarden import PaymentIntent

    agent = AGENTS[index % len(AGENTS)]
    procurement = agent == "procurement-bot"
    return PaymentIntent(
        agent=agent,
        action="payments.payout" if procurement else "payments.transfer",
        amount=f"{10 + index % 190}.{index % 100:02d}",
        currency="USD",
        recipient=RECIPIENTS[index % len(RECIPIENTS)],
        category=CATEGORIES[index % len(CATEGORIES)],
        purpose=f"invoice {index % 9973} for March",
        idempotency_key=f"order-{index:08d}",
        metadata={
            "invoice": f"INV-2026-{index:07d}",
            "cost_center": ("eng-platform", "finance-ops", "procurement")[index % 3],
            "po": f"PO-{7000 + index % 5000}",
        },
    )


def table_bytes(path: Path) -> dict[str, int]:
    """Bytes of pages of every b-tree in the file (tables, indexes), from `dbstat`."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        rows = connection.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
    return {str(name): int(size) for name, size in rows}


@contextmanager
def batched_commits(store: Any, path: Path, batch: int) -> Iterator[None]:
    """Commit `batch` decisions per transaction (size measurement only): the store's `run`,
    `write` and `read` become savepoints of one long transaction on a connection of this
    script's own (synchronous=OFF), so the run is not bound by the disk's fsyncs. What each
    decision writes is unchanged: the same statements through the same repositories."""
    if batch <= 1:
        yield
        return
    from paywarden.adapters.storage.sqlite import SQLiteUnitOfWork

    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA synchronous = OFF")
    pending = [0]

    @contextmanager
    def write() -> Iterator[Any]:
        if pending[0] == 0:
            connection.execute("BEGIN IMMEDIATE")
        connection.execute("SAVEPOINT decision")
        try:
            yield SQLiteUnitOfWork(connection)
        except BaseException:
            connection.execute("ROLLBACK TO decision")
            raise
        connection.execute("RELEASE decision")
        pending[0] += 1
        if pending[0] >= batch:
            connection.execute("COMMIT")
            pending[0] = 0

    @contextmanager
    def read() -> Iterator[Any]:
        yield SQLiteUnitOfWork(connection)

    def run(work: Any) -> Any:
        with write() as unit:
            return work(unit)

    saved = {name: getattr(store, name) for name in ("run", "write", "read")}
    store.run, store.write, store.read = run, write, read
    try:
        yield
    finally:
        if pending[0]:
            connection.execute("COMMIT")
        connection.close()
        for name, method in saved.items():
            setattr(store, name, method)


def measure(path: Path, decisions: int) -> dict[str, object]:
    sizes = table_bytes(path)
    return {
        "decisions": decisions,
        "file_bytes": path.stat().st_size,
        "bytes_per_decision": {name: size / decisions for name, size in sizes.items()},
        "total_per_decision": sum(sizes.values()) / decisions,
    }


def write_decisions(path: Path, counts: list[int], batch: int) -> list[dict[str, object]]:
    from paywarden import FrozenClock, Warden
    from paywarden.testing import SequentialIds

    del SequentialIds  # random ids, as in production (their order decides b-tree fill)
    clock = FrozenClock("2026-03-10T15:00:00+00:00")
    results = []
    written = 0
    with Warden.open(POLICY, database=path, clock=clock, hold_ttl_seconds=30 * 86400) as warden:
        started = time.perf_counter()
        for target in counts:
            with batched_commits(warden.runtime.store, path, batch):
                while written < target:
                    decision = warden.authorize(intent(written))  # type: ignore[arg-type]
                    if decision.outcome != "allow":
                        raise SystemExit(f"decision {written}: {decision.reason_code}")
                    clock.advance(STEP.total_seconds())
                    written += 1
            elapsed = time.perf_counter() - started
            print(f"{written:>9} decisions written in {elapsed:7.1f} s", file=sys.stderr)
            results.append(measure(path, written))
    return results


def time_verify(path: Path, entries: int) -> dict[str, float]:
    from paywarden.adapters.storage.sqlite_audit import verify_file

    timings = {}
    for label, workers in (("one_worker", 1), ("parallel", None)):
        started = time.perf_counter()
        result = verify_file(path, workers=workers)
        elapsed = time.perf_counter() - started
        if not result.ok:
            raise SystemExit(f"verification failed: {result.describe()}")
        timings[f"verify_{label}_entries_per_s"] = result.entries_checked / elapsed
    del entries
    return timings


def report(results: list[dict[str, object]]) -> None:
    names = sorted(
        {name for r in results for name in r["bytes_per_decision"]},  # type: ignore[attr-defined]
        key=lambda n: -results[-1]["bytes_per_decision"].get(n, 0),  # type: ignore[attr-defined]
    )
    header = "table or index".ljust(28) + "".join(f"{r['decisions']:>12,}" for r in results)
    print(header)
    for name in names:
        values = [r["bytes_per_decision"].get(name, 0.0) for r in results]  # type: ignore[attr-defined]
        if max(values) < 1:
            continue
        print(name.ljust(28) + "".join(f"{v:12.1f}" for v in values))
    print(
        "total (all b-trees)".ljust(28)
        + "".join(f"{r['total_per_decision']:12.1f}" for r in results)
    )
    print(
        "file / decisions".ljust(28)
        + "".join(
            f"{r['file_bytes'] / r['decisions']:12.1f}"
            for r in results  # type: ignore[operator]
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="10000,100000,1000000")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--database", type=Path, default=None, help="keep the file here")
    parser.add_argument("--verify", action="store_true", help="also time verification")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    counts = sorted(int(c) for c in args.counts.split(","))
    with tempfile.TemporaryDirectory() as directory:
        path = args.database or Path(directory) / "size.db"
        if path.exists():
            raise SystemExit(f"`{path}` exists; pass a new file")
        results = write_decisions(path, counts, args.batch)
        report(results)
        if args.verify:
            timings = time_verify(path, counts[-1])
            for key, value in timings.items():
                print(f"{key}: {value:,.0f}")
            results[-1].update(timings)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
