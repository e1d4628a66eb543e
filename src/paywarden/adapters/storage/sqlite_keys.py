"""SQLite repositories of API keys and REST idempotency keys."""

from __future__ import annotations

from paywarden.adapters.storage.sqlite_rows import (
    SQLiteRepository,
    bind,
    columns,
    fetch_all,
    fetch_one,
    insert_statement,
)
from paywarden.ports import IdempotencyRow, KeyRow

_KEY = columns(KeyRow)
_INSERT_KEY = insert_statement("api_keys", KeyRow)
_IDEMPOTENCY = columns(IdempotencyRow)


class SQLiteKeys(SQLiteRepository):
    __slots__ = ()

    def get(self, key_id: str) -> KeyRow | None:
        cursor = self._db.execute(f"SELECT {_KEY} FROM api_keys WHERE key_id = ?", (key_id,))
        return fetch_one(cursor, KeyRow)

    def insert(self, row: KeyRow) -> None:
        self._db.execute(_INSERT_KEY, bind(row))

    def list_all(self) -> list[KeyRow]:
        cursor = self._db.execute(f"SELECT {_KEY} FROM api_keys ORDER BY created_us, key_id")
        return fetch_all(cursor, KeyRow)

    def revoke(self, key_id: str, now_us: int) -> bool:
        cursor = self._db.execute(
            "UPDATE api_keys SET revoked_us = ? WHERE key_id = ? AND revoked_us IS NULL",
            (now_us, key_id),
        )
        return cursor.rowcount == 1


class SQLiteIdempotency(SQLiteRepository):
    __slots__ = ()

    def get(self, scope: str, key: str) -> IdempotencyRow | None:
        cursor = self._db.execute(
            f"SELECT {_IDEMPOTENCY} FROM idempotency_keys WHERE scope = ? AND key = ?",
            (scope, key),
        )
        return fetch_one(cursor, IdempotencyRow)

    def claim(
        self, scope: str, key: str, fingerprint: str, now_us: int, stale_before_us: int
    ) -> bool:
        """One statement: insert the claim, or take over a stale in-progress claim."""
        cursor = self._db.execute(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, state, created_us, updated_us)"
            " VALUES (?, ?, ?, 'in_progress', ?, ?)"
            " ON CONFLICT (scope, key) DO UPDATE SET updated_us = excluded.updated_us"
            " WHERE idempotency_keys.state = 'in_progress'"
            " AND idempotency_keys.fingerprint = excluded.fingerprint"
            " AND idempotency_keys.updated_us < ?",
            (scope, key, fingerprint, now_us, now_us, stale_before_us),
        )
        return cursor.rowcount == 1

    def finish(self, scope: str, key: str, status: int, body: str, now_us: int) -> None:
        self._db.execute(
            "UPDATE idempotency_keys SET state = 'done', status = ?, body = ?, updated_us = ?"
            " WHERE scope = ? AND key = ? AND state = 'in_progress'",
            (status, body, now_us, scope, key),
        )

    def release(self, scope: str, key: str) -> None:
        """Forget an in-progress claim whose request failed before producing a response."""
        self._db.execute(
            "DELETE FROM idempotency_keys WHERE scope = ? AND key = ? AND state = 'in_progress'",
            (scope, key),
        )
