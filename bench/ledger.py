"""Durable authorization throughput on SQLite, audit append cost, and audit verification speed.

Run: .venv/bin/python bench/ledger.py [--quick]

Prints, in one run on the same disk:
- the disk's own limit: empty fsync'd SQLite commits per second (WAL, synchronous=FULL);
- durable authorizations per second (policy + budget hold + decision + audit entry + commit)
  in one process and in four processes on one file, with p50 and p99 latency;
- the same single-process run with the audit append stubbed out, to show what the audit costs;
- verification throughput over a 1,000,000-entry audit log read from SQLite.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

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


def disk_commits_per_second(directory: Path, count: int) -> float:
    path = directory / "fsync.db"
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("CREATE TABLE t (x INTEGER)")
    start = time.perf_counter()
    for index in range(count):
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO t VALUES (?)", (index,))
        connection.execute("COMMIT")
    elapsed = time.perf_counter() - start
    connection.close()
    return count / elapsed


def _authorize_loop(database: str, count: int, agent: str, stub_audit: bool) -> list[int]:
    from paywarden.audit import records

    original = records.append
    if stub_audit:
        _stub_audit()
    try:
        return _timed_authorizations(database, count, agent)
    finally:
        records.append = original


def _timed_authorizations(database: str, count: int, agent: str) -> list[int]:
    from paywarden import PaymentIntent, Warden

    latencies = []
    with Warden.open(POLICY, database=database, busy_timeout_seconds=30) as warden:
        intent = PaymentIntent(
            agent=agent,
            action="payments.transfer",
            amount="12.34",
            currency="USD",
            recipient="vendor.example",
        )
        for _ in range(count):
            started = time.perf_counter_ns()
            decision = warden.authorize(intent)
            latencies.append(time.perf_counter_ns() - started)
            if decision.outcome != "allow":
                raise SystemExit(f"unexpected decision {decision.reason_code}")
    return latencies


def _stub_audit() -> None:
    """Benchmark only: replace the audit append with a no-op to measure what it costs."""
    from paywarden.audit import records
    from paywarden.audit.chain import AuditEntry

    def append(tx: object, now_us: int, kind: str, ref_id: str, body: object) -> AuditEntry:
        return AuditEntry(0, now_us, kind, ref_id, "00" * 32, "00" * 32, "")

    records.append = append  # type: ignore[assignment]


def _worker(args: tuple[str, int, str, float]) -> tuple[list[int], float, float]:
    """One of several processes: wait for the common start time, then time its own loop."""
    database, count, agent, start_at = args
    from paywarden import Warden  # imported before the clock starts

    Warden.open(POLICY, database=database, busy_timeout_seconds=30).close()
    time.sleep(max(0.0, start_at - time.time()))
    started = time.time()
    latencies = _authorize_loop(database, count, agent, stub_audit=False)
    return latencies, started, time.time()


def authorize_run(
    directory: Path, processes: int, count: int, stub_audit: bool = False
) -> dict[str, float]:
    database = str(directory / f"ledger-{processes}-{int(stub_audit)}.db")
    _authorize_loop(database, 10, "warmup", stub_audit)  # creates the schema
    if processes == 1:
        start = time.perf_counter()
        latencies = _authorize_loop(database, count, "agent-0", stub_audit)
        elapsed = time.perf_counter() - start
    else:
        # Process start-up is not measured: every worker imports and opens first, then all
        # start together at `start_at`; the run lasts from the first start to the last finish.
        context = multiprocessing.get_context("spawn")
        start_at = time.time() + 3.0
        tasks = [(database, count // processes, f"agent-{i}", start_at) for i in range(processes)]
        with context.Pool(processes) as pool:
            parts = pool.map(_worker, tasks)
        latencies = [value for part, _, _ in parts for value in part]
        elapsed = max(end for _, _, end in parts) - min(start for _, start, _ in parts)
    latencies.sort()
    return {
        "per_second": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] / 1e6,
        "p99_ms": latencies[int(len(latencies) * 0.99)] / 1e6,
    }


def verify_run(directory: Path, entries: int) -> tuple[float, int]:
    """Write `entries` realistic audit entries straight into a store file, then verify them."""
    from paywarden import PaymentIntent, Warden
    from paywarden.adapters.storage.sqlite_audit import verify_file
    from paywarden.audit.chain import link

    database = directory / "audit.db"
    with Warden.open(POLICY, database=database) as warden:
        warden.authorize(
            PaymentIntent(
                agent="a",
                action="payments.transfer",
                amount="1",
                currency="USD",
                recipient="vendor.example",
            )
        )
    connection = sqlite3.connect(database, isolation_level=None)
    head_row = connection.execute(
        "SELECT seq, created_us, kind, ref_id, parent_hash, entry_hash,"
        " body FROM audit_log ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    from paywarden.audit.chain import AuditEntry

    head = AuditEntry(*head_row)
    body = head.body
    connection.execute("BEGIN")
    batch = []
    for index in range(entries - head.seq):
        head = link(head, head.created_us + 1, "decision", f"dec_{index:024x}", body)
        batch.append(
            (
                head.seq,
                head.created_us,
                head.kind,
                head.ref_id,
                head.parent_hash,
                head.entry_hash,
                head.body,
            )
        )
        if len(batch) == 50_000:
            connection.executemany("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
            batch.clear()
    connection.executemany("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
    connection.execute("COMMIT")
    connection.close()
    start = time.perf_counter()
    result = verify_file(database)
    elapsed = time.perf_counter() - start
    if not result.ok or result.entries_checked != entries:
        raise SystemExit(f"verification failed: {result.describe()}")
    return entries / elapsed, len(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke run)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions; medians are reported")
    options = parser.parse_args()
    count = 500 if options.quick else 5000
    entries = 50_000 if options.quick else 1_000_000
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        for run in range(options.runs):
            run_dir = directory / f"run{run}"
            run_dir.mkdir()
            rows.setdefault("disk: fsync'd commits/s", []).append(
                disk_commits_per_second(run_dir, count)
            )
            for name, processes, stub in (
                ("1 process", 1, False),
                ("1 process, audit stubbed", 1, True),
                ("4 processes", 4, False),
            ):
                result = authorize_run(run_dir, processes, count, stub)
                for key, value in result.items():
                    rows.setdefault(f"authorize {name}: {key}", []).append(value)
        per_second, body_bytes = verify_run(directory, entries)
    print(
        f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, "
        f"{multiprocessing.cpu_count()} cpus, {options.runs} runs (medians)"
    )
    for name, values in rows.items():
        print(f"{name:<48} {statistics.median(values):>12,.2f}")
    with_audit = statistics.median(rows["authorize 1 process: per_second"])
    without = statistics.median(rows["authorize 1 process, audit stubbed: per_second"])
    print(f"{'audit append cost (1 process)':<48} {100 * (1 - with_audit / without):>11.1f}%")
    print(
        f"{'verify ' + format(entries, ',') + ' entries (' + str(body_bytes) + ' B bodies)/s':<48}"
        f" {per_second:>12,.0f}"
    )


if __name__ == "__main__":
    main()
