"""SQLite decision facts: analytics over a range and one agent's history (`ports.facts`).

The statements and the methods are shared with PostgreSQL (`facts_sql`); this runs them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from paywarden.adapters.storage.facts_sql import FactQueries
from paywarden.adapters.storage.sqlite_rows import SQLiteRepository


class SQLiteFacts(FactQueries, SQLiteRepository):
    __slots__ = ()

    def _query(self, sql: str, params: Mapping[str, object]) -> sqlite3.Cursor:
        return self._db.execute(sql, params)
