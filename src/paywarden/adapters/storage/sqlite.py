"""The SQLite store: the embedded default, one file, zero setup, safe across processes.

WAL with `synchronous=FULL` (NORMAL can lose committed transactions on power loss), autocommit
mode with an explicit `BEGIN IMMEDIATE` for every write (a deferred transaction that reads and
then writes fails at once under contention, whatever the busy timeout), and a busy timeout
after which the caller is told the store is busy, so the request is denied: fail closed.

Writes to a file go through one writer thread per store with group commit
(`sqlite_writer.GroupWriter`): callers queue in arrival order, and the writer commits a batch
of their works in one transaction (one savepoint each) and one fsync, taking its turn for each
batch in a queue shared with the other processes on the file (`fifo_lock.FifoLock`, in the
file `<database>-queue`). Reads use one connection per thread and never wait for writers.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from paywarden.adapters.storage.fifo_lock import FifoLock, lock_path
from paywarden.adapters.storage.sqlite_analytics import SQLiteFacts
from paywarden.adapters.storage.sqlite_approvals import (
    SQLiteApprovals,
    SQLiteGrants,
    SQLiteHalts,
    SQLiteOperators,
)
from paywarden.adapters.storage.sqlite_goals import SQLiteGoalRuns
from paywarden.adapters.storage.sqlite_keys import SQLiteIdempotency, SQLiteKeys
from paywarden.adapters.storage.sqlite_ledger import SQLiteBudgets, SQLiteDecisions, SQLiteHolds
from paywarden.adapters.storage.sqlite_log import (
    SQLiteAudit,
    SQLiteMeta,
    SQLiteOutbox,
    read_audit_page,
)
from paywarden.adapters.storage.sqlite_mandates import SQLiteMandates
from paywarden.adapters.storage.sqlite_observe import SQLiteAlerts, SQLiteGauges
from paywarden.adapters.storage.sqlite_payments import SQLiteBreakers, SQLitePayments, SQLiteRefunds
from paywarden.adapters.storage.sqlite_schema import MIGRATIONS, SCHEMA_VERSION, statements
from paywarden.adapters.storage.sqlite_workflows import SQLiteDisputes, SQLiteScopes, SQLiteSessions
from paywarden.adapters.storage.sqlite_writer import GroupWriter, store_error
from paywarden.errors import InvalidInputError, StoreBusyError, StoreError
from paywarden.ports import UnitOfWork

__all__ = [
    "DEFAULT_BATCH_MAX",
    "DEFAULT_BUSY_TIMEOUT_SECONDS",
    "DEFAULT_QUEUE_MAX",
    "SQLiteStore",
    "SQLiteUnitOfWork",
    "read_audit_page",
]

DEFAULT_BUSY_TIMEOUT_SECONDS = 5.0
DEFAULT_QUEUE_MAX = 1024  # writes queued in one process before `run` is refused at once
DEFAULT_BATCH_MAX = 64  # works in one transaction (one fsync)

T = TypeVar("T")


class SQLiteStore:
    """A store in one SQLite file (or `:memory:` for a private, single-process store)."""

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout_seconds: float = DEFAULT_BUSY_TIMEOUT_SECONDS,
        queue_max: int = DEFAULT_QUEUE_MAX,
        batch_max: int = DEFAULT_BATCH_MAX,
    ) -> None:
        for name, value in (("queue_max", queue_max), ("batch_max", batch_max)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"`{name}` must be a whole number of at least 1")
        self.path = str(path)
        self.memory = self.path == ":memory:"
        self.busy_timeout_seconds = busy_timeout_seconds
        self.queue_max = queue_max
        self.batch_max = batch_max
        self._local = threading.local()
        self._memory_lock = threading.Lock()
        self._writer_lock = threading.RLock()
        self._writer: GroupWriter[SQLiteUnitOfWork] | None = None
        self._turn: FifoLock | None = None
        self._shared: sqlite3.Connection | None = None
        self._shared_unit: SQLiteUnitOfWork | None = None
        self._connections: list[sqlite3.Connection] = []
        with self._translate_errors():
            self._migrate(self._connection())

    # Connections ----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        connection = self._open()
        self._connections.append(connection)
        return connection

    def _open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout_seconds,
            isolation_level=None,  # autocommit: transactions are explicit BEGIN IMMEDIATE
            # Each thread uses only its own connection; closing them all from one thread at
            # shutdown is the one cross-thread call, and SQLite's serialized mode allows it.
            check_same_thread=False,
        )
        connection.execute("PRAGMA foreign_keys = ON")
        if not self.memory:
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"cannot enable WAL on `{self.path}` (journal mode {mode})")
        connection.execute("PRAGMA synchronous = FULL")
        return connection

    def _connection(self) -> sqlite3.Connection:
        return self._unit().connection

    def _unit(self) -> SQLiteUnitOfWork:
        """This thread's unit of work (the shared one in memory), made once per connection."""
        if self.memory:
            if self._shared_unit is None:
                self._shared = self._connect()
                self._shared_unit = SQLiteUnitOfWork(self._shared)
            return self._shared_unit
        unit: SQLiteUnitOfWork | None = getattr(self._local, "unit", None)
        if unit is None:
            unit = SQLiteUnitOfWork(self._connect())
            self._local.unit = unit
        return unit

    def _group(self) -> GroupWriter[SQLiteUnitOfWork]:
        """The writer thread of this store in this process, started on first use."""
        writer = self._writer
        if writer is not None and writer.pid == os.getpid():
            return writer
        with self._writer_lock:
            if self._writer is None or self._writer.pid != os.getpid():
                self._writer = GroupWriter(
                    self._open,
                    SQLiteUnitOfWork,
                    turn=self._queue_file(fresh=self._writer is not None),  # forked: reopen
                    timeout_seconds=self.busy_timeout_seconds,
                    queue_max=self.queue_max,
                    batch_max=self.batch_max,
                )
            return self._writer

    def _queue_file(self, *, fresh: bool = False) -> FifoLock:
        """The queue shared with other processes (`<database>-queue`), opened once."""
        with self._writer_lock:
            if self._turn is None or fresh:
                try:
                    self._turn = FifoLock(lock_path(self.path))
                except OSError as error:
                    raise StoreError(f"cannot open the store's queue file: {error}") from error
            return self._turn

    def backlog(self) -> int:
        """Writes waiting: works queued in this process, plus the other processes waiting for
        their turn on this file. An in-memory store keeps no queue (0)."""
        if self.memory:
            return 0
        writer = self._writer
        queued = writer.backlog() if writer is not None else 0
        try:
            return queued + self._queue_file().waiting()
        except (OSError, StoreError):
            return queued

    def close(self) -> None:
        """Finish the queued writes, stop the writer, close every connection."""
        with self._writer_lock:
            writer, self._writer = self._writer, None
            turn, self._turn = self._turn, None
        if writer is not None:
            writer.close()
        if turn is not None:
            turn.close()
        for connection in self._connections:
            connection.close()
        self._connections.clear()
        self._shared = None
        self._shared_unit = None
        self._local = threading.local()

    # Transactions ---------------------------------------------------------------------------

    @contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as error:
            raise store_error(error, self.busy_timeout_seconds) from error

    def run(self, work: Callable[[UnitOfWork], T]) -> T:
        """`work` in a write transaction of its own (a savepoint in the writer's next batch);
        its result once the batch is committed and on disk. An exception of `work` rolls back
        its changes alone and is raised here."""
        if self.memory:
            with self.write() as tx:
                return work(tx)
        with self._translate_errors():
            return self._group().run(work)

    @contextmanager
    def write(self) -> Iterator[SQLiteUnitOfWork]:
        """One write transaction; commits on success, rolls back on error. Its block runs in
        the caller's thread, in its turn among the writer's batches (see `run`)."""
        if self.memory:
            with self._memory_guard(), self._translate_errors():
                unit = self._unit()
                unit.connection.execute("BEGIN IMMEDIATE")
                try:
                    yield unit
                except BaseException:
                    unit.connection.execute("ROLLBACK")
                    raise
                unit.connection.execute("COMMIT")
            return
        with self._translate_errors(), self._group().transaction() as unit:
            yield unit

    @contextmanager
    def read(self) -> Iterator[SQLiteUnitOfWork]:
        """A consistent read snapshot (`BEGIN DEFERRED`, reads only)."""
        with self._memory_guard(), self._translate_errors():
            unit = self._unit()
            unit.connection.execute("BEGIN")
            try:
                yield unit
            finally:
                unit.connection.execute("ROLLBACK")

    @contextmanager
    def _memory_guard(self) -> Iterator[None]:
        if not self.memory:
            yield
            return
        if not self._memory_lock.acquire(timeout=self.busy_timeout_seconds):
            raise StoreBusyError(f"the store stayed locked for {self.busy_timeout_seconds}s")
        try:
            yield
        finally:
            self._memory_lock.release()

    def _migrate(self, connection: sqlite3.Connection) -> None:
        """Bring the schema up to date; a store already at this version is only read (so
        opening one never waits for the write lock that another process holds)."""
        try:
            row = connection.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        except sqlite3.OperationalError:
            row = None  # no such table yet: a new file
        if row is not None and row[0] == SCHEMA_VERSION:
            return
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, applied_us INTEGER NOT NULL) STRICT"
            )
            current = connection.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"
            ).fetchone()[0]
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"`{self.path}` has schema version {current}, newer than this paywarden "
                    f"({SCHEMA_VERSION}); refusing to open it"
                )
            for version, sql in MIGRATIONS:
                if version > current:
                    for statement in statements(sql):
                        connection.execute(statement)
                    connection.execute(
                        "INSERT INTO schema_migrations (version, applied_us) VALUES (?, ?)",
                        (version, time.time_ns() // 1000),
                    )
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")


class SQLiteUnitOfWork:
    """One transaction's repositories, all on the transaction's connection (see ports.py).
    Every money statement is one atomic SQL statement. The repositories hold no state but the
    connection, so one unit serves every transaction of its connection."""

    __slots__ = (
        "alerts",
        "approvals",
        "connection",
        "audit",
        "breakers",
        "budgets",
        "decisions",
        "disputes",
        "facts",
        "gauges",
        "goals",
        "grants",
        "halts",
        "holds",
        "idempotency",
        "keys",
        "mandates",
        "meta",
        "operators",
        "outbox",
        "payments",
        "refunds",
        "scopes",
        "sessions",
    )

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self.decisions = SQLiteDecisions(connection)
        self.budgets = SQLiteBudgets(connection)
        self.holds = SQLiteHolds(connection)
        self.audit = SQLiteAudit(connection)
        self.meta = SQLiteMeta(connection)
        self.operators = SQLiteOperators(connection)
        self.approvals = SQLiteApprovals(connection)
        self.grants = SQLiteGrants(connection)
        self.halts = SQLiteHalts(connection)
        self.payments = SQLitePayments(connection)
        self.refunds = SQLiteRefunds(connection)
        self.breakers = SQLiteBreakers(connection)
        self.sessions = SQLiteSessions(connection)
        self.scopes = SQLiteScopes(connection)
        self.disputes = SQLiteDisputes(connection)
        self.keys = SQLiteKeys(connection)
        self.idempotency = SQLiteIdempotency(connection)
        self.outbox = SQLiteOutbox(connection)
        self.facts = SQLiteFacts(connection)
        self.alerts = SQLiteAlerts(connection)
        self.gauges = SQLiteGauges(connection)
        self.goals = SQLiteGoalRuns(connection)
        self.mandates = SQLiteMandates(connection)
