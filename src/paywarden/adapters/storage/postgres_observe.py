"""PostgreSQL repositories of alerts and metric gauges (SQL in `observe_sql`)."""

from __future__ import annotations

from typing import Any

from paywarden.adapters.storage import observe_sql as q
from paywarden.adapters.storage.postgres_rows import PostgresRepository
from paywarden.ports import AlertRow, StoreGauges

_INSERT = q.postgres_text(q.INSERT_ALERT)
_LIST = q.postgres_text(q.LIST_ALERTS)
_LIST_OF_KIND = q.postgres_text(q.LIST_ALERTS_OF_KIND)


class PostgresAlerts(PostgresRepository):
    __slots__ = ()

    def insert_if_absent(self, row: AlertRow) -> bool:
        return self._rowcount(_INSERT, q.alert_params(row)) == 1

    def list_recent(self, kind: str | None, limit: int) -> list[AlertRow]:
        if kind is None:
            return q.alert_rows(self._execute(_LIST, (limit,)).fetchall())
        return q.alert_rows(self._execute(_LIST_OF_KIND, (kind, limit)).fetchall())


class PostgresGauges(PostgresRepository):
    __slots__ = ()

    def get_snapshot(self) -> StoreGauges:
        def fetch(statement: str) -> list[tuple[Any, ...]]:
            return list(self._execute(statement).fetchall())

        return q.read_gauges(fetch)
