"""PostgreSQL decision facts: analytics over a range and one agent's history (`ports.facts`).

The statements and the methods are shared with SQLite (`facts_sql`); this runs them, with
psycopg's parameter style.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from psycopg import Cursor

from paywarden.adapters.storage.facts_sql import FactQueries, for_postgres
from paywarden.adapters.storage.postgres_rows import PostgresRepository


class PostgresFacts(FactQueries, PostgresRepository):
    __slots__ = ()

    def _query(self, sql: str, params: Mapping[str, object]) -> Cursor[Any]:
        return self._execute(_postgres(sql), dict(params))


@cache
def _postgres(sql: str) -> str:
    return for_postgres(sql)
