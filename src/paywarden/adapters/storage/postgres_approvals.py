"""PostgreSQL repositories of operators, approval requests (and votes), grants and the kill switch.

Every state change is a compare-and-set on a status column or a conditional UPDATE, so an
approval is decided once, consumed once, and a grant's ceiling and use count can never be
exceeded by concurrent payments.
"""

from __future__ import annotations

from paywarden.adapters.storage.postgres_rows import (
    ADVISORY_LOCK,
    PostgresRepository,
    advisory_key,
    bind,
    columns,
    fetch_all,
    fetch_one,
    insert_statement,
)
from paywarden.ports import (
    ApprovalRow,
    ApprovalStatus,
    GrantRow,
    HaltRow,
    OperatorRow,
    PendingTotal,
    VoteRow,
)

_OPERATOR = columns(OperatorRow)
_APPROVAL = columns(ApprovalRow)
_INSERT_APPROVAL = insert_statement("approvals", ApprovalRow)
_VOTE = columns(VoteRow)
_INSERT_VOTE = insert_statement("approval_votes", VoteRow) + " ON CONFLICT DO NOTHING"
_GRANT = columns(GrantRow)
_INSERT_GRANT = insert_statement("grants", GrantRow)
_HALT = columns(HaltRow)
_INSERT_HALT = insert_statement("halts", HaltRow) + " ON CONFLICT DO NOTHING"


class PostgresOperators(PostgresRepository):
    __slots__ = ()

    def get(self, operator_id: str) -> OperatorRow | None:
        cursor = self._execute(
            f"SELECT {_OPERATOR} FROM operators WHERE operator_id = %s", (operator_id,)
        )
        return fetch_one(cursor, OperatorRow)

    def insert_if_absent(self, row: OperatorRow) -> bool:
        cursor = self._execute(
            "INSERT INTO operators (operator_id, name, created_us)"
            " VALUES (%(operator_id)s, %(name)s, %(created_us)s) ON CONFLICT DO NOTHING",
            bind(row),
        )
        return self._count(cursor) == 1

    def list_all(self) -> list[OperatorRow]:
        cursor = self._execute(f"SELECT {_OPERATOR} FROM operators ORDER BY operator_id")
        return fetch_all(cursor, OperatorRow)


class PostgresApprovals(PostgresRepository):
    __slots__ = ()

    def get(self, approval_id: str) -> ApprovalRow | None:
        cursor = self._execute(
            f"SELECT {_APPROVAL} FROM approvals WHERE approval_id = %s{self._lock}", (approval_id,)
        )
        return fetch_one(cursor, ApprovalRow)

    def get_open(self, agent: str, binding: str, now_us: int) -> ApprovalRow | None:
        """A pending or approved, unexpired approval with this binding, if any. In a write
        transaction the binding is locked first (until commit), so of two identical intents
        racing, the second sees the request (or the consumption) of the first."""
        if self._writing:
            self._execute(ADVISORY_LOCK, (advisory_key("approval", agent, binding),))
        cursor = self._execute(
            f"SELECT {_APPROVAL} FROM approvals WHERE agent = %s AND binding = %s"
            " AND status IN ('pending', 'approved') AND expires_us > %s"
            " ORDER BY created_us, approval_id LIMIT 1",
            (agent, binding, now_us),
        )
        return fetch_one(cursor, ApprovalRow)

    def get_by_hold(self, hold_id: str) -> ApprovalRow | None:
        cursor = self._execute(f"SELECT {_APPROVAL} FROM approvals WHERE hold_id = %s", (hold_id,))
        return fetch_one(cursor, ApprovalRow)

    def insert(self, row: ApprovalRow) -> None:
        self._execute(_INSERT_APPROVAL, bind(row))

    def transition(
        self,
        approval_id: str,
        source: ApprovalStatus,
        target: ApprovalStatus,
        now_us: int,
        note: str | None,
    ) -> bool:
        """Compare-and-set `source` -> `target`; false when the approval was not in `source`."""
        cursor = self._execute(
            "UPDATE approvals SET status = %s, decided_us = %s, note = COALESCE(%s, note)"
            " WHERE approval_id = %s AND status = %s",
            (target, now_us, note, approval_id, source),
        )
        return self._count(cursor) == 1

    def list_recent(self, status: str | None, agent: str | None, limit: int) -> list[ApprovalRow]:
        cursor = self._execute(
            f"SELECT {_APPROVAL} FROM approvals WHERE (%s::text IS NULL OR status = %s)"
            " AND (%s::text IS NULL OR agent = %s) ORDER BY created_us DESC, approval_id LIMIT %s",
            (status, status, agent, agent, limit),
        )
        return fetch_all(cursor, ApprovalRow)

    def list_fair_page(
        self, status: str | None, agent: str | None, limit: int, offset: int
    ) -> list[ApprovalRow]:
        """Pending first, then the rest; within each group agents take turns: each agent's
        requests are numbered (pending from the oldest, the rest from the newest), and rows
        are ordered by that number, then by age the same way, then by id."""
        cursor = self._execute(
            f"SELECT {_APPROVAL} FROM (SELECT {_APPROVAL}, status != 'pending' AS closed,"
            " CASE WHEN status = 'pending' THEN created_us ELSE -created_us END AS age,"
            " ROW_NUMBER() OVER (PARTITION BY agent, status != 'pending'"
            " ORDER BY CASE WHEN status = 'pending' THEN created_us ELSE -created_us END,"
            " approval_id) AS turn"
            " FROM approvals WHERE (%s::text IS NULL OR status = %s)"
            " AND (%s::text IS NULL OR agent = %s)) AS fair"
            " ORDER BY closed, turn, age, approval_id LIMIT %s OFFSET %s",
            (status, status, agent, agent, limit, offset),
        )
        return fetch_all(cursor, ApprovalRow)

    def list_pending_totals(self, agent: str, now_us: int) -> list[PendingTotal]:
        """Count and sum the agent's live pending requests per currency (the partial index
        `approvals_pending_agent` covers the scan; each hold is one primary-key lookup). In a
        write transaction the agent's queue is locked first (until commit), so racing requests
        count each other and the caps hold exactly."""
        if self._writing:
            self._execute(ADVISORY_LOCK, (advisory_key("approval_queue", agent),))
        rows = self._execute(
            "SELECT holds.currency, COUNT(*), SUM(holds.amount_minor) FROM approvals"
            " JOIN holds ON holds.hold_id = approvals.hold_id"
            " WHERE approvals.agent = %s AND approvals.status = 'pending'"
            " AND approvals.expires_us > %s GROUP BY holds.currency ORDER BY holds.currency",
            (agent, now_us),
        ).fetchall()
        return [
            PendingTotal(str(currency), int(count), int(total)) for currency, count, total in rows
        ]

    def list_votes(self, approval_id: str) -> list[VoteRow]:
        cursor = self._execute(
            f"SELECT {_VOTE} FROM approval_votes WHERE approval_id = %s"
            " ORDER BY created_us, operator_id",
            (approval_id,),
        )
        return fetch_all(cursor, VoteRow)

    def insert_vote_if_absent(self, row: VoteRow) -> bool:
        """False when this operator already voted on this approval (one person counts once)."""
        cursor = self._execute(_INSERT_VOTE, bind(row))
        return self._count(cursor) == 1


class PostgresGrants(PostgresRepository):
    __slots__ = ()

    def get(self, grant_id: str) -> GrantRow | None:
        cursor = self._execute(
            f"SELECT {_GRANT} FROM grants WHERE grant_id = %s{self._lock}", (grant_id,)
        )
        return fetch_one(cursor, GrantRow)

    def insert(self, row: GrantRow) -> None:
        self._execute(_INSERT_GRANT, bind(row))

    def list_by_agent(self, agent: str | None, active_at_us: int | None) -> list[GrantRow]:
        cursor = self._execute(
            f"SELECT {_GRANT} FROM grants WHERE (%s::text IS NULL OR agent = %s)"
            " AND (%s::bigint IS NULL OR (revoked_us IS NULL AND expires_us > %s))"
            " ORDER BY created_us, grant_id",
            (agent, agent, active_at_us, active_at_us),
        )
        return fetch_all(cursor, GrantRow)

    def consume(self, grant_id: str, amount_minor: int, now_us: int) -> bool:
        """Use a grant for one payment, atomically within its ceiling, uses and lifetime."""
        cursor = self._execute(
            "UPDATE grants SET used_minor = used_minor + %s, uses = uses + 1"
            " WHERE grant_id = %s AND revoked_us IS NULL AND expires_us > %s"
            " AND %s <= per_payment_minor AND used_minor + %s <= total_minor"
            " AND (uses_max IS NULL OR uses < uses_max)",
            (amount_minor, grant_id, now_us, amount_minor, amount_minor),
        )
        return self._count(cursor) == 1

    def revoke(self, grant_id: str, now_us: int) -> bool:
        cursor = self._execute(
            "UPDATE grants SET revoked_us = %s WHERE grant_id = %s AND revoked_us IS NULL",
            (now_us, grant_id),
        )
        return self._count(cursor) == 1


class PostgresHalts(PostgresRepository):
    __slots__ = ()

    def insert_if_absent(self, row: HaltRow) -> bool:
        cursor = self._execute(_INSERT_HALT, bind(row))
        return self._count(cursor) == 1

    def delete(self, scope: str) -> bool:
        return self._count(self._execute("DELETE FROM halts WHERE scope = %s", (scope,))) == 1

    def get_for_agent(self, agent: str) -> HaltRow | None:
        """The halt that stops `agent`: everything (`*`) first, then the agent's own."""
        cursor = self._execute(
            f"SELECT {_HALT} FROM halts WHERE scope IN ('*', %s) ORDER BY scope = '*' DESC LIMIT 1",
            (agent,),
        )
        return fetch_one(cursor, HaltRow)

    def list_all(self) -> list[HaltRow]:
        cursor = self._execute(f"SELECT {_HALT} FROM halts ORDER BY scope")
        return fetch_all(cursor, HaltRow)
