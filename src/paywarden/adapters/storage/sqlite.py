"""The SQLite store: the embedded default, one file, zero setup, safe across processes.

WAL with `synchronous=FULL` (NORMAL can lose committed transactions on power loss), autocommit
mode with an explicit `BEGIN IMMEDIATE` for every write (a deferred transaction that reads and
then writes fails at once under contention, whatever the busy timeout), and a busy timeout
after which the caller is told the store is busy, so the request is denied: fail closed.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from paywarden.adapters.storage.sqlite_approvals import (
    SQLiteApprovals,
    SQLiteGrants,
    SQLiteHalts,
    SQLiteOperators,
)
from paywarden.adapters.storage.sqlite_keys import SQLiteIdempotency, SQLiteKeys
from paywarden.adapters.storage.sqlite_ledger import SQLiteBudgets, SQLiteDecisions, SQLiteHolds
from paywarden.adapters.storage.sqlite_log import (
    SQLiteAudit,
    SQLiteMeta,
    SQLiteOutbox,
    read_audit_page,
)
from paywarden.adapters.storage.sqlite_payments import SQLiteBreakers, SQLitePayments, SQLiteRefunds
from paywarden.adapters.storage.sqlite_schema import MIGRATIONS, SCHEMA_VERSION, statements
from paywarden.adapters.storage.sqlite_workflows import SQLiteDisputes, SQLiteScopes, SQLiteSessions
from paywarden.errors import StoreBusyError, StoreError

__all__ = ["DEFAULT_BUSY_TIMEOUT_SECONDS", "SQLiteStore", "SQLiteUnitOfWork", "read_audit_page"]

DEFAULT_BUSY_TIMEOUT_SECONDS = 5.0


class SQLiteStore:
    """A store in one SQLite file (or `:memory:` for a private, single-process store)."""

    def __init__(
        self, path: str | Path, *, busy_timeout_seconds: float = DEFAULT_BUSY_TIMEOUT_SECONDS
    ) -> None:
        self.path = str(path)
        self.memory = self.path == ":memory:"
        self.busy_timeout_seconds = busy_timeout_seconds
        self._local = threading.local()
        self._memory_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._shared: sqlite3.Connection | None = None
        self._connections: list[sqlite3.Connection] = []
        with self._translate_errors():
            self._migrate(self._connection())

    # Connections ----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
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
        self._connections.append(connection)
        return connection

    def _connection(self) -> sqlite3.Connection:
        if self.memory:
            if self._shared is None:
                self._shared = self._connect()
            return self._shared
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
        return connection

    def close(self) -> None:
        for connection in self._connections:
            connection.close()
        self._connections.clear()
        self._shared = None
        self._local = threading.local()

    # Transactions ---------------------------------------------------------------------------

    @contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as error:
            message = str(error)
            if "locked" in message or "busy" in message:
                raise StoreBusyError(
                    f"the store stayed locked for {self.busy_timeout_seconds}s"
                ) from error
            raise StoreError(f"store error: {message}") from error
        except sqlite3.DatabaseError as error:
            raise StoreError(f"store error: {error}") from error

    @contextmanager
    def write(self) -> Iterator[SQLiteUnitOfWork]:
        """One write transaction (`BEGIN IMMEDIATE`); commits on success, rolls back on error."""
        with self._writer_guard(), self._translate_errors():
            connection = self._connection()
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield SQLiteUnitOfWork(connection)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[SQLiteUnitOfWork]:
        """A consistent read snapshot (`BEGIN DEFERRED`, reads only)."""
        with self._memory_guard(), self._translate_errors():
            connection = self._connection()
            connection.execute("BEGIN")
            try:
                yield SQLiteUnitOfWork(connection)
            finally:
                connection.execute("ROLLBACK")

    @contextmanager
    def _writer_guard(self) -> Iterator[None]:
        """Writers of this process take turns on a lock before `BEGIN IMMEDIATE`: threads then
        wait in line instead of in SQLite's sleeping busy handler (which serves them out of
        order, with a long tail). Other processes still meet at SQLite's own lock."""
        if self.memory:
            with self._memory_guard():
                yield
            return
        if not self._write_lock.acquire(timeout=self.busy_timeout_seconds):
            raise StoreBusyError(f"the store stayed locked for {self.busy_timeout_seconds}s")
        try:
            yield
        finally:
            self._write_lock.release()

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
    Every money statement is one atomic SQL statement."""

    __slots__ = (
        "approvals",
        "audit",
        "breakers",
        "budgets",
        "decisions",
        "disputes",
        "grants",
        "halts",
        "holds",
        "idempotency",
        "keys",
        "meta",
        "operators",
        "outbox",
        "payments",
        "refunds",
        "scopes",
        "sessions",
    )

    def __init__(self, connection: sqlite3.Connection) -> None:
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
