"""One writer per store with group commit: a FIFO queue of units of work, one transaction and
one fsync for each batch.

Callers submit work (`run`: a function of the unit of work) or take a write transaction
themselves (`transaction`: the body of a `with store.write()` block). One writer thread takes
the queue in arrival order: it waits for this process's turn in the cross-process queue
(`FifoLock`), takes up to `batch_max` queued works, opens one `BEGIN IMMEDIATE`, runs each
work inside its own `SAVEPOINT` (a work that raises is rolled back to its savepoint alone and
its exception goes to its caller; the others go on), commits once (`synchronous=FULL`: one
fsync), gives the turn to the next process, and only then answers every caller. Nobody is
answered before the commit that holds its work is on disk.

A `transaction` is handed over: when its turn comes, the writer opens its savepoint, wakes the
caller, which runs its block on the writer's connection while the writer waits, and the block
joins the batch's commit. A work waits at most `timeout_seconds` to start; a work still queued
then is withdrawn and fails with `StoreBusyError` (a work that started always finishes and is
answered with its outcome). The queue holds at most `queue_max` works; past that, `run` fails
at once with `StoreBusyError`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from paywarden.adapters.storage.fifo_lock import FifoLock
from paywarden.errors import StoreBusyError, StoreError

__all__ = ["GroupWriter", "store_error"]

T = TypeVar("T")
U = TypeVar("U")
_log = logging.getLogger("paywarden")

_QUEUED, _STARTED, _WITHDRAWN = 0, 1, 2


def store_error(error: sqlite3.Error, timeout_seconds: float) -> StoreError:
    """The store error a SQLite error means: busy (locked past the timeout) or unavailable."""
    message = str(error)
    if isinstance(error, sqlite3.OperationalError) and ("locked" in message or "busy" in message):
        return StoreBusyError(f"the store stayed locked for {timeout_seconds}s")
    return StoreError(f"store error: {message}")


class _Work(Generic[U, T]):
    """A queued function of the unit of work; `done` is released once it is answered."""

    __slots__ = ("done", "error", "function", "result", "state")

    def __init__(self, function: Callable[[U], T]) -> None:
        self.function = function
        self.state = _QUEUED
        self.result: T | None = None
        self.error: BaseException | None = None
        self.done = threading.Lock()
        self.done.acquire()

    def execute(self, unit: U) -> bool:
        """Run in the writer thread; False when it raised."""
        try:
            self.result = self.function(unit)
        except BaseException as error:  # delivered to the caller, never lost
            self.error = error
            return False
        return True

    def fail(self, failure: StoreError) -> None:
        """The batch's transaction failed: a work that had succeeded is lost with it."""
        if self.error is None:
            self.error = failure

    def answer(self) -> None:
        self.done.release()


class _Handover(_Work[U, None]):
    """A caller's own `with store.write()` block, run on the writer's connection."""

    __slots__ = ("back", "failure", "go", "unit")

    def __init__(self) -> None:
        super().__init__(lambda unit: None)
        self.unit: U | None = None
        self.failure: StoreError | None = None  # the batch failed after the block succeeded
        self.go = threading.Lock()  # released by the writer: the block may run
        self.go.acquire()
        self.back = threading.Lock()  # released by the caller: the block has ended
        self.back.acquire()

    def execute(self, unit: U) -> bool:
        self.unit = unit
        self.go.release()
        self.back.acquire()  # the caller's block runs now; the writer waits for it
        return self.error is None

    def fail(self, failure: StoreError) -> None:
        if self.error is None:
            self.failure = failure

    def answer(self) -> None:
        if self.unit is None:
            self.go.release()  # never handed over: the caller learns why from `failure`
        self.done.release()


class GroupWriter(Generic[U]):
    """The writer thread of one store (see the module's docstring)."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        unit_of: Callable[[sqlite3.Connection], U],
        *,
        turn: FifoLock | None,
        timeout_seconds: float,
        queue_max: int,
        batch_max: int,
    ) -> None:
        self._connect = connect
        self._unit_of = unit_of
        self._turn = turn
        self.timeout_seconds = timeout_seconds
        self.queue_max = queue_max
        self.batch_max = batch_max
        self.pid = os.getpid()
        self._queue: deque[_Work[U, object]] = deque()
        self._mutex = threading.Lock()
        self._wakeup = threading.Condition(self._mutex)
        self._closing = False
        self._local = threading.local()  # `inside`: this thread runs a handed-over block
        self._thread = threading.Thread(target=self._serve, name="paywarden-writer", daemon=True)
        self._thread.start()

    # Callers --------------------------------------------------------------------------------

    def run(self, function: Callable[[U], T]) -> T:
        """Run `function` in the next batch; its result once that batch is on disk."""
        work: _Work[U, T] = _Work(function)
        self._submit(work)
        self._await(work, work.done)
        if work.error is not None:
            error, work.error = work.error, None
            raise error
        return work.result  # type: ignore[return-value]  # set whenever error is None

    @contextmanager
    def transaction(self) -> Iterator[U]:
        """A write transaction whose block runs in this thread, inside the next batch."""
        work: _Handover[U] = _Handover()
        self._submit(work)
        self._await(work, work.go)
        if work.unit is None:  # the batch failed before this block's turn
            work.done.acquire()
            raise work.failure or StoreError("the store failed before this write started")
        self._local.inside = True
        try:
            yield work.unit
        except BaseException as error:
            work.error = error
            raise
        finally:
            self._local.inside = False
            work.back.release()
            work.done.acquire()  # the batch is committed (or rolled back)
        if work.failure is not None:
            raise work.failure  # the commit failed: the block's changes are lost

    def backlog(self) -> int:
        """Works queued in this process and not yet started."""
        return len(self._queue)

    def close(self) -> None:
        """Serve what is queued, then stop the thread."""
        with self._mutex:
            self._closing = True
            self._wakeup.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=self.timeout_seconds + 1.0)

    def _submit(self, work: _Work[U, T]) -> None:
        if getattr(self._local, "inside", False) or threading.current_thread() is self._thread:
            raise StoreError("a write transaction cannot open another write transaction")
        with self._mutex:
            if self._closing:
                raise StoreError("the store is closed")
            if len(self._queue) >= self.queue_max:
                raise StoreBusyError(f"the store's queue is full ({self.queue_max} writes waiting)")
            self._queue.append(work)  # type: ignore[arg-type]
            self._wakeup.notify()

    def _await(self, work: _Work[U, T], signal: threading.Lock) -> None:
        """Wait for `signal`; withdraw the work if it has not started within the timeout."""
        if signal.acquire(timeout=self.timeout_seconds):
            return
        with self._mutex:
            if work.state == _QUEUED:
                work.state = _WITHDRAWN
                self._queue.remove(work)  # type: ignore[arg-type]
                raise StoreBusyError(
                    f"the store stayed busy for {self.timeout_seconds}s (write not started)"
                )
        signal.acquire()  # it started: its outcome is coming

    # The writer thread ----------------------------------------------------------------------

    def _serve(self) -> None:
        connection: sqlite3.Connection | None = None
        unit: U | None = None
        while self._wait_for_work():
            batch: list[_Work[U, object]] = []
            try:
                if connection is None or unit is None:
                    connection = self._connect()
                    unit = self._unit_of(connection)
                with self._turn_taken():
                    batch = self._take_batch()
                    if batch:
                        self._commit(connection, unit, batch)
            except BaseException as error:  # the writer must outlive any failure
                _log.error("store writer failed a batch: %s", error)
                _roll_back(connection)
                failure = error if isinstance(error, StoreError) else StoreError(str(error))
                batch = batch or self._take_batch()
                for work in batch:
                    work.fail(failure)
            for work in batch:
                work.answer()
        if connection is not None:
            connection.close()

    def _wait_for_work(self) -> bool:
        with self._mutex:
            while not self._queue and not self._closing:
                self._wakeup.wait()
            return bool(self._queue)

    @contextmanager
    def _turn_taken(self) -> Iterator[None]:
        """This process's turn among the processes sharing the file (arrival order)."""
        if self._turn is None:
            yield
            return
        try:
            self._turn.acquire()
        except OSError as error:
            raise StoreError(f"the store's queue file failed: {error}") from error
        try:
            yield
        finally:
            try:
                self._turn.release()
            except OSError as error:  # the batch is committed whatever happens here
                _log.error("store writer could not leave the queue file: %s", error)

    def _take_batch(self) -> list[_Work[U, object]]:
        with self._mutex:
            count = min(len(self._queue), self.batch_max)
            batch = [self._queue.popleft() for _ in range(count)]
            for work in batch:
                work.state = _STARTED
        return batch

    def _commit(
        self, connection: sqlite3.Connection, unit: U, batch: list[_Work[U, object]]
    ) -> None:
        """One transaction for the batch, one savepoint per work (none for a lone work)."""
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            for work in batch:
                work.fail(store_error(error, self.timeout_seconds))
            return
        try:
            if len(batch) == 1:
                ok = batch[0].execute(unit)
                connection.execute("COMMIT" if ok else "ROLLBACK")
                return
            for work in batch:
                connection.execute("SAVEPOINT work")
                if work.execute(unit):
                    connection.execute("RELEASE work")
                else:
                    connection.execute("ROLLBACK TO work")
                    connection.execute("RELEASE work")
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            self._abandon(connection, batch, store_error(error, self.timeout_seconds))

    def _abandon(
        self, connection: sqlite3.Connection, batch: list[_Work[U, object]], failure: StoreError
    ) -> None:
        """The transaction failed as a whole (SQLite rolled it back, or the commit failed):
        nothing of the batch is on disk, so every work that had succeeded fails too."""
        _roll_back(connection)
        for work in batch:
            work.fail(failure)


def _roll_back(connection: sqlite3.Connection | None) -> None:
    if connection is not None and connection.in_transaction:
        try:
            connection.execute("ROLLBACK")
        except sqlite3.Error as error:
            _log.error("store writer could not roll back: %s", error)
