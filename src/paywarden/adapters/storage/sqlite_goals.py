"""SQLite repository of agent goal runs (`actions.goals`, migration 11)."""

from __future__ import annotations

from paywarden.adapters.storage.sqlite_rows import (
    SQLiteRepository,
    bind,
    columns,
    fetch_all,
    fetch_one,
    insert_statement,
)
from paywarden.ports import GoalRunRow

_GOAL = columns(GoalRunRow)
_INSERT_GOAL = insert_statement("goal_runs", GoalRunRow)


class SQLiteGoalRuns(SQLiteRepository):
    __slots__ = ()

    def get(self, run_id: str) -> GoalRunRow | None:
        cursor = self._db.execute(f"SELECT {_GOAL} FROM goal_runs WHERE run_id = ?", (run_id,))
        return fetch_one(cursor, GoalRunRow)

    def insert(self, row: GoalRunRow) -> None:
        self._db.execute(_INSERT_GOAL, bind(row))

    def save(self, row: GoalRunRow) -> None:
        self._db.execute(
            "UPDATE goal_runs SET status = :status, attempts = :attempts,"
            " payment_id = :payment_id, approval_id = :approval_id, error = :error,"
            " updated_us = :updated_us WHERE run_id = :run_id",
            bind(row),
        )

    def list_recent(self, agent: str | None, limit: int) -> list[GoalRunRow]:
        cursor = self._db.execute(
            f"SELECT {_GOAL} FROM goal_runs WHERE (:agent IS NULL OR agent = :agent)"
            " ORDER BY created_us DESC, run_id DESC LIMIT :limit",
            {"agent": agent, "limit": limit},
        )
        return fetch_all(cursor, GoalRunRow)
