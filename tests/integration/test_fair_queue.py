"""Overload is served in arrival order, within a process and across processes (issue 14, goal 7).

The cross-process queue (`FifoLock`, byte-range locks on `<database>-queue`) is tested with real
processes (`tests/fakes/queue_worker.py`): the order of service against the order of arrival,
mutual exclusion, a holder or a waiter killed with SIGKILL, and many processes contending. The
store's own queue is tested with threads: works are served in the order they were queued, a
full queue is refused at once, a work that cannot start in time is withdrawn and never runs,
and `backlog()` counts what waits (here and in other processes).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from paywarden import FrozenClock, PaymentIntent, Warden
from paywarden.adapters.storage import fifo_lock
from paywarden.adapters.storage.fifo_lock import FifoLock, lock_path
from paywarden.adapters.storage.sqlite import SQLiteStore
from paywarden.errors import StoreBusyError
from paywarden.ports import UnitOfWork

WORKER = Path(__file__).resolve().parents[1] / "fakes" / "queue_worker.py"
DEADLINE_SECONDS = 30.0


# Processes ----------------------------------------------------------------------------------


@contextmanager
def _processes() -> Iterator[Callable[[str, dict[str, Any]], subprocess.Popen[str]]]:
    """Start worker processes; every one still running at the end is killed and reaped."""
    started: list[subprocess.Popen[str]] = []

    def start(mode: str, config: dict[str, Any]) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, str(WORKER), mode, json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=DEADLINE_SECONDS)


def _event(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, f"worker ended without an event: {process.communicate()[1]}"
    return dict(json.loads(line))


def _say(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.write("go\n")
    process.stdin.flush()


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def _finished(process: subprocess.Popen[str]) -> list[dict[str, Any]]:
    out, err = process.communicate(timeout=DEADLINE_SECONDS)
    assert process.returncode == 0, err
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture
def lock_file(tmp_path: Path) -> str:
    return str(tmp_path / "ledger.db-queue")


# The cross-process queue --------------------------------------------------------------------


def test_processes_are_served_in_the_order_they_arrived(lock_file: str, tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    probe = FifoLock(lock_file)
    names = [f"p{index}" for index in range(8)]
    with _processes() as start:
        holder = start("hold", {"lock": lock_file})
        assert _event(holder)["event"] == "held"
        waiters = []
        for arrived, name in enumerate(names, start=1):
            waiters.append(start("queue", {"lock": lock_file, "log": str(log), "name": name}))
            _until(lambda n=arrived: probe.waiting() == n, f"{name} to take its ticket")
        assert not log.exists()  # nobody passed the holder
        _say(holder)
        for waiter in waiters:
            assert _finished(waiter)[-1]["event"] == "served"
    lines = log.read_text().split("\n")[:-1]
    assert lines == [f"{step} {name}" for name in names for step in ("start", "end")]
    assert probe.waiting() == 0
    probe.close()


def test_a_holder_killed_with_sigkill_does_not_wedge_the_queue(lock_file: str) -> None:
    probe = FifoLock(lock_file)
    with _processes() as start:
        holder = start("hold", {"lock": lock_file})
        assert _event(holder)["event"] == "held"
        successor = start("hold", {"lock": lock_file})
        _until(lambda: probe.waiting() == 1, "the successor to queue")
        holder.send_signal(signal.SIGKILL)  # its locks go with it
        holder.wait(timeout=DEADLINE_SECONDS)
        assert _event(successor)["event"] == "held"
        _say(successor)
        assert _event(successor)["event"] == "released"
    assert probe.acquire() >= 0  # the queue still moves for the next comer
    probe.release()
    probe.close()


def test_a_waiter_killed_in_the_middle_neither_wedges_nor_opens_the_queue(
    lock_file: str, tmp_path: Path
) -> None:
    log = tmp_path / "service.log"
    probe = FifoLock(lock_file)
    with _processes() as start:
        holder = start("hold", {"lock": lock_file})
        assert _event(holder)["event"] == "held"
        doomed = start("hold", {"lock": lock_file})
        _until(lambda: probe.waiting() == 1, "the doomed waiter to queue")
        last = start("queue", {"lock": lock_file, "log": str(log), "name": "last"})
        _until(lambda: probe.waiting() == 2, "the last waiter to queue")
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=DEADLINE_SECONDS)
        time.sleep(0.3)
        assert not log.exists()  # the holder still holds: its successor's death opened nothing
        _say(holder)
        assert _finished(last)[-1]["event"] == "served"
    assert log.read_text() == "start last\nend last\n"
    probe.close()


def test_contending_processes_take_turns_in_ticket_order_and_none_starves(
    lock_file: str, tmp_path: Path
) -> None:
    counter = tmp_path / "counter"
    counter.write_text("0")
    config = {
        "lock": lock_file,
        "rounds": 40,
        "counter": str(counter),
        "marker": str(tmp_path / "inside"),
    }
    with _processes() as start:
        workers = [start("contend", config) for _ in range(4)]
        served = [pair for worker in workers for pair in _finished(worker)[-1]["served"]]
    assert len(served) == 160  # every round of every process was served: nobody starved
    in_ticket_order = [number for _ticket, number in sorted(served)]
    assert in_ticket_order == list(range(160))  # the n-th ticket was the n-th served
    assert counter.read_text() == "160"  # and no two holders overlapped (else lost updates)


@pytest.mark.skipif(not fifo_lock._OFD, reason="open-file-description locks (Linux)")
def test_threads_with_their_own_locks_are_served_in_arrival_order(lock_file: str) -> None:
    holder, probe = FifoLock(lock_file), FifoLock(lock_file)
    holder.acquire()
    served: list[int] = []

    def waiter(index: int) -> None:
        lock = FifoLock(lock_file)
        lock.acquire()
        served.append(index)
        lock.release()
        lock.close()

    threads = [threading.Thread(target=waiter, args=(index,)) for index in range(10)]
    for arrived, thread in enumerate(threads, start=1):
        thread.start()
        _until(lambda n=arrived: probe.waiting() == n, f"thread {arrived} to queue")
    holder.release()
    for thread in threads:
        thread.join(timeout=DEADLINE_SECONDS)
    assert served == list(range(10))
    holder.close()
    probe.close()


# The store's queue --------------------------------------------------------------------------


class Gate:
    """A work that holds the writer (and the process's turn) until opened."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()

    def __call__(self, tx: UnitOfWork) -> str:
        self.entered.set()
        assert self.opened.wait(timeout=DEADLINE_SECONDS)
        return "gate"


@contextmanager
def _held(store: SQLiteStore) -> Iterator[Gate]:
    gate = Gate()
    thread = threading.Thread(target=store.run, args=(gate,))
    thread.start()
    assert gate.entered.wait(timeout=DEADLINE_SECONDS)
    try:
        yield gate
    finally:
        gate.opened.set()
        thread.join(timeout=DEADLINE_SECONDS)


def _marker(name: str, served: list[str]) -> Callable[[UnitOfWork], str]:
    def work(tx: UnitOfWork) -> str:
        served.append(name)
        tx.meta.set(f"served:{name}", "yes")
        return name

    return work


@pytest.mark.parametrize("batch_max", [1, 3, 64])
def test_threads_are_served_in_the_order_they_queued(tmp_path: Path, batch_max: int) -> None:
    store = SQLiteStore(tmp_path / "ledger.db", batch_max=batch_max)
    served: list[str] = []
    results: dict[str, str] = {}
    names = [f"t{index}" for index in range(12)]

    def caller(name: str) -> None:
        results[name] = store.run(_marker(name, served))

    with _held(store):
        threads = [threading.Thread(target=caller, args=(name,)) for name in names]
        for queued, thread in enumerate(threads, start=1):
            thread.start()
            _until(lambda n=queued: store.backlog() == n, f"caller {queued} to queue")
    for thread in threads:
        thread.join(timeout=DEADLINE_SECONDS)
    assert served == names
    assert results == {name: name for name in names}
    with store.read() as tx:
        assert all(tx.meta.get(f"served:{name}") == "yes" for name in names)
    assert store.backlog() == 0
    store.close()


def test_a_full_queue_refuses_at_once_and_changes_nothing(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "ledger.db", queue_max=2)
    served: list[str] = []
    with _held(store):
        threads = [
            threading.Thread(target=store.run, args=(_marker(name, served),)) for name in ("a", "b")
        ]
        for queued, thread in enumerate(threads, start=1):
            thread.start()
            _until(lambda n=queued: store.backlog() == n, "the queue to fill")
        started = time.monotonic()
        with pytest.raises(StoreBusyError, match="queue is full"):
            store.run(_marker("refused", served))
        assert time.monotonic() - started < 1.0  # refused, not waited out
    for thread in threads:
        thread.join(timeout=DEADLINE_SECONDS)
    assert served == ["a", "b"]
    with store.read() as tx:
        assert tx.meta.get("served:refused") is None
    store.close()


def test_a_work_that_cannot_start_in_time_is_withdrawn_and_never_runs(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "ledger.db", busy_timeout_seconds=0.3)
    served: list[str] = []
    with _held(store):
        with pytest.raises(StoreBusyError):
            store.run(_marker("late", served))
        assert store.backlog() == 0  # withdrawn from the queue
    assert store.run(_marker("next", served)) == "next"
    assert served == ["next"]
    with store.read() as tx:
        assert tx.meta.get("served:late") is None
    store.close()


def test_processes_sharing_a_store_take_turns_in_arrival_order(tmp_path: Path) -> None:
    database = str(tmp_path / "ledger.db")
    store = SQLiteStore(database)  # the schema, and the probe for backlog()
    with _processes() as start:
        first = start("store_gate", {"database": database})
        assert _event(first)["event"] == "holding"  # its writer holds the turn
        later = []
        for arrived, name in enumerate(["b", "c", "d"], start=1):
            later.append(start("store_mark", {"database": database, "name": name}))
            _until(lambda n=arrived: store.backlog() == n, f"process {name} to queue")
        _say(first)
        assert _finished(first)[-1]["event"] == "released"
        numbers = [_finished(process)[-1]["number"] for process in later]
    assert numbers == [1, 2, 3]  # the gate's work was number 0
    with store.read() as tx:
        assert tx.meta.get("served:gate") == "0"
    assert store.backlog() == 0
    store.close()


def test_backlog_counts_the_works_waiting_in_this_process(tmp_path: Path) -> None:
    policy = "rules:\n  - {id: all, effect: allow, actions: ['payments.*']}\n"
    warden = Warden.open(policy, database=tmp_path / "ledger.db", clock=FrozenClock())
    outcomes: list[str] = []

    def authorize(index: int) -> None:
        intent = PaymentIntent(
            agent=f"agent-{index}",
            action="payments.transfer",
            amount="5.00",
            currency="USD",
            recipient="vendor.example.com",
        )
        outcomes.append(warden.authorize(intent).outcome)

    assert warden.backlog() == 0
    with _held(warden.runtime.store):  # type: ignore[arg-type]
        threads = [threading.Thread(target=authorize, args=(index,)) for index in range(3)]
        for thread in threads:
            thread.start()
        _until(lambda: warden.backlog() == 3, "three decisions to queue")
        assert outcomes == []  # none decided while the writer is held
    for thread in threads:
        thread.join(timeout=DEADLINE_SECONDS)
    assert outcomes == ["allow"] * 3
    assert warden.backlog() == 0
    warden.close()
    with Warden.open(policy) as in_memory:
        assert in_memory.backlog() == 0  # a private in-memory store keeps no queue


def test_the_queue_file_lies_beside_the_database(tmp_path: Path) -> None:
    database = tmp_path / "ledger.db"
    store = SQLiteStore(database)
    store.run(lambda tx: tx.meta.set("k", "v"))
    assert Path(lock_path(str(database))).exists()
    store.close()
