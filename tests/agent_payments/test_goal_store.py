"""Goal runs in the SQLite file (tests/postgres/test_postgres_goals.py: the same on PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from paywarden import FrozenClock, Warden
from support.agent_goals import GOAL_POLICY, exercise_goal_store


def test_goal_runs_on_sqlite(tmp_path: Path) -> None:
    with Warden.open(
        GOAL_POLICY, database=tmp_path / "l.db", clock=(clock := FrozenClock())
    ) as warden:
        exercise_goal_store(warden, clock)
    with Warden.open(GOAL_POLICY, database=tmp_path / "l.db") as reopened:
        assert len(reopened.goal_runs()) == 2
