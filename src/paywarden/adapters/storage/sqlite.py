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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from paywarden.adapters.storage.sqlite_approvals import ApprovalStatements
from paywarden.adapters.storage.sqlite_audit import AUDIT_COLUMNS as _AUDIT_COLUMNS
from paywarden.adapters.storage.sqlite_keys import KeyStatements
from paywarden.adapters.storage.sqlite_payments import PaymentStatements
from paywarden.adapters.storage.sqlite_schema import MIGRATIONS, SCHEMA_VERSION, statements
from paywarden.adapters.storage.sqlite_workflows import WorkflowStatements
from paywarden.audit.chain import AuditEntry
from paywarden.errors import StoreBusyError, StoreError
from paywarden.ports import (
    ChargeRow,
    CounterRow,
    HoldRow,
    HoldState,
    NewDecision,
    StoredDecision,
)

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
    def write(self) -> Iterator[SQLiteTx]:
        """One write transaction (`BEGIN IMMEDIATE`); commits on success, rolls back on error."""
        with self._writer_guard(), self._translate_errors():
            connection = self._connection()
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield SQLiteTx(connection)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[SQLiteTx]:
        """A consistent read snapshot (`BEGIN DEFERRED`, reads only)."""
        with self._memory_guard(), self._translate_errors():
            connection = self._connection()
            connection.execute("BEGIN")
            try:
                yield SQLiteTx(connection)
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


class SQLiteTx(ApprovalStatements, PaymentStatements, WorkflowStatements, KeyStatements):
    """The statements of one transaction. Every money statement is one atomic SQL statement."""

    __slots__ = ("_db",)

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    # Decisions -------------------------------------------------------------------------------

    def decision_by_key(self, agent: str, idempotency_key: str) -> StoredDecision | None:
        row = self._db.execute(
            "SELECT d.decision_id, d.fingerprint, a.body FROM decisions d"
            " JOIN audit_log a ON a.seq = d.audit_seq"
            " WHERE d.agent = ? AND d.idempotency_key = ?",
            (agent, idempotency_key),
        ).fetchone()
        return StoredDecision(*row) if row else None

    def decision_body(self, decision_id: str) -> str | None:
        row = self._db.execute(
            "SELECT a.body FROM decisions d JOIN audit_log a ON a.seq = d.audit_seq"
            " WHERE d.decision_id = ?",
            (decision_id,),
        ).fetchone()
        return str(row[0]) if row else None

    def insert_decision(self, row: NewDecision) -> None:
        self._db.execute(
            "INSERT INTO decisions (decision_id, created_us, agent, action, amount_minor, currency,"
            " recipient, outcome, reason_code, idempotency_key, fingerprint, hold_id,"
            " policy_version, audit_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.decision_id,
                row.created_us,
                row.agent,
                row.action,
                row.amount_minor,
                row.currency,
                row.recipient,
                row.outcome,
                row.reason_code,
                row.idempotency_key,
                row.fingerprint,
                row.hold_id,
                row.policy_version,
                row.audit_seq,
            ),
        )

    # Budget counters -------------------------------------------------------------------------

    def lock_counter(
        self, budget_id: str, scope_key: str, window_start_us: int, currency: str
    ) -> CounterRow:
        """Create the counter row if needed and read it (the write lock is already held)."""
        self._db.execute(
            "INSERT INTO budget_counters (budget_id, scope_key, window_start_us, currency)"
            " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (budget_id, scope_key, window_start_us, currency),
        )
        row = self._db.execute(
            "SELECT currency, spent_minor, held_minor FROM budget_counters"
            " WHERE budget_id = ? AND scope_key = ? AND window_start_us = ?",
            (budget_id, scope_key, window_start_us),
        ).fetchone()
        return CounterRow(budget_id, scope_key, window_start_us, row[0], row[1], row[2])

    def rolling_usage(self, budget_id: str, scope_key: str, since_us: int) -> tuple[int, int]:
        """(spent, held) of a rolling budget's charges created after `since_us`."""
        row = self._db.execute(
            "SELECT COALESCE(SUM(CASE WHEN state = 'captured'"
            " THEN amount_minor - restored_minor END), 0),"
            " COALESCE(SUM(CASE WHEN state = 'held' THEN amount_minor END), 0)"
            " FROM hold_charges WHERE budget_id = ? AND scope_key = ? AND window_start_us = -1"
            " AND created_us > ?",
            (budget_id, scope_key, since_us),
        ).fetchone()
        return int(row[0]), int(row[1])

    def reserve(
        self,
        budget_id: str,
        scope_key: str,
        window_start_us: int,
        amount_minor: int,
        limit_minor: int,
    ) -> bool:
        """The atomic conditional reservation: true only when the amount still fits."""
        cursor = self._db.execute(
            "UPDATE budget_counters SET held_minor = held_minor + ?"
            " WHERE budget_id = ? AND scope_key = ? AND window_start_us = ?"
            " AND spent_minor + held_minor + ? <= ?",
            (amount_minor, budget_id, scope_key, window_start_us, amount_minor, limit_minor),
        )
        return cursor.rowcount == 1

    def release(self, charge: ChargeRow, captured_minor: int) -> None:
        """Move a charge out of `held`: `captured_minor` becomes spent, the rest is freed."""
        if charge.window_start_us == -1:
            return  # rolling budgets are summed from the charges themselves
        cursor = self._db.execute(
            "UPDATE budget_counters SET held_minor = held_minor - ?, spent_minor = spent_minor + ?"
            " WHERE budget_id = ? AND scope_key = ? AND window_start_us = ? AND held_minor >= ?",
            (
                charge.amount_minor,
                captured_minor,
                charge.budget_id,
                charge.scope_key,
                charge.window_start_us,
                charge.amount_minor,
            ),
        )
        if cursor.rowcount != 1:
            raise StoreError(f"counter for hold `{charge.hold_id}` is missing or inconsistent")

    def counters(self) -> list[CounterRow]:
        rows = self._db.execute(
            "SELECT budget_id, scope_key, window_start_us, currency, spent_minor, held_minor"
            " FROM budget_counters ORDER BY budget_id, scope_key, window_start_us"
        ).fetchall()
        return [CounterRow(*row) for row in rows]

    # Velocity --------------------------------------------------------------------------------

    def velocity_usage(
        self, velocity_id: str, scope_key: str, since_us: int
    ) -> tuple[int, int | None]:
        count = self._db.execute(
            "SELECT COUNT(*) FROM velocity_events"
            " WHERE velocity_id = ? AND scope_key = ? AND created_us > ?",
            (velocity_id, scope_key, since_us),
        ).fetchone()[0]
        last = self._db.execute(
            "SELECT MAX(created_us) FROM velocity_events WHERE velocity_id = ? AND scope_key = ?",
            (velocity_id, scope_key),
        ).fetchone()[0]
        return int(count), (int(last) if last is not None else None)

    def record_velocity(
        self, velocity_id: str, scope_key: str, created_us: int, hold_id: str | None
    ) -> None:
        self._db.execute(
            "INSERT INTO velocity_events (velocity_id, scope_key, created_us, hold_id)"
            " VALUES (?, ?, ?, ?)",
            (velocity_id, scope_key, created_us, hold_id),
        )

    # Holds -----------------------------------------------------------------------------------

    def insert_hold(self, hold: HoldRow, charges: Sequence[ChargeRow]) -> None:
        self._db.execute(
            "INSERT INTO holds (hold_id, decision_id, agent, amount_minor, currency, state,"
            " created_us, expires_us) VALUES (?, ?, ?, ?, ?, 'held', ?, ?)",
            (
                hold.hold_id,
                hold.decision_id,
                hold.agent,
                hold.amount_minor,
                hold.currency,
                hold.created_us,
                hold.expires_us,
            ),
        )
        self._db.executemany(
            "INSERT INTO hold_charges (hold_id, budget_id, scope_key, window_start_us,"
            " amount_minor, created_us, state) VALUES (?, ?, ?, ?, ?, ?, 'held')",
            [
                (
                    c.hold_id,
                    c.budget_id,
                    c.scope_key,
                    c.window_start_us,
                    c.amount_minor,
                    hold.created_us,
                )
                for c in charges
            ],
        )

    def hold(self, hold_id: str) -> HoldRow | None:
        row = self._db.execute(
            "SELECT hold_id, decision_id, agent, amount_minor, currency, state, created_us,"
            " expires_us, resolved_us, captured_minor FROM holds WHERE hold_id = ?",
            (hold_id,),
        ).fetchone()
        return HoldRow(*row) if row else None

    def charges(self, hold_id: str) -> list[ChargeRow]:
        rows = self._db.execute(
            "SELECT hold_id, budget_id, scope_key, window_start_us, amount_minor, restored_minor"
            " FROM hold_charges WHERE hold_id = ? ORDER BY budget_id",
            (hold_id,),
        ).fetchall()
        return [ChargeRow(*row) for row in rows]

    def resolve_hold(
        self, hold_id: str, state: HoldState, now_us: int, captured_minor: int | None
    ) -> bool:
        """Compare-and-set `held` -> `state`; false when the hold was already resolved."""
        cursor = self._db.execute(
            "UPDATE holds SET state = ?, resolved_us = ?, captured_minor = ?"
            " WHERE hold_id = ? AND state = 'held'",
            (state, now_us, captured_minor, hold_id),
        )
        if cursor.rowcount != 1:
            return False
        self._db.execute("UPDATE hold_charges SET state = ? WHERE hold_id = ?", (state, hold_id))
        return True

    def hold_set_expiry(self, hold_id: str, expires_us: int) -> None:
        """Move a held hold's deadline (an approved request, once used, gets the normal TTL)."""
        self._db.execute(
            "UPDATE holds SET expires_us = ? WHERE hold_id = ? AND state = 'held'",
            (expires_us, hold_id),
        )

    def set_charge_amount(self, hold_id: str, budget_id: str, amount_minor: int) -> None:
        self._db.execute(
            "UPDATE hold_charges SET amount_minor = ? WHERE hold_id = ? AND budget_id = ?",
            (amount_minor, hold_id, budget_id),
        )

    def due_holds(self, now_us: int, limit: int) -> list[str]:
        rows = self._db.execute(
            "SELECT hold_id FROM holds WHERE state = 'held' AND expires_us <= ?"
            " ORDER BY expires_us LIMIT ?",
            (now_us, limit),
        ).fetchall()
        return [str(row[0]) for row in rows]

    # Audit -----------------------------------------------------------------------------------

    def audit_head(self) -> AuditEntry | None:
        """The last entry's link fields; its body is left out (appending never needs it)."""
        row = self._db.execute(
            "SELECT seq, created_us, kind, ref_id, parent_hash, entry_hash, ''"
            " FROM audit_log ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return AuditEntry(*row) if row else None

    def audit_insert(self, entry: AuditEntry) -> None:
        self._db.execute(
            f"INSERT INTO audit_log ({_AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                entry.seq,
                entry.created_us,
                entry.kind,
                entry.ref_id,
                entry.parent_hash,
                entry.entry_hash,
                entry.body,
            ),
        )

    def audit_entries(self, after_seq: int, limit: int) -> list[AuditEntry]:
        return read_audit_page(self._db, after_seq, limit)

    def audit_by_ref(self, ref_id: str) -> list[AuditEntry]:
        rows = self._db.execute(
            f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE ref_id = ? ORDER BY seq", (ref_id,)
        ).fetchall()
        return [AuditEntry(*row) for row in rows]

    def meta_get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def meta_set(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


def read_audit_page(connection: sqlite3.Connection, after_seq: int, limit: int) -> list[AuditEntry]:
    rows = connection.execute(
        f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
        (after_seq, limit),
    ).fetchall()
    return [AuditEntry(*row) for row in rows]
