"""Agent goal runs on PostgreSQL (migration 4): the same record as on SQLite."""

from __future__ import annotations

from paywarden import FrozenClock, Warden
from support.agent_goals import GOAL_POLICY, exercise_goal_store


def test_goal_runs_on_postgres(pg_database: str, key_secret: str) -> None:
    with Warden.open(GOAL_POLICY, database=pg_database, clock=(clock := FrozenClock())) as warden:
        exercise_goal_store(warden, clock)
    with Warden.open(GOAL_POLICY, database=pg_database) as reopened:
        assert len(reopened.goal_runs()) == 2
