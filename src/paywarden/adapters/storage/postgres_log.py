"""PostgreSQL repositories of the append-only audit log, the shared settings and the outbox.

One chain for every process on every host. `audit_head` is a one-row table holding the last
entry's link fields; in a write transaction `get_head` locks it (`SELECT ... FOR UPDATE`), so
appenders take turns from that point to their commit. The use cases read the head as their
last step before commit (`audit.records.append`, after the decision itself), so the lock is
held only for the append and the commit. `append` inserts the entry and moves the head in one
statement. Entries are stored as on SQLite (`chain.stored_row`: raw 32-byte hashes, the body
compressed) and decoded back on every read (`chain.entry_from_stored`).
"""

from __future__ import annotations

from typing import Any

from psycopg import Connection, Pipeline

from paywarden.adapters.storage.postgres_rows import (
    LostUpdateError,
    PostgresRepository,
    columns,
    fetch_all,
)
from paywarden.audit.chain import AuditEntry, entry_from_stored, stored_hash_text, stored_row
from paywarden.ports import OutboxRow

AUDIT_COLUMNS = "seq, created_us, kind, ref_id, parent_hash, entry_hash, body"
_HEAD = "SELECT seq, created_us, kind, ref_id, parent_hash, entry_hash FROM audit_head"
# The entry, and the head moved to it unless a later entry is already there.
_APPEND = (
    "WITH entry AS (INSERT INTO audit_log (" + AUDIT_COLUMNS + ")"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
    " RETURNING seq, created_us, kind, ref_id, parent_hash, entry_hash)"
    " UPDATE audit_head SET seq = entry.seq, created_us = entry.created_us, kind = entry.kind,"
    " ref_id = entry.ref_id, parent_hash = entry.parent_hash, entry_hash = entry.entry_hash"
    " FROM entry WHERE audit_head.seq < entry.seq"
)
_OUTBOX = columns(OutboxRow)


class PostgresAudit(PostgresRepository):
    __slots__ = ()

    def get_head(self) -> AuditEntry | None:
        """The last entry's link fields (no body). In a write transaction this locks the
        chain's head until commit: the next appender in any process waits here."""
        row = self._execute(_HEAD + (" FOR UPDATE" if self._writing else "")).fetchone()
        if row is None or row[0] == 0:
            return None
        seq, created_us, kind, ref_id, parent_hash, own_hash = row
        return AuditEntry(
            seq,
            created_us,
            kind,
            ref_id,
            stored_hash_text(bytes(parent_hash)),
            stored_hash_text(bytes(own_hash)),
            "",
        )

    def append(self, entry: AuditEntry) -> None:
        """Store the entry compact and move the head to it (a seq already taken fails)."""
        self._execute(_APPEND, stored_row(entry))

    def list_after(self, after_seq: int, limit: int) -> list[AuditEntry]:
        rows = self._execute(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > %s ORDER BY seq LIMIT %s",
            (after_seq, limit),
        ).fetchall()
        return [entry_from_stored(_bytes_row(row)) for row in rows]

    def list_by_ref(self, ref_id: str) -> list[AuditEntry]:
        rows = self._execute(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE ref_id = %s ORDER BY seq", (ref_id,)
        ).fetchall()
        return [entry_from_stored(_bytes_row(row)) for row in rows]


def _bytes_row(row: tuple[object, ...]) -> tuple[object, ...]:
    """A stored row with its BYTEA columns as bytes (psycopg may hand out memoryviews)."""
    return tuple(bytes(value) if isinstance(value, memoryview) else value for value in row)


class PostgresMeta(PostgresRepository):
    """Settings. In a write transaction a value is set by compare-and-set against what this
    transaction read of it: READ COMMITTED would otherwise let two transactions that read the
    same value both write theirs (a lost update). When another transaction changed it first,
    the transaction fails as retryable (`LostUpdateError`), and `Store.run` runs the work again
    on the new value; a key only read (the policy version each decision checks) locks nothing.
    """

    __slots__ = ("_read",)

    def __init__(
        self, connection: Connection[Any], writing: bool, pipeline: Pipeline | None = None
    ) -> None:
        super().__init__(connection, writing, pipeline)
        self._read: dict[str, str | None] = {}

    def get(self, key: str) -> str | None:
        row = self._execute("SELECT value FROM meta WHERE key = %s", (key,)).fetchone()
        value = str(row[0]) if row else None
        if self._writing:
            self._read.setdefault(key, value)
        return value

    def set(self, key: str, value: str) -> None:
        if key not in self._read:
            self._execute(
                "INSERT INTO meta (key, value) VALUES (%s, %s)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
            return
        seen = self._read[key]
        if seen is None:
            changed = self._rowcount(
                "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (key, value),
            )
        else:
            changed = self._rowcount(
                "UPDATE meta SET value = %s WHERE key = %s AND value = %s", (value, key, seen)
            )
        if changed != 1:
            raise LostUpdateError(f"setting `{key}` was changed by a concurrent transaction")
        self._read[key] = value


class PostgresOutbox(PostgresRepository):
    __slots__ = ()

    def insert(self, kind: str, body: str, now_us: int) -> None:
        self._execute(
            "INSERT INTO outbox (kind, body, created_us, next_attempt_us) VALUES (%s, %s, %s, %s)",
            (kind, body, now_us, now_us),
        )

    def list_due(self, now_us: int, limit: int) -> list[OutboxRow]:
        cursor = self._execute(
            f"SELECT {_OUTBOX} FROM outbox WHERE delivered_us IS NULL AND next_attempt_us <= %s"
            " ORDER BY event_id LIMIT %s",
            (now_us, limit),
        )
        return fetch_all(cursor, OutboxRow)

    def claim(self, event_id: int, now_us: int, lease_until_us: int) -> bool:
        return (
            self._rowcount(
                "UPDATE outbox SET next_attempt_us = %s WHERE event_id = %s"
                " AND delivered_us IS NULL AND next_attempt_us <= %s",
                (lease_until_us, event_id, now_us),
            )
            == 1
        )

    def mark(
        self, event_id: int, delivered_us: int | None, next_attempt_us: int, error: str | None
    ) -> None:
        self._execute(
            "UPDATE outbox SET attempts = attempts + 1, delivered_us = %s, next_attempt_us = %s,"
            " last_error = %s WHERE event_id = %s",
            (delivered_us, next_attempt_us, error, event_id),
        )
