"""SQLite statements for operators, approvals, grants, the kill switch and the webhook outbox.

Every state change is a compare-and-set on a status column or a conditional UPDATE, so an
approval is decided once, consumed once, and a grant's ceiling and use count can never be
exceeded by concurrent payments.
"""

from __future__ import annotations

import sqlite3

from paywarden.ports import ApprovalRow, GrantRow, HaltRow, OperatorRow, OutboxRow, VoteRow

_APPROVAL = (
    "approval_id, decision_id, hold_id, agent, binding, intent, status, required, rule_ids,"
    " created_us, expires_us, decided_us, note"
)
_GRANT = (
    "grant_id, agent, action, currency, per_payment_minor, total_minor, used_minor, uses_max,"
    " uses, recipients, created_by, created_us, expires_us, revoked_us"
)


class ApprovalStatements:
    """Mixed into SQLiteTx; `_db` is the transaction's connection."""

    __slots__ = ()
    _db: sqlite3.Connection

    # Operators --------------------------------------------------------------------------------

    def operator(self, operator_id: str) -> OperatorRow | None:
        row = self._db.execute(
            "SELECT operator_id, name, created_us, disabled_us FROM operators"
            " WHERE operator_id = ?",
            (operator_id,),
        ).fetchone()
        return OperatorRow(*row) if row else None

    def operator_insert(self, row: OperatorRow) -> bool:
        cursor = self._db.execute(
            "INSERT INTO operators (operator_id, name, created_us) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (row.operator_id, row.name, row.created_us),
        )
        return cursor.rowcount == 1

    def operators(self) -> list[OperatorRow]:
        rows = self._db.execute(
            "SELECT operator_id, name, created_us, disabled_us FROM operators ORDER BY operator_id"
        ).fetchall()
        return [OperatorRow(*row) for row in rows]

    # Approvals --------------------------------------------------------------------------------

    def approval(self, approval_id: str) -> ApprovalRow | None:
        row = self._db.execute(
            f"SELECT {_APPROVAL} FROM approvals WHERE approval_id = ?", (approval_id,)
        ).fetchone()
        return ApprovalRow(*row) if row else None

    def approval_open(self, agent: str, binding: str, now_us: int) -> ApprovalRow | None:
        """A pending or approved, unexpired approval with this binding, if any."""
        row = self._db.execute(
            f"SELECT {_APPROVAL} FROM approvals WHERE agent = ? AND binding = ?"
            " AND status IN ('pending', 'approved') AND expires_us > ?"
            " ORDER BY created_us LIMIT 1",
            (agent, binding, now_us),
        ).fetchone()
        return ApprovalRow(*row) if row else None

    def approval_insert(self, row: ApprovalRow) -> None:
        self._db.execute(
            f"INSERT INTO approvals ({_APPROVAL}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.approval_id,
                row.decision_id,
                row.hold_id,
                row.agent,
                row.binding,
                row.intent,
                row.status,
                row.required,
                row.rule_ids,
                row.created_us,
                row.expires_us,
                row.decided_us,
                row.note,
            ),
        )

    def approval_transition(
        self, approval_id: str, source: str, target: str, now_us: int, note: str | None
    ) -> bool:
        """Compare-and-set `source` -> `target`; false when the approval was not in `source`."""
        cursor = self._db.execute(
            "UPDATE approvals SET status = ?, decided_us = ?, note = COALESCE(?, note)"
            " WHERE approval_id = ? AND status = ?",
            (target, now_us, note, approval_id, source),
        )
        return cursor.rowcount == 1

    def approvals(self, status: str | None, agent: str | None, limit: int) -> list[ApprovalRow]:
        rows = self._db.execute(
            f"SELECT {_APPROVAL} FROM approvals WHERE (? IS NULL OR status = ?)"
            " AND (? IS NULL OR agent = ?) ORDER BY created_us DESC LIMIT ?",
            (status, status, agent, agent, limit),
        ).fetchall()
        return [ApprovalRow(*row) for row in rows]

    def approvals_fair_page(
        self, status: str | None, agent: str | None, limit: int, offset: int
    ) -> list[ApprovalRow]:
        """Pending first, then the rest; within each group agents take turns: each agent's
        requests are numbered (pending from the oldest, the rest from the newest), and rows
        are ordered by that number, then by age the same way, then by id."""
        rows = self._db.execute(
            f"SELECT {_APPROVAL} FROM (SELECT {_APPROVAL}, status != 'pending' AS closed,"
            " CASE WHEN status = 'pending' THEN created_us ELSE -created_us END AS age,"
            " ROW_NUMBER() OVER (PARTITION BY agent, status != 'pending'"
            " ORDER BY CASE WHEN status = 'pending' THEN created_us ELSE -created_us END,"
            " approval_id) AS turn"
            " FROM approvals WHERE (? IS NULL OR status = ?) AND (? IS NULL OR agent = ?))"
            " ORDER BY closed, turn, age, approval_id LIMIT ? OFFSET ?",
            (status, status, agent, agent, limit, offset),
        ).fetchall()
        return [ApprovalRow(*row) for row in rows]

    def approvals_pending_totals(self, agent: str, now_us: int) -> list[tuple[str, int, int]]:
        """Count and sum the agent's live pending requests per currency (the partial index
        `approvals_pending_agent` covers the scan; each hold is one primary-key lookup)."""
        rows = self._db.execute(
            "SELECT holds.currency, COUNT(*), SUM(holds.amount_minor) FROM approvals"
            " JOIN holds ON holds.hold_id = approvals.hold_id"
            " WHERE approvals.agent = ? AND approvals.status = 'pending'"
            " AND approvals.expires_us > ? GROUP BY holds.currency ORDER BY holds.currency",
            (agent, now_us),
        ).fetchall()
        return [(str(currency), int(count), int(total)) for currency, count, total in rows]

    def approval_by_hold(self, hold_id: str) -> ApprovalRow | None:
        row = self._db.execute(
            f"SELECT {_APPROVAL} FROM approvals WHERE hold_id = ?", (hold_id,)
        ).fetchone()
        return ApprovalRow(*row) if row else None

    def votes(self, approval_id: str) -> list[VoteRow]:
        rows = self._db.execute(
            "SELECT approval_id, operator_id, vote, reason, created_us FROM approval_votes"
            " WHERE approval_id = ? ORDER BY created_us, operator_id",
            (approval_id,),
        ).fetchall()
        return [VoteRow(*row) for row in rows]

    def vote_insert(self, row: VoteRow) -> bool:
        """False when this operator already voted on this approval (one person counts once)."""
        cursor = self._db.execute(
            "INSERT INTO approval_votes (approval_id, operator_id, vote, reason, created_us)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (row.approval_id, row.operator_id, row.vote, row.reason, row.created_us),
        )
        return cursor.rowcount == 1

    # Grants -----------------------------------------------------------------------------------

    def grant_insert(self, row: GrantRow) -> None:
        self._db.execute(
            f"INSERT INTO grants ({_GRANT}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.grant_id,
                row.agent,
                row.action,
                row.currency,
                row.per_payment_minor,
                row.total_minor,
                row.used_minor,
                row.uses_max,
                row.uses,
                row.recipients,
                row.created_by,
                row.created_us,
                row.expires_us,
                row.revoked_us,
            ),
        )

    def grant(self, grant_id: str) -> GrantRow | None:
        row = self._db.execute(
            f"SELECT {_GRANT} FROM grants WHERE grant_id = ?", (grant_id,)
        ).fetchone()
        return GrantRow(*row) if row else None

    def grants(self, agent: str | None, active_at_us: int | None) -> list[GrantRow]:
        rows = self._db.execute(
            f"SELECT {_GRANT} FROM grants WHERE (? IS NULL OR agent = ?)"
            " AND (? IS NULL OR (revoked_us IS NULL AND expires_us > ?))"
            " ORDER BY created_us, grant_id",
            (agent, agent, active_at_us, active_at_us),
        ).fetchall()
        return [GrantRow(*row) for row in rows]

    def grant_consume(self, grant_id: str, amount_minor: int, now_us: int) -> bool:
        """Use a grant for one payment, atomically within its ceiling, uses and lifetime."""
        cursor = self._db.execute(
            "UPDATE grants SET used_minor = used_minor + ?, uses = uses + 1"
            " WHERE grant_id = ? AND revoked_us IS NULL AND expires_us > ?"
            " AND ? <= per_payment_minor AND used_minor + ? <= total_minor"
            " AND (uses_max IS NULL OR uses < uses_max)",
            (amount_minor, grant_id, now_us, amount_minor, amount_minor),
        )
        return cursor.rowcount == 1

    def grant_revoke(self, grant_id: str, now_us: int) -> bool:
        cursor = self._db.execute(
            "UPDATE grants SET revoked_us = ? WHERE grant_id = ? AND revoked_us IS NULL",
            (now_us, grant_id),
        )
        return cursor.rowcount == 1

    # Kill switch ------------------------------------------------------------------------------

    def halt_set(self, row: HaltRow) -> bool:
        cursor = self._db.execute(
            "INSERT INTO halts (scope, reason, actor, created_us) VALUES (?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (row.scope, row.reason, row.actor, row.created_us),
        )
        return cursor.rowcount == 1

    def halt_clear(self, scope: str) -> bool:
        return self._db.execute("DELETE FROM halts WHERE scope = ?", (scope,)).rowcount == 1

    def halt_for(self, agent: str) -> HaltRow | None:
        """The halt that stops `agent`: everything (`*`) first, then the agent's own."""
        row = self._db.execute(
            "SELECT scope, reason, actor, created_us FROM halts WHERE scope IN ('*', ?)"
            " ORDER BY scope = '*' DESC LIMIT 1",
            (agent,),
        ).fetchone()
        return HaltRow(*row) if row else None

    def halts(self) -> list[HaltRow]:
        rows = self._db.execute(
            "SELECT scope, reason, actor, created_us FROM halts ORDER BY scope"
        ).fetchall()
        return [HaltRow(*row) for row in rows]

    # Webhook outbox ---------------------------------------------------------------------------

    def outbox_insert(self, kind: str, body: str, now_us: int) -> None:
        self._db.execute(
            "INSERT INTO outbox (kind, body, created_us, next_attempt_us) VALUES (?, ?, ?, ?)",
            (kind, body, now_us, now_us),
        )

    def outbox_due(self, now_us: int, limit: int) -> list[OutboxRow]:
        rows = self._db.execute(
            "SELECT event_id, kind, body, created_us, attempts, next_attempt_us, delivered_us,"
            " last_error FROM outbox WHERE delivered_us IS NULL AND next_attempt_us <= ?"
            " ORDER BY event_id LIMIT ?",
            (now_us, limit),
        ).fetchall()
        return [OutboxRow(*row) for row in rows]

    def outbox_mark(
        self, event_id: int, delivered_us: int | None, next_attempt_us: int, error: str | None
    ) -> None:
        self._db.execute(
            "UPDATE outbox SET attempts = attempts + 1, delivered_us = ?, next_attempt_us = ?,"
            " last_error = ? WHERE event_id = ?",
            (delivered_us, next_attempt_us, error, event_id),
        )
