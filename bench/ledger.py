"""Durable authorization throughput on SQLite, fairness under overload, where a decision's time
goes, and audit verification speed.

Run: .venv/bin/python bench/ledger.py [--quick] [--runs N] [--compare OTHER/src]

Prints, in one run on the same disk (medians of `--runs` rounds; every ratio is against a
baseline measured in the same round):
- the disk's own limit: one-row fsync'd SQLite commits per second (WAL, synchronous=FULL);
- durable authorizations per second (policy + budget holds + decision + audit entry + commit):
  one thread (sequential), 8, 16 and 32 threads in one process (group commit), and 2 and 4
  processes on one file, with p50, p99 and the slowest call;
- overload: 32 threads in one process, and 4 processes of 8 threads, each thread authorizing
  back to back, with p50, p99 and the slowest call (a fair queue keeps the slowest near p99);
- a profile of one sequential durable decision: fsync (synchronous=FULL minus a measurement-only
  synchronous=OFF run), SQL (time inside sqlite3's execute, COMMIT apart), and Python (the rest);
- verification throughput over a 1,000,000-entry audit log read from SQLite.

`--compare OTHER/src` measures another source tree (an older commit's `src`) alongside, the
two taking turns row by row, to compare before and after in the same run. Every row runs in
fresh processes (spawned), so each sees only its own tree.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    connection.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    start = time.perf_counter()
    for index in range(count):
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO t VALUES (?)", (index,))
        connection.execute("COMMIT")
    elapsed = time.perf_counter() - start
    connection.close()
    return count / elapsed


# Measurement only: a connection that times its statements, and can turn fsync off ----------


class Timing:
    sync_off = False
    sql_ns = 0
    commit_ns = 0
    statements = 0
    commits = 0


class TimedConnection(sqlite3.Connection):
    """Times every statement; with `Timing.sync_off`, turns `synchronous=FULL` into OFF (a
    measurement-only run that splits the fsync from the rest; never a product setting)."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if Timing.sync_off and sql.startswith("PRAGMA synchronous"):
            sql = "PRAGMA synchronous = OFF"
        started = time.perf_counter_ns()
        try:
            return super().execute(sql, parameters)
        finally:
            elapsed = time.perf_counter_ns() - started
            if sql == "COMMIT":
                Timing.commit_ns += elapsed
                Timing.commits += 1
            else:
                Timing.sql_ns += elapsed
                Timing.statements += 1

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        started = time.perf_counter_ns()
        try:
            return super().executemany(sql, parameters)
        finally:
            Timing.sql_ns += time.perf_counter_ns() - started
            Timing.statements += 1


def _instrumented(run: Callable[[], dict[str, float]]) -> dict[str, float]:
    """`run` with every new SQLite connection a TimedConnection."""
    plain = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs.setdefault("factory", TimedConnection)
        return plain(*args, **kwargs)

    sqlite3.connect = connect  # type: ignore[assignment]
    try:
        return run()
    finally:
        sqlite3.connect = plain  # type: ignore[assignment]


# Authorizations ------------------------------------------------------------------------------


def _intent(agent: str) -> Any:
    from paywarden import PaymentIntent

    return PaymentIntent(
        agent=agent,
        action="payments.transfer",
        amount="12.34",
        currency="USD",
        recipient="vendor.example",
    )


def _threads_loop(database: str, threads: int, count: int, prefix: str) -> tuple[list[int], float]:
    """`threads` threads authorizing back to back, `count` decisions in all; the latency of
    every call (ns) and the elapsed seconds."""
    from paywarden import Warden

    with Warden.open(POLICY, database=database, busy_timeout_seconds=60) as warden:
        for index in range(threads):  # warm: each agent's counters exist
            warden.authorize(_intent(f"{prefix}-{index}"))
        latencies: list[int] = []
        lock = threading.Lock()

        def loop(agent: str, calls: int) -> None:
            intent = _intent(agent)
            own = []
            for _ in range(calls):
                started = time.perf_counter_ns()
                decision = warden.authorize(intent)
                own.append(time.perf_counter_ns() - started)
                if decision.outcome != "allow":
                    raise SystemExit(f"unexpected decision {decision.reason_code}")
            with lock:
                latencies.extend(own)

        workers = [
            threading.Thread(target=loop, args=(f"{prefix}-{index}", count // threads))
            for index in range(threads)
        ]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - start
    return latencies, elapsed


def _process(args: tuple[str, int, int, str, float, list[str]]) -> tuple[list[int], float, float]:
    """One process of a run: wait for the common start time, then run its threads."""
    database, threads, count, prefix, start_at, path = args
    sys.path[:0] = path
    from paywarden import Warden  # imported before the clock starts

    Warden.open(POLICY, database=database, busy_timeout_seconds=60).close()
    time.sleep(max(0.0, start_at - time.time()))
    started = time.time()
    latencies, _ = _threads_loop(database, threads, count, prefix)
    return latencies, started, time.time()


def authorize_run(
    database: str, processes: int, threads: int, count: int, path: list[str]
) -> dict[str, float]:
    """`processes` fresh processes of `threads` threads each on one file (process start-up is
    not measured: every worker imports and opens first, then all start together at
    `start_at`; the run lasts from the first start to the last finish)."""
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 2.0 + 0.5 * processes
    share = count // processes
    tasks = [(database, threads, share, f"p{index}", start_at, path) for index in range(processes)]
    with context.Pool(processes) as pool:
        parts = pool.map(_process, tasks)
    latencies = sorted(value for part, _, _ in parts for value in part)
    elapsed = max(end for _, _, end in parts) - min(start for _, start, _ in parts)
    return {
        "per_second": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] / 1e6,
        "p99_ms": latencies[int(len(latencies) * 0.99)] / 1e6,
        "max_ms": latencies[-1] / 1e6,
    }


def _profile_process(args: tuple[str, int, bool, list[str]]) -> dict[str, float]:
    """One thread, instrumented statements: µs per decision in all, in SQL and in COMMIT."""
    database, count, sync_off, path = args
    sys.path[:0] = path
    Timing.sync_off = sync_off

    def run() -> dict[str, float]:
        _threads_loop(database, 1, 50, "warmup")
        Timing.sql_ns = Timing.commit_ns = Timing.statements = Timing.commits = 0
        latencies, elapsed = _threads_loop(database, 1, count, "agent")
        decisions = len(latencies) + 1  # the loop's own warm-up call is counted in Timing too
        return {
            "us_per_decision": elapsed / len(latencies) * 1e6,
            "sql_us": Timing.sql_ns / decisions / 1e3,
            "commit_us": Timing.commit_ns / decisions / 1e3,
            "statements": Timing.statements / decisions,
        }

    return _instrumented(run)


def profile_run(database: str, count: int, sync_off: bool, path: list[str]) -> dict[str, float]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_profile_process, ((database, count, sync_off, path),))


def verify_run(directory: Path, entries: int) -> tuple[float, int]:
    """Write `entries` realistic audit entries straight into a store file, then verify them."""
    from paywarden import Warden
    from paywarden.adapters.storage.sqlite_audit import verify_file
    from paywarden.audit.chain import entry_from_stored, link, stored_row

    database = directory / "audit.db"
    with Warden.open(POLICY, database=database) as warden:
        warden.authorize(_intent("a"))
    connection = sqlite3.connect(database, isolation_level=None)
    head_row = connection.execute(
        "SELECT seq, created_us, kind, ref_id, parent_hash, entry_hash,"
        " body FROM audit_log ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    head = entry_from_stored(head_row)  # the hashed form; rows are written compact
    body = head.body
    connection.execute("BEGIN")
    batch = []
    for index in range(entries - head.seq):
        head = link(head, head.created_us + 1, "decision", f"dec_{index:024x}", body)
        batch.append(stored_row(head))
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


# Rows -----------------------------------------------------------------------------------------

RUNS: list[tuple[str, int, int]] = [  # name, processes, threads per process
    ("1 thread", 1, 1),
    ("8 threads", 1, 8),
    ("16 threads", 1, 16),
    ("32 threads", 1, 32),
    ("2 processes", 2, 1),
    ("4 processes", 4, 1),
    ("4 processes x 8 threads", 4, 8),
]


def one_round(
    directory: Path,
    count: int,
    trees: dict[str, list[str]],
    rows: dict[str, dict[str, list[float]]],
) -> None:
    """Every row once for each tree, the trees taking turns row by row."""

    def add(name: str, tree: str, value: float) -> None:
        rows.setdefault(name, {}).setdefault(tree, []).append(value)

    commits = disk_commits_per_second(directory, count)
    for tree in trees:
        add("disk: one-row fsync'd commits/s", tree, commits)
    rates: dict[tuple[str, str], float] = {}
    for name, processes, threads in RUNS:
        for tree, path in trees.items():
            database = str(directory / f"ledger-{tree}-{name.replace(' ', '-')}.db")
            result = authorize_run(database, processes, threads, count, path)
            rates[tree, name] = result["per_second"]
            for key, value in result.items():
                add(f"authorize {name}: {key}", tree, value)
            add(f"authorize {name}: max / p50", tree, result["max_ms"] / result["p50_ms"])
    for tree in trees:
        sequential = rates[tree, "1 thread"]
        add("ratio: 1 thread / disk commits", tree, sequential / commits)
        for name in ("8 threads", "16 threads", "32 threads", "2 processes", "4 processes"):
            add(f"ratio: {name} / 1 thread", tree, rates[tree, name] / sequential)
    for tree, path in trees.items():
        full = profile_run(str(directory / f"profile-{tree}-full.db"), count, False, path)
        off = profile_run(str(directory / f"profile-{tree}-off.db"), count, True, path)
        for name, value in (
            ("profile: µs per decision (FULL)", full["us_per_decision"]),
            ("profile: µs per decision (sync OFF, measurement only)", off["us_per_decision"]),
            (
                "profile: fsync and its wait, µs (FULL - OFF)",
                full["us_per_decision"] - off["us_per_decision"],
            ),
            ("profile: SQL statements per decision", off["statements"]),
            ("profile: SQL, µs (sync OFF, COMMIT apart)", off["sql_us"]),
            ("profile: COMMIT, µs (sync OFF: page writes)", off["commit_us"]),
            (
                "profile: Python, µs (sync OFF - SQL - COMMIT)",
                off["us_per_decision"] - off["sql_us"] - off["commit_us"],
            ),
        ):
            add(name, tree, value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke run)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions; medians are reported")
    parser.add_argument("--count", type=int, default=0, help="decisions per row")
    parser.add_argument("--compare", default="", help="another tree's src, measured alongside")
    parser.add_argument("--no-verify", action="store_true", help="skip the audit verification")
    options = parser.parse_args()
    here = str(Path(__file__).resolve().parents[1] / "src")
    trees = {"this tree": [here]}
    if options.compare:
        trees["compared"] = [os.path.abspath(options.compare)]
    count = options.count or (320 if options.quick else 2000)
    entries = 50_000 if options.quick else 1_000_000
    rows: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        for run in range(options.runs):
            run_dir = directory / f"run{run}"
            run_dir.mkdir()
            one_round(run_dir, count, trees, rows)
        verified = None if options.no_verify else verify_run(directory, entries)
    print(
        f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, "
        f"{multiprocessing.cpu_count()} cpus, {options.runs} runs (medians), {count} decisions"
        f" per row; trees: " + ", ".join(f"{tree} = {path[0]}" for tree, path in trees.items())
    )
    print(f"{'':<58}" + "".join(f"{tree:>14}" for tree in trees))
    for name, by_tree in rows.items():
        values = "".join(f"{statistics.median(by_tree[tree]):>14,.2f}" for tree in trees)
        print(f"{name:<58}{values}")
    if verified is not None:
        per_second, body_bytes = verified
        label = f"verify {entries:,} entries ({body_bytes} B bodies)/s"
        print(f"{label:<58} {per_second:>13,.0f}")


if __name__ == "__main__":
    main()
