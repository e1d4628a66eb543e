"""PostgreSQL repositories of API keys and REST idempotency keys."""

from __future__ import annotations

from paywarden.adapters.storage.postgres_rows import (
    PostgresRepository,
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


class PostgresKeys(PostgresRepository):
    __slots__ = ()

    def get(self, key_id: str) -> KeyRow | None:
        cursor = self._execute(
            f"SELECT {_KEY} FROM api_keys WHERE key_id = %s{self._lock}", (key_id,)
        )
        return fetch_one(cursor, KeyRow)

    def insert(self, row: KeyRow) -> None:
        self._execute(_INSERT_KEY, bind(row))

    def list_all(self) -> list[KeyRow]:
        cursor = self._execute(f"SELECT {_KEY} FROM api_keys ORDER BY created_us, key_id")
        return fetch_all(cursor, KeyRow)

    def revoke(self, key_id: str, now_us: int) -> bool:
        cursor = self._execute(
            "UPDATE api_keys SET revoked_us = %s WHERE key_id = %s AND revoked_us IS NULL",
            (now_us, key_id),
        )
        return self._count(cursor) == 1


class PostgresIdempotency(PostgresRepository):
    __slots__ = ()

    def get(self, scope: str, key: str) -> IdempotencyRow | None:
        cursor = self._execute(
            f"SELECT {_IDEMPOTENCY} FROM idempotency_keys"
            f" WHERE scope = %s AND key = %s{self._lock}",
            (scope, key),
        )
        return fetch_one(cursor, IdempotencyRow)

    def claim(
        self, scope: str, key: str, fingerprint: str, now_us: int, stale_before_us: int
    ) -> bool:
        """One statement: insert the claim, or take over a stale in-progress claim."""
        cursor = self._execute(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, state, created_us, updated_us)"
            " VALUES (%s, %s, %s, 'in_progress', %s, %s)"
            " ON CONFLICT (scope, key) DO UPDATE SET updated_us = excluded.updated_us"
            " WHERE idempotency_keys.state = 'in_progress'"
            " AND idempotency_keys.fingerprint = excluded.fingerprint"
            " AND idempotency_keys.updated_us < %s",
            (scope, key, fingerprint, now_us, now_us, stale_before_us),
        )
        return self._count(cursor) == 1

    def finish(self, scope: str, key: str, status: int, body: str, now_us: int) -> None:
        self._execute(
            "UPDATE idempotency_keys SET state = 'done', status = %s, body = %s, updated_us = %s"
            " WHERE scope = %s AND key = %s AND state = 'in_progress'",
            (status, body, now_us, scope, key),
        )

    def release(self, scope: str, key: str) -> None:
        """Forget an in-progress claim whose request failed before producing a response."""
        self._execute(
            "DELETE FROM idempotency_keys WHERE scope = %s AND key = %s AND state = 'in_progress'",
            (scope, key),
        )
