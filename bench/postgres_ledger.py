"""Durable authorizations per second on PostgreSQL, against the same loop on SQLite and against
a bare `INSERT ... COMMIT` loop on the same server (the server's own limit).

Run: .venv/bin/python bench/postgres_ledger.py [--url URL] [--seconds S] [--clients 1,4,8]

For each number of client processes (each its own Warden, hence its own connection pool), every
client authorizes back to back for `--seconds`; the figures are the decisions of all clients
over the wall time, and p50 / p99 / max of every call's latency. Every decision is durable when
answered: PostgreSQL with the server's `synchronous_commit` (printed; `on` is what counts),
SQLite with WAL and `synchronous=FULL`. The bare loop is one-row INSERTs, each its own
transaction, from the same number of processes: what the server commits per second at most.
Runs on a fresh schema (`bench_<random>`) dropped at the end; PostgreSQL at --url (default
`postgresql://postgres@127.0.0.1:5432/test`, or PAYWARDEN_TEST_POSTGRES).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("PAYWARDEN_KEY_SECRET", "bench-secret-" + "x" * 40)

# The policy of bench/ledger.py: a per-agent daily budget and one shared monthly budget.
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
DEFAULT_URL = os.environ.get("PAYWARDEN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _authorize_loop(index: int, database: str, seconds: float, barrier: Any, out: Any) -> None:
    from paywarden import Warden
    from paywarden.testing import example_intent

    with Warden.open(POLICY, database=database, busy_timeout_seconds=30) as warden:
        intent = example_intent("12.50", agent=f"bench-{index}")
        warden.authorize(intent)  # warm: connection, policy, statements
        latencies: list[float] = []
        barrier.wait()
        start = time.perf_counter()
        end = start + seconds
        while True:
            began = time.perf_counter()
            if began >= end:
                break
            decision = warden.authorize(intent)
            latencies.append(time.perf_counter() - began)
            if decision.outcome != "allow":
                raise RuntimeError(f"unexpected {decision.reason_code}")
        out.put((latencies, time.perf_counter() - start))


def _insert_loop(index: int, conninfo: str, seconds: float, barrier: Any, out: Any) -> None:
    import psycopg

    from paywarden.adapters.storage.postgres import parse_url

    settings = parse_url(conninfo)
    with psycopg.connect(settings.conninfo, autocommit=True) as connection:
        connection.execute(f'SET search_path TO "{settings.schema}"')
        connection.execute("INSERT INTO bare (client, v) VALUES (%s, 0)", (index,))
        latencies: list[float] = []
        barrier.wait()
        start = time.perf_counter()
        end = start + seconds
        number = 0
        while True:
            began = time.perf_counter()
            if began >= end:
                break
            number += 1
            connection.execute("INSERT INTO bare (client, v) VALUES (%s, %s)", (index, number))
            latencies.append(time.perf_counter() - began)
        out.put((latencies, time.perf_counter() - start))


def _run(target: Any, database: str, clients: int, seconds: float) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(clients)
    out = context.Queue()
    processes = [
        context.Process(target=target, args=(index, database, seconds, barrier, out))
        for index in range(clients)
    ]
    for process in processes:
        process.start()
    results = [out.get(timeout=seconds + 300) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        if process.exitcode != 0:
            raise RuntimeError(f"a client failed (exit {process.exitcode})")
    latencies = sorted(value for part, _ in results for value in part)
    wall = max(elapsed for _, elapsed in results)
    return {
        "per_second": len(latencies) / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "max_ms": latencies[-1] * 1000,
        "calls": len(latencies),
    }


def _line(name: str, clients: int, row: dict[str, float], baseline: float | None) -> str:
    ratio = f"  {row['per_second'] / baseline:5.2f}x" if baseline else ""
    return (
        f"{name:<28} {clients:>2} clients {row['per_second']:>9,.0f}/s  p50 {row['p50_ms']:6.2f} ms"
        f"  p99 {row['p99_ms']:7.2f} ms  max {row['max_ms']:7.1f} ms{ratio}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", default="1,4,8")
    args = parser.parse_args()
    import psycopg

    clients_list = [int(value) for value in args.clients.split(",")]
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    database = f"{args.url}?schema={schema}"
    with psycopg.connect(args.url, autocommit=True) as admin:
        setting = admin.execute("SHOW synchronous_commit").fetchone()
        version = admin.execute("SHOW server_version").fetchone()
        print(
            f"PostgreSQL {version[0] if version else '?'}, synchronous_commit="
            f"{setting[0] if setting else '?'}; {os.cpu_count()} CPUs; {args.seconds:g} s a row"
        )
        from paywarden import Warden

        Warden.open(POLICY, database=database).close()  # the schema, migrated once
        admin.execute(
            f'CREATE TABLE "{schema}".bare (id BIGSERIAL PRIMARY KEY, client INT, v BIGINT)'
        )
    try:
        with tempfile.TemporaryDirectory(prefix="paywarden-bench-") as directory:
            sqlite_file = str(Path(directory) / "ledger.db")
            from paywarden import Warden

            Warden.open(POLICY, database=sqlite_file).close()
            for clients in clients_list:
                bare = _run(_insert_loop, database, clients, args.seconds)
                postgres = _run(_authorize_loop, database, clients, args.seconds)
                sqlite = _run(_authorize_loop, sqlite_file, clients, args.seconds)
                print(_line("bare INSERT..COMMIT (pg)", clients, bare, None))
                print(_line("authorize, PostgreSQL", clients, postgres, bare["per_second"]))
                print(_line("authorize, SQLite", clients, sqlite, None))
                print(
                    f"  PostgreSQL / SQLite: {postgres['per_second'] / sqlite['per_second']:.2f}x"
                )
    finally:
        with psycopg.connect(args.url, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
