"""PostgreSQL repository of agent goal runs (`actions.goals`, migration 4)."""

from __future__ import annotations

from paywarden.adapters.storage.postgres_rows import (
    PostgresRepository,
    bind,
    columns,
    fetch_all,
    fetch_one,
    insert_statement,
)
from paywarden.ports import GoalRunRow

_GOAL = columns(GoalRunRow)
_INSERT_GOAL = insert_statement("goal_runs", GoalRunRow)


class PostgresGoalRuns(PostgresRepository):
    __slots__ = ()

    def get(self, run_id: str) -> GoalRunRow | None:
        cursor = self._execute(
            f"SELECT {_GOAL} FROM goal_runs WHERE run_id = %s{self._lock}", (run_id,)
        )
        return fetch_one(cursor, GoalRunRow)

    def insert(self, row: GoalRunRow) -> None:
        self._execute(_INSERT_GOAL, bind(row))

    def save(self, row: GoalRunRow) -> None:
        self._execute(
            "UPDATE goal_runs SET status = %(status)s, attempts = %(attempts)s,"
            " payment_id = %(payment_id)s, approval_id = %(approval_id)s, error = %(error)s,"
            " updated_us = %(updated_us)s WHERE run_id = %(run_id)s",
            bind(row),
        )

    def list_recent(self, agent: str | None, limit: int) -> list[GoalRunRow]:
        cursor = self._execute(
            f"SELECT {_GOAL} FROM goal_runs"
            " WHERE (%(agent)s::text IS NULL OR agent = %(agent)s)"
            " ORDER BY created_us DESC, run_id DESC LIMIT %(limit)s",
            {"agent": agent, "limit": limit},
        )
        return fetch_all(cursor, GoalRunRow)
