"""PostgreSQL repositories of agent sessions, compensation scopes (and steps) and disputes.

Every state change is a compare-and-set on the current state, so each transition happens once
even when two processes race for it.
"""

from __future__ import annotations

from paywarden.adapters.storage.postgres_rows import (
    PostgresRepository,
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


class PostgresSessions(PostgresRepository):
    __slots__ = ()

    def get(self, agent: str, session_id: str) -> SessionRow | None:
        cursor = self._execute(
            f"SELECT {_SESSION} FROM sessions WHERE agent = %s AND session_id = %s{self._lock}",
            (agent, session_id),
        )
        return fetch_one(cursor, SessionRow)

    def insert_if_absent(self, row: SessionRow) -> bool:
        return self._count(self._execute(_INSERT_SESSION, bind(row))) == 1

    def transition(
        self, agent: str, session_id: str, source: Phase, target: Phase, now_us: int
    ) -> bool:
        cursor = self._execute(
            "UPDATE sessions SET phase = %s, updated_us = %s"
            " WHERE agent = %s AND session_id = %s AND phase = %s",
            (target, now_us, agent, session_id, source),
        )
        return self._count(cursor) == 1


class PostgresScopes(PostgresRepository):
    __slots__ = ()

    def get(self, scope_id: str) -> ScopeRow | None:
        cursor = self._execute(
            f"SELECT {_SCOPE} FROM scopes WHERE scope_id = %s{self._lock}", (scope_id,)
        )
        return fetch_one(cursor, ScopeRow)

    def insert(self, row: ScopeRow) -> None:
        self._execute(_INSERT_SCOPE, bind(row))

    def transition(
        self, scope_id: str, source: ScopeStatus, target: ScopeStatus, now_us: int
    ) -> bool:
        cursor = self._execute(
            "UPDATE scopes SET status = %s, updated_us = %s WHERE scope_id = %s AND status = %s",
            (target, now_us, scope_id, source),
        )
        return self._count(cursor) == 1

    def list_recent(self, status: str | None, limit: int) -> list[ScopeRow]:
        cursor = self._execute(
            f"SELECT {_SCOPE} FROM scopes"
            " WHERE (%(status)s::text IS NULL OR status = %(status)s)"
            " ORDER BY created_us DESC, scope_id LIMIT %(limit)s",
            {"status": status, "limit": limit},
        )
        return fetch_all(cursor, ScopeRow)

    def insert_step(self, row: ScopeStepRow) -> None:
        self._execute(_INSERT_STEP, bind(row))

    def list_steps(self, scope_id: str) -> list[ScopeStepRow]:
        cursor = self._execute(
            f"SELECT {_STEP} FROM scope_steps WHERE scope_id = %s ORDER BY step", (scope_id,)
        )
        return fetch_all(cursor, ScopeStepRow)

    def transition_step(
        self, scope_id: str, step: int, target: StepState, error: str | None, now_us: int
    ) -> bool:
        cursor = self._execute(
            "UPDATE scope_steps SET state = %s, error = %s, updated_us = %s"
            " WHERE scope_id = %s AND step = %s AND state = 'registered'",
            (target, error, now_us, scope_id, step),
        )
        return self._count(cursor) == 1


class PostgresDisputes(PostgresRepository):
    __slots__ = ()

    def get(self, dispute_id: str) -> DisputeRow | None:
        cursor = self._execute(
            f"SELECT {_DISPUTE} FROM disputes WHERE dispute_id = %s{self._lock}", (dispute_id,)
        )
        return fetch_one(cursor, DisputeRow)

    def insert(self, row: DisputeRow) -> None:
        self._execute(_INSERT_DISPUTE, bind(row))

    def transition(
        self,
        dispute_id: str,
        source: DisputeStatus,
        target: DisputeStatus,
        now_us: int,
        resolution: str | None,
        refund_id: str | None,
    ) -> bool:
        cursor = self._execute(
            "UPDATE disputes SET status = %s, updated_us = %s,"
            " resolution = COALESCE(%s, resolution), refund_id = COALESCE(%s, refund_id)"
            " WHERE dispute_id = %s AND status = %s",
            (target, now_us, resolution, refund_id, dispute_id, source),
        )
        return self._count(cursor) == 1

    def list_recent(
        self, payment_id: str | None, status: str | None, limit: int
    ) -> list[DisputeRow]:
        cursor = self._execute(
            f"SELECT {_DISPUTE} FROM disputes WHERE (%(payment_id)s::text IS NULL"
            " OR payment_id = %(payment_id)s) AND (%(status)s::text IS NULL OR status = %(status)s)"
            " ORDER BY created_us DESC, dispute_id LIMIT %(limit)s",
            {"payment_id": payment_id, "status": status, "limit": limit},
        )
        return fetch_all(cursor, DisputeRow)
