"""SQLite repositories of the append-only audit log, the shared settings and the outbox.

Audit entries cross the port in their hashed form (`AuditEntry`: hex hashes, canonical JSON
body) and are stored compact (`chain.stored_row`: raw hashes, compressed body); every read
decodes them back (`chain.entry_from_stored`).
"""

from __future__ import annotations

import sqlite3

from paywarden.adapters.storage.sqlite_audit import AUDIT_COLUMNS
from paywarden.adapters.storage.sqlite_rows import SQLiteRepository, columns, fetch_all
from paywarden.audit.chain import AuditEntry, entry_from_stored, stored_hash_text, stored_row
from paywarden.ports import OutboxRow

_INSERT_AUDIT = f"INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
_OUTBOX = columns(OutboxRow)


def read_audit_page(connection: sqlite3.Connection, after_seq: int, limit: int) -> list[AuditEntry]:
    """Up to `limit` entries after `after_seq`, in sequence order, on any connection."""
    rows = connection.execute(
        f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
        (after_seq, limit),
    ).fetchall()
    return [entry_from_stored(row) for row in rows]


class SQLiteAudit(SQLiteRepository):
    __slots__ = ()

    def get_head(self) -> AuditEntry | None:
        """The last entry's link fields; its body is left out (appending never needs it)."""
        row = self._db.execute(
            "SELECT seq, created_us, kind, ref_id, parent_hash, entry_hash"
            " FROM audit_log ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        seq, created_us, kind, ref_id, parent_hash, own_hash = row
        return AuditEntry(
            seq,
            created_us,
            kind,
            ref_id,
            stored_hash_text(parent_hash),
            stored_hash_text(own_hash),
            "",
        )

    def append(self, entry: AuditEntry) -> None:
        """Store the entry compact: raw hashes, the body compressed (`chain.stored_row`)."""
        self._db.execute(_INSERT_AUDIT, stored_row(entry))

    def list_after(self, after_seq: int, limit: int) -> list[AuditEntry]:
        return read_audit_page(self._db, after_seq, limit)

    def list_by_ref(self, ref_id: str) -> list[AuditEntry]:
        rows = self._db.execute(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE ref_id = ? ORDER BY seq", (ref_id,)
        ).fetchall()
        return [entry_from_stored(row) for row in rows]


class SQLiteMeta(SQLiteRepository):
    __slots__ = ()

    def get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


class SQLiteOutbox(SQLiteRepository):
    __slots__ = ()

    def insert(self, kind: str, body: str, now_us: int) -> None:
        self._db.execute(
            "INSERT INTO outbox (kind, body, created_us, next_attempt_us) VALUES (?, ?, ?, ?)",
            (kind, body, now_us, now_us),
        )

    def list_due(self, now_us: int, limit: int) -> list[OutboxRow]:
        cursor = self._db.execute(
            f"SELECT {_OUTBOX} FROM outbox WHERE delivered_us IS NULL AND next_attempt_us <= ?"
            " ORDER BY event_id LIMIT ?",
            (now_us, limit),
        )
        return fetch_all(cursor, OutboxRow)

    def claim(self, event_id: int, now_us: int, lease_until_us: int) -> bool:
        cursor = self._db.execute(
            "UPDATE outbox SET next_attempt_us = ? WHERE event_id = ?"
            " AND delivered_us IS NULL AND next_attempt_us <= ?",
            (lease_until_us, event_id, now_us),
        )
        return cursor.rowcount == 1

    def mark(
        self, event_id: int, delivered_us: int | None, next_attempt_us: int, error: str | None
    ) -> None:
        self._db.execute(
            "UPDATE outbox SET attempts = attempts + 1, delivered_us = ?, next_attempt_us = ?,"
            " last_error = ? WHERE event_id = ?",
            (delivered_us, next_attempt_us, error, event_id),
        )
