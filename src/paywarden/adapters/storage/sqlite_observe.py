"""SQLite repositories of alerts and metric gauges (SQL in `observe_sql`)."""

from __future__ import annotations

from typing import Any

from paywarden.adapters.storage import observe_sql as q
from paywarden.adapters.storage.sqlite_rows import SQLiteRepository
from paywarden.ports import AlertRow, StoreGauges


class SQLiteAlerts(SQLiteRepository):
    __slots__ = ()

    def insert_if_absent(self, row: AlertRow) -> bool:
        return self._db.execute(q.INSERT_ALERT, q.alert_params(row)).rowcount == 1

    def list_recent(self, kind: str | None, limit: int) -> list[AlertRow]:
        if kind is None:
            return q.alert_rows(self._db.execute(q.LIST_ALERTS, (limit,)).fetchall())
        return q.alert_rows(self._db.execute(q.LIST_ALERTS_OF_KIND, (kind, limit)).fetchall())


class SQLiteGauges(SQLiteRepository):
    __slots__ = ()

    def get_snapshot(self) -> StoreGauges:
        def fetch(statement: str) -> list[tuple[Any, ...]]:
            return list(self._db.execute(statement).fetchall())

        return q.read_gauges(fetch)
