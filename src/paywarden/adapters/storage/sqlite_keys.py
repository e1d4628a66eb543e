"""SQLite statements for API keys and REST idempotency keys."""

from __future__ import annotations

import sqlite3

from paywarden.ports import IdempotencyRow, KeyRow

_KEY = (
    "key_id, prefix, digest, role, agent, operator, environment, created_by, created_us, revoked_us"
)
_IDEMPOTENCY = "scope, key, fingerprint, state, status, body, created_us, updated_us"


class KeyStatements:
    """Mixed into SQLiteTx; `_db` is the transaction's connection."""

    __slots__ = ()
    _db: sqlite3.Connection

    def key_insert(self, row: KeyRow) -> None:
        self._db.execute(
            f"INSERT INTO api_keys ({_KEY}) VALUES ({', '.join('?' * 10)})",
            (
                row.key_id,
                row.prefix,
                row.digest,
                row.role,
                row.agent,
                row.operator,
                row.environment,
                row.created_by,
                row.created_us,
                row.revoked_us,
            ),
        )

    def key(self, key_id: str) -> KeyRow | None:
        row = self._db.execute(
            f"SELECT {_KEY} FROM api_keys WHERE key_id = ?", (key_id,)
        ).fetchone()
        return KeyRow(*row) if row else None

    def keys(self) -> list[KeyRow]:
        rows = self._db.execute(f"SELECT {_KEY} FROM api_keys ORDER BY created_us, key_id")
        return [KeyRow(*row) for row in rows.fetchall()]

    def key_revoke(self, key_id: str, now_us: int) -> bool:
        cursor = self._db.execute(
            "UPDATE api_keys SET revoked_us = ? WHERE key_id = ? AND revoked_us IS NULL",
            (now_us, key_id),
        )
        return cursor.rowcount == 1

    def idempotency_get(self, scope: str, key: str) -> IdempotencyRow | None:
        row = self._db.execute(
            f"SELECT {_IDEMPOTENCY} FROM idempotency_keys WHERE scope = ? AND key = ?",
            (scope, key),
        ).fetchone()
        return IdempotencyRow(*row) if row else None

    def idempotency_claim(
        self, scope: str, key: str, fingerprint: str, now_us: int, stale_before_us: int
    ) -> bool:
        """One statement: insert the claim, or take over a stale in-progress claim."""
        cursor = self._db.execute(
            f"INSERT INTO idempotency_keys ({_IDEMPOTENCY})"
            " VALUES (?, ?, ?, 'in_progress', NULL, NULL, ?, ?)"
            " ON CONFLICT (scope, key) DO UPDATE SET updated_us = excluded.updated_us"
            " WHERE idempotency_keys.state = 'in_progress'"
            " AND idempotency_keys.fingerprint = excluded.fingerprint"
            " AND idempotency_keys.updated_us < ?",
            (scope, key, fingerprint, now_us, now_us, stale_before_us),
        )
        return cursor.rowcount == 1

    def idempotency_finish(self, scope: str, key: str, status: int, body: str, now_us: int) -> None:
        self._db.execute(
            "UPDATE idempotency_keys SET state = 'done', status = ?, body = ?, updated_us = ?"
            " WHERE scope = ? AND key = ? AND state = 'in_progress'",
            (status, body, now_us, scope, key),
        )

    def idempotency_release(self, scope: str, key: str) -> None:
        """Forget an in-progress claim whose request failed before producing a response."""
        self._db.execute(
            "DELETE FROM idempotency_keys WHERE scope = ? AND key = ? AND state = 'in_progress'",
            (scope, key),
        )
