"""Faults on real PostgreSQL: a connection killed mid-transaction, and a server restarted.

A killed connection (`pg_terminate_backend`) rolls its transaction back whole: the decision in
it denies `store_unavailable`, nothing of it stays, and the next call works (the pool replaces
the connection). The restart runs on a private cluster this test creates (`initdb` in a
temporary directory, `pg_ctl` on a free port), never on the machine's shared server: while it is
down every decision denies, and once it is back decisions resume by themselves.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from glob import glob
from pathlib import Path
from typing import Any

import psycopg
import pytest

from paywarden import FrozenClock, Warden
from paywarden.adapters.storage.postgres import PostgresStore
from paywarden.adapters.storage.postgres_audit import verify_database
from paywarden.errors import StoreError
from paywarden.testing import example_intent

NOW = "2026-03-10T15:00:00+00:00"
POLICY = """
currency: USD
rules:
  - id: allow-payments
    effect: allow
    actions: ["payments.*"]
budgets:
  - id: daily
    limit: "1000.00"
    currency: USD
    window: day
"""


def _held(pg_connect: Callable[[], Any]) -> int:
    row = pg_connect().execute("SELECT COALESCE(SUM(held_minor), 0) FROM budget_counters")
    return int(row.fetchone()[0])


def _waiting_backend(pg_connect: Callable[[], Any], blocker_pid: int) -> int:
    """The backend waiting on the blocker's lock (the decision under test)."""
    watcher = pg_connect()
    for _ in range(200):
        row = watcher.execute(
            "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
            (blocker_pid,),
        ).fetchone()
        if row is not None:
            return int(row[0])
        time.sleep(0.05)
    pytest.fail("the decision never waited on the audit head")


def test_a_connection_killed_mid_decision_denies_keeps_nothing_and_the_next_call_works(
    pg_database: str, key_secret: str, pg_connect: Callable[[], Any]
) -> None:
    with Warden.open(
        POLICY, database=pg_database, clock=FrozenClock(NOW), busy_timeout_seconds=20
    ) as warden:
        assert warden.authorize(example_intent("10.00")).outcome == "allow"
        blocker = pg_connect()
        blocker.execute("BEGIN")
        blocker.execute("SELECT * FROM audit_head FOR UPDATE")  # the decision waits here
        outcome: list[Any] = []
        racer = threading.Thread(
            target=lambda: outcome.append(warden.authorize(example_intent("20.00")))
        )
        racer.start()
        victim = _waiting_backend(pg_connect, blocker.info.backend_pid)
        # The decision already reserved its budget in this transaction: kill it there.
        pg_connect().execute("SELECT pg_terminate_backend(%s)", (victim,))
        racer.join(timeout=30)
        blocker.execute("ROLLBACK")
        [killed] = outcome
        assert (killed.outcome, killed.reason_code) == ("deny", "store_unavailable")
        assert _held(pg_connect) == 1_000  # the killed decision's reservation is gone
        after = warden.authorize(example_intent("30.00"))
        assert (after.outcome, after.reason_code) == ("allow", "allowed")
        assert warden.verify_audit().ok
    assert _held(pg_connect) == 4_000


def test_a_connection_killed_inside_a_write_leaves_no_partial_state(
    pg_database: str, pg_connect: Callable[[], Any]
) -> None:
    store = PostgresStore(pg_database)
    try:
        with pytest.raises(StoreError), store.write() as tx:
            tx.meta.set("first", "written")
            pid = tx.connection.info.backend_pid
            pg_connect().execute("SELECT pg_terminate_backend(%s)", (pid,))
            tx.meta.set("second", "written")
        with store.read() as tx:
            assert (tx.meta.get("first"), tx.meta.get("second")) == (None, None)
        store.run(lambda tx: tx.meta.set("third", "written"))  # a fresh connection
        with store.read() as tx:
            assert tx.meta.get("third") == "written"
    finally:
        store.close()


# A private cluster, restarted ------------------------------------------------------------------


def _server_binaries() -> Path:
    found = sorted(glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        on_path = shutil.which("pg_ctl")
        if on_path is None:
            if os.environ.get("CI") == "true":
                pytest.fail("no PostgreSQL server binaries (pg_ctl, initdb) to start a cluster")
            pytest.skip("no PostgreSQL server binaries (pg_ctl, initdb)")
        return Path(on_path).parent
    return Path(found[-1]).parent


def _as_server_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the `postgres` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Cluster:
    def __init__(self, directory: Path, port: int) -> None:
        self.bin = _server_binaries()
        self.data = directory / "data"
        self.port = port
        self.log = directory / "server.log"
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def run(self, *args: str) -> None:
        subprocess.run(_as_server_user([*args]), check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self.run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    directory = Path(tempfile.mkdtemp(prefix="paywarden-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    server = Cluster(directory, _free_port())
    server.init()
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already down
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_decisions_deny_while_the_server_is_down_and_resume_when_it_is_back(
    cluster: Cluster, key_secret: str
) -> None:
    database = f"{cluster.url}?schema=pw"
    with Warden.open(
        POLICY, database=database, clock=FrozenClock(NOW), busy_timeout_seconds=1
    ) as warden:
        assert warden.authorize(example_intent("10.00")).outcome == "allow"
        cluster.stop()
        down = [warden.authorize(example_intent("20.00")) for _ in range(3)]
        assert {(d.outcome, d.reason_code) for d in down} <= {
            ("deny", "store_unavailable"),
            ("deny", "store_busy"),
        }
        cluster.start()
        resumed = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            decision = warden.authorize(example_intent("30.00"))
            if decision.outcome == "allow":
                resumed = decision
                break
            assert decision.outcome == "deny"  # never anything but deny while it comes back
            time.sleep(0.2)
        assert resumed is not None, "decisions did not resume after the restart"
        [budget] = warden.budgets()
    assert budget.held_minor == 4_000  # the two allowed decisions, nothing of the denied
    with psycopg.connect(cluster.url) as connection:
        connection.execute("SET search_path TO pw")
        decisions = connection.execute("SELECT count(*) FROM decisions").fetchone()
    assert decisions is not None and decisions[0] == 2  # a denial for a down store is not stored
    assert verify_database(database).ok
