"""SQLite statements for agent sessions, refunds, disputes and compensation scopes.

Every state change is a compare-and-set on the current state, so each transition happens once
even when two processes race for it.
"""

from __future__ import annotations

import sqlite3

from paywarden.errors import StoreError
from paywarden.ports import (
    ChargeRow,
    DisputeRow,
    DisputeStatus,
    Phase,
    RefundRow,
    RefundState,
    ScopeRow,
    ScopeStatus,
    ScopeStepRow,
    SessionRow,
    StepState,
)

_REFUND = (
    "refund_id, payment_id, amount_minor, currency, state, rail_key, rail_refund_id, reason,"
    " actor, error, created_us, updated_us"
)
_DISPUTE = (
    "dispute_id, payment_id, status, reason, evidence, opened_by, resolution, refund_id,"
    " created_us, updated_us"
)
_STEP = "scope_id, step, payment_id, label, state, error, updated_us"


class WorkflowStatements:
    """Mixed into SQLiteTx; `_db` is the transaction's connection."""

    __slots__ = ()
    _db: sqlite3.Connection

    # Sessions ---------------------------------------------------------------------------------

    def session(self, agent: str, session_id: str) -> SessionRow | None:
        row = self._db.execute(
            "SELECT agent, session_id, phase, created_us, updated_us FROM sessions"
            " WHERE agent = ? AND session_id = ?",
            (agent, session_id),
        ).fetchone()
        return SessionRow(*row) if row else None

    def session_insert(self, row: SessionRow) -> bool:
        cursor = self._db.execute(
            "INSERT INTO sessions (agent, session_id, phase, created_us, updated_us)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (row.agent, row.session_id, row.phase, row.created_us, row.updated_us),
        )
        return cursor.rowcount == 1

    def session_transition(
        self, agent: str, session_id: str, source: Phase, target: Phase, now_us: int
    ) -> bool:
        cursor = self._db.execute(
            "UPDATE sessions SET phase = ?, updated_us = ?"
            " WHERE agent = ? AND session_id = ? AND phase = ?",
            (target, now_us, agent, session_id, source),
        )
        return cursor.rowcount == 1

    # Refunds ----------------------------------------------------------------------------------

    def refund_insert(self, row: RefundRow) -> None:
        self._db.execute(
            f"INSERT INTO refunds ({_REFUND}) VALUES ({', '.join('?' * 12)})",
            (
                row.refund_id,
                row.payment_id,
                row.amount_minor,
                row.currency,
                row.state,
                row.rail_key,
                row.rail_refund_id,
                row.reason,
                row.actor,
                row.error,
                row.created_us,
                row.updated_us,
            ),
        )

    def refund(self, refund_id: str) -> RefundRow | None:
        row = self._db.execute(
            f"SELECT {_REFUND} FROM refunds WHERE refund_id = ?", (refund_id,)
        ).fetchone()
        return RefundRow(*row) if row else None

    def refunds(self, payment_id: str) -> list[RefundRow]:
        rows = self._db.execute(
            f"SELECT {_REFUND} FROM refunds WHERE payment_id = ?"
            " ORDER BY created_us, length(rail_key), rail_key",
            (payment_id,),
        ).fetchall()
        return [RefundRow(*row) for row in rows]

    def refunds_open(self, limit: int) -> list[RefundRow]:
        rows = self._db.execute(
            f"SELECT {_REFUND} FROM refunds WHERE state IN ('submitted', 'unknown')"
            " ORDER BY created_us LIMIT ?",
            (limit,),
        ).fetchall()
        return [RefundRow(*row) for row in rows]

    def refund_transition(
        self,
        refund_id: str,
        source: RefundState,
        target: RefundState,
        now_us: int,
        rail_refund_id: str | None,
        error: str | None,
    ) -> bool:
        cursor = self._db.execute(
            "UPDATE refunds SET state = ?, updated_us = ?,"
            " rail_refund_id = COALESCE(?, rail_refund_id), error = ?"
            " WHERE refund_id = ? AND state = ?",
            (target, now_us, rail_refund_id, error, refund_id, source),
        )
        return cursor.rowcount == 1

    def charge_restore(self, charge: ChargeRow, amount_minor: int) -> None:
        """Give `amount_minor` of a captured charge back to its budget (a refund)."""
        cursor = self._db.execute(
            "UPDATE hold_charges SET restored_minor = restored_minor + ?"
            " WHERE hold_id = ? AND budget_id = ? AND state = 'captured'"
            " AND restored_minor + ? <= amount_minor",
            (amount_minor, charge.hold_id, charge.budget_id, amount_minor),
        )
        if cursor.rowcount != 1:
            raise StoreError(f"charge of hold `{charge.hold_id}` cannot give back {amount_minor}")
        if charge.window_start_us == -1:
            return  # rolling budgets are summed from the charges themselves
        cursor = self._db.execute(
            "UPDATE budget_counters SET spent_minor = spent_minor - ?"
            " WHERE budget_id = ? AND scope_key = ? AND window_start_us = ? AND spent_minor >= ?",
            (
                amount_minor,
                charge.budget_id,
                charge.scope_key,
                charge.window_start_us,
                amount_minor,
            ),
        )
        if cursor.rowcount != 1:
            raise StoreError(f"counter for hold `{charge.hold_id}` is missing or inconsistent")

    # Disputes ---------------------------------------------------------------------------------

    def dispute_insert(self, row: DisputeRow) -> None:
        self._db.execute(
            f"INSERT INTO disputes ({_DISPUTE}) VALUES ({', '.join('?' * 10)})",
            (
                row.dispute_id,
                row.payment_id,
                row.status,
                row.reason,
                row.evidence,
                row.opened_by,
                row.resolution,
                row.refund_id,
                row.created_us,
                row.updated_us,
            ),
        )

    def dispute(self, dispute_id: str) -> DisputeRow | None:
        row = self._db.execute(
            f"SELECT {_DISPUTE} FROM disputes WHERE dispute_id = ?", (dispute_id,)
        ).fetchone()
        return DisputeRow(*row) if row else None

    def disputes(self, payment_id: str | None, status: str | None, limit: int) -> list[DisputeRow]:
        rows = self._db.execute(
            f"SELECT {_DISPUTE} FROM disputes WHERE (?1 IS NULL OR payment_id = ?1)"
            " AND (?2 IS NULL OR status = ?2) ORDER BY created_us DESC, dispute_id LIMIT ?3",
            (payment_id, status, limit),
        ).fetchall()
        return [DisputeRow(*row) for row in rows]

    def dispute_transition(
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

    # Compensation scopes ----------------------------------------------------------------------

    def scope_insert(self, row: ScopeRow) -> None:
        self._db.execute(
            "INSERT INTO scopes (scope_id, agent, status, created_us, updated_us)"
            " VALUES (?, ?, ?, ?, ?)",
            (row.scope_id, row.agent, row.status, row.created_us, row.updated_us),
        )

    def scope(self, scope_id: str) -> ScopeRow | None:
        row = self._db.execute(
            "SELECT scope_id, agent, status, created_us, updated_us FROM scopes WHERE scope_id = ?",
            (scope_id,),
        ).fetchone()
        return ScopeRow(*row) if row else None

    def scopes(self, status: str | None, limit: int) -> list[ScopeRow]:
        rows = self._db.execute(
            "SELECT scope_id, agent, status, created_us, updated_us FROM scopes"
            " WHERE (?1 IS NULL OR status = ?1) ORDER BY created_us DESC, scope_id LIMIT ?2",
            (status, limit),
        ).fetchall()
        return [ScopeRow(*row) for row in rows]

    def scope_transition(
        self, scope_id: str, source: ScopeStatus, target: ScopeStatus, now_us: int
    ) -> bool:
        cursor = self._db.execute(
            "UPDATE scopes SET status = ?, updated_us = ? WHERE scope_id = ? AND status = ?",
            (target, now_us, scope_id, source),
        )
        return cursor.rowcount == 1

    def scope_step_insert(self, row: ScopeStepRow) -> None:
        self._db.execute(
            f"INSERT INTO scope_steps ({_STEP}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                row.scope_id,
                row.step,
                row.payment_id,
                row.label,
                row.state,
                row.error,
                row.updated_us,
            ),
        )

    def scope_steps(self, scope_id: str) -> list[ScopeStepRow]:
        rows = self._db.execute(
            f"SELECT {_STEP} FROM scope_steps WHERE scope_id = ? ORDER BY step", (scope_id,)
        ).fetchall()
        return [ScopeStepRow(*row) for row in rows]

    def scope_step_mark(
        self, scope_id: str, step: int, state: StepState, error: str | None, now_us: int
    ) -> bool:
        cursor = self._db.execute(
            "UPDATE scope_steps SET state = ?, error = ?, updated_us = ?"
            " WHERE scope_id = ? AND step = ? AND state = 'registered'",
            (state, error, now_us, scope_id, step),
        )
        return cursor.rowcount == 1
