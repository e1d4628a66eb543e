"""SQLite repositories of agent sessions, compensation scopes (and steps) and disputes.

Every state change is a compare-and-set on the current state, so each transition happens once
even when two processes race for it.
"""

from __future__ import annotations

from paywarden.adapters.storage.sqlite_rows import (
    SQLiteRepository,
    bind,
    columns,
    fetch_all,
    fetch_one,
    insert_statement,
)
from paywarden.ports import (
    DisputeRow,
    DisputeStatus,
    Phase,
    ScopeRow,
    ScopeStatus,
    ScopeStepRow,
    SessionRow,
    StepState,
)

_SESSION = columns(SessionRow)
_INSERT_SESSION = insert_statement("sessions", SessionRow) + " ON CONFLICT DO NOTHING"
_SCOPE = columns(ScopeRow)
_INSERT_SCOPE = insert_statement("scopes", ScopeRow)
_STEP = columns(ScopeStepRow)
_INSERT_STEP = insert_statement("scope_steps", ScopeStepRow)
_DISPUTE = columns(DisputeRow)
_INSERT_DISPUTE = insert_statement("disputes", DisputeRow)


class SQLiteSessions(SQLiteRepository):
    __slots__ = ()

    def get(self, agent: str, session_id: str) -> SessionRow | None:
        cursor = self._db.execute(
            f"SELECT {_SESSION} FROM sessions WHERE agent = ? AND session_id = ?",
            (agent, session_id),
        )
        return fetch_one(cursor, SessionRow)

    def insert_if_absent(self, row: SessionRow) -> bool:
        return self._db.execute(_INSERT_SESSION, bind(row)).rowcount == 1

    def transition(
        self, agent: str, session_id: str, source: Phase, target: Phase, now_us: int
    ) -> bool:
        cursor = self._db.execute(
            "UPDATE sessions SET phase = ?, updated_us = ?"
            " WHERE agent = ? AND session_id = ? AND phase = ?",
            (target, now_us, agent, session_id, source),
        )
        return cursor.rowcount == 1


class SQLiteScopes(SQLiteRepository):
    __slots__ = ()

    def get(self, scope_id: str) -> ScopeRow | None:
        cursor = self._db.execute(f"SELECT {_SCOPE} FROM scopes WHERE scope_id = ?", (scope_id,))
        return fetch_one(cursor, ScopeRow)

    def insert(self, row: ScopeRow) -> None:
        self._db.execute(_INSERT_SCOPE, bind(row))

    def transition(
        self, scope_id: str, source: ScopeStatus, target: ScopeStatus, now_us: int
    ) -> bool:
        cursor = self._db.execute(
            "UPDATE scopes SET status = ?, updated_us = ? WHERE scope_id = ? AND status = ?",
            (target, now_us, scope_id, source),
        )
        return cursor.rowcount == 1

    def list_recent(self, status: str | None, limit: int) -> list[ScopeRow]:
        cursor = self._db.execute(
            f"SELECT {_SCOPE} FROM scopes"
            " WHERE (?1 IS NULL OR status = ?1) ORDER BY created_us DESC, scope_id LIMIT ?2",
            (status, limit),
        )
        return fetch_all(cursor, ScopeRow)

    def insert_step(self, row: ScopeStepRow) -> None:
        self._db.execute(_INSERT_STEP, bind(row))

    def list_steps(self, scope_id: str) -> list[ScopeStepRow]:
        cursor = self._db.execute(
            f"SELECT {_STEP} FROM scope_steps WHERE scope_id = ? ORDER BY step", (scope_id,)
        )
        return fetch_all(cursor, ScopeStepRow)

    def transition_step(
        self, scope_id: str, step: int, target: StepState, error: str | None, now_us: int
    ) -> bool:
        cursor = self._db.execute(
            "UPDATE scope_steps SET state = ?, error = ?, updated_us = ?"
            " WHERE scope_id = ? AND step = ? AND state = 'registered'",
            (target, error, now_us, scope_id, step),
        )
        return cursor.rowcount == 1


class SQLiteDisputes(SQLiteRepository):
    __slots__ = ()

    def get(self, dispute_id: str) -> DisputeRow | None:
        cursor = self._db.execute(
            f"SELECT {_DISPUTE} FROM disputes WHERE dispute_id = ?", (dispute_id,)
        )
        return fetch_one(cursor, DisputeRow)

    def insert(self, row: DisputeRow) -> None:
        self._db.execute(_INSERT_DISPUTE, bind(row))

    def transition(
        self,
        dispute_id: str,
        source: DisputeStatus,
        target: DisputeStatus,
        now_us: int,
        resolution: str | None,
        refund_id: str | None,
    ) -> bool:
        cursor = self._db.execute(
            "UPDATE disputes SET status = ?, updated_us = ?,"
            " resolution = COALESCE(?, resolution), refund_id = COALESCE(?, refund_id)"
            " WHERE dispute_id = ? AND status = ?",
            (target, now_us, resolution, refund_id, dispute_id, source),
        )
        return cursor.rowcount == 1

    def list_recent(
        self, payment_id: str | None, status: str | None, limit: int
    ) -> list[DisputeRow]:
        cursor = self._db.execute(
            f"SELECT {_DISPUTE} FROM disputes WHERE (?1 IS NULL OR payment_id = ?1)"
            " AND (?2 IS NULL OR status = ?2) ORDER BY created_us DESC, dispute_id LIMIT ?3",
            (payment_id, status, limit),
        )
        return fetch_all(cursor, DisputeRow)
