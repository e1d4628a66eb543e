"""A process for the fair-queue and group-commit tests: `python queue_worker.py MODE JSON`.

Every mode prints one JSON line per event and flushes it at once, so the test sees what the
process did up to the moment it ended (or was killed). Modes:

| mode | what the process does |
| --- | --- |
| `hold` | takes the `FifoLock` on `lock`, prints `held`, waits for a line on stdin, releases |
| `queue` | takes the lock, appends `start <name>` and `end <name>` to `log`, releases |
| `contend` | `rounds` times: takes the lock, records its ticket and a shared counter, releases |
| `store_gate` | on the store `database`, runs a work that prints `holding` and waits for stdin |
| `store_mark` | on the store `database`, `run`s one work that records the order it was served in |
| `crash_batch` | `count` threads authorize while the writer is held, then the writer dies at the
  batch's COMMIT (SIGKILL); every caller answered prints `answered` |
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from paywarden import FrozenClock, PaymentIntent, Warden
from paywarden.adapters.storage.fifo_lock import FifoLock
from paywarden.adapters.storage.sqlite import SQLiteStore
from paywarden.ports import UnitOfWork


def emit(event: str, **fields: object) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def hold(config: dict[str, Any]) -> None:
    lock = FifoLock(config["lock"])
    ticket = lock.acquire()
    emit("held", ticket=ticket)
    sys.stdin.readline()
    lock.release()
    emit("released", ticket=ticket)


def queue(config: dict[str, Any]) -> None:
    lock = FifoLock(config["lock"])
    ticket = lock.acquire()
    with open(config["log"], "a", encoding="utf-8") as log:
        log.write(f"start {config['name']}\n")
        log.flush()
        time.sleep(0.01)
        log.write(f"end {config['name']}\n")
    lock.release()
    emit("served", ticket=ticket)


def contend(config: dict[str, Any]) -> None:
    """Each round: the shared counter is read and written back under the lock, and a marker
    file created exclusively on entry proves no two holders overlap."""
    lock = FifoLock(config["lock"])
    served = []
    for _ in range(config["rounds"]):
        ticket = lock.acquire()
        marker = os.open(config["marker"], os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # overlap: fails
        with open(config["counter"], "r+", encoding="utf-8") as counter:
            number = int(counter.read() or "0")
            counter.seek(0)
            counter.write(str(number + 1))
            counter.truncate()
        os.close(marker)
        os.unlink(config["marker"])
        lock.release()
        served.append([ticket, number])
    emit("done", served=served)


def _mark(name: str) -> Callable[[UnitOfWork], int]:
    def work(tx: UnitOfWork) -> int:
        number = int(tx.meta.get("served") or "0")
        tx.meta.set("served", str(number + 1))
        tx.meta.set(f"served:{name}", str(number))
        return number

    return work


def store_gate(config: dict[str, Any]) -> None:
    store = SQLiteStore(config["database"], busy_timeout_seconds=60)

    def gate(tx: UnitOfWork) -> None:
        emit("holding")
        sys.stdin.readline()
        _mark("gate")(tx)

    store.run(gate)
    emit("released")
    store.close()


def store_mark(config: dict[str, Any]) -> None:
    store = SQLiteStore(config["database"], busy_timeout_seconds=60)
    number = store.run(_mark(config["name"]))
    emit("served", number=number)
    store.close()


def crash_batch(config: dict[str, Any]) -> None:
    warden = Warden.open(
        config["policy"],
        database=config["database"],
        clock=FrozenClock(config["now"]),
        busy_timeout_seconds=60,
    )
    store = warden.runtime.store
    count = config["count"]
    entered = threading.Event()

    def gate(tx: UnitOfWork) -> None:
        """Holds the writer until every caller is queued, then arms the kill: the next batch
        (theirs) dies when its COMMIT starts, after all of its works ran."""
        entered.set()
        deadline = time.monotonic() + 30
        while store.backlog() < count and time.monotonic() < deadline:
            time.sleep(0.01)
        tx.meta.set("gate", "committed")
        commits = []

        def trace(statement: str) -> None:
            if statement == "COMMIT":
                commits.append(statement)
                if len(commits) == 2:  # the first is the gate's own batch
                    emit("killing", queued=count)
                    os.kill(os.getpid(), signal.SIGKILL)

        connection = getattr(tx, "connection")  # noqa: B009 - the SQLite unit's connection
        assert isinstance(connection, sqlite3.Connection)
        connection.set_trace_callback(trace)

    gate_thread = threading.Thread(target=store.run, args=(gate,))
    gate_thread.start()
    entered.wait(timeout=30)  # the gate runs alone in its batch; every caller queues behind it

    def authorize(index: int) -> None:
        intent = PaymentIntent(
            agent=f"agent-{index}",
            action="payments.transfer",
            amount="10.00",
            currency="USD",
            recipient="vendor.example.com",
        )
        decision = warden.authorize(intent)
        emit("answered", index=index, outcome=decision.outcome)

    threads = [threading.Thread(target=authorize, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    emit("survived")


MODES = {
    "hold": hold,
    "queue": queue,
    "contend": contend,
    "store_gate": store_gate,
    "store_mark": store_mark,
    "crash_batch": crash_batch,
}

if __name__ == "__main__":
    MODES[sys.argv[1]](json.loads(sys.argv[2]))
