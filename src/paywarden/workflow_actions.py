"""The workflow side of the Warden: session phases, transaction scopes and disputes.

Mixed into `Warden`. Phases are server-side state: an agent session starts in EXPLORE and
moves EXPLORE -> DECIDE -> COMMIT, each move audited; `authorize` reads the phase from here,
never from the request. Scopes and disputes are described in `compensation.py` and
`disputes.py`.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from paywarden import disputes
from paywarden.approvals import check_operator
from paywarden.audit import records
from paywarden.clock import Clock, to_us
from paywarden.compensation import TransactionScope
from paywarden.errors import (
    InvalidInputError,
    NotFoundError,
    PhaseTransitionError,
    StateConflictError,
)
from paywarden.intent import identifier
from paywarden.policy.workflow_settings import PHASES, TRANSITIONS, CompensationSettings
from paywarden.ports import (
    DisputeRow,
    DisputeStatus,
    IdSource,
    LedgerTx,
    Phase,
    ScopeRow,
    ScopeStepRow,
    SessionRow,
    Store,
)

if TYPE_CHECKING:
    from paywarden.bootstrap import LoadedPolicy
    from paywarden.ports import RefundRow


class WorkflowActions:
    """Mixed into Warden, which provides these attributes and `refund`."""

    _store: Store
    _clock: Clock
    _ids: IdSource
    _loaded: LoadedPolicy

    if TYPE_CHECKING:

        def refund(
            self,
            payment_id: str,
            amount: str | int | None = None,
            *,
            reason: str = "requested",
            actor: str = "system",
        ) -> RefundRow: ...

        def clean_text(self, field: str, text: str) -> str: ...

    def _now_us(self) -> int:
        return to_us(self._clock.now())

    def _compensation_settings(self) -> CompensationSettings:
        policy = self._loaded.policy
        return policy.compensation if policy is not None else CompensationSettings()

    # Sessions and phases ----------------------------------------------------------------------

    def start_session(
        self, agent: str, session_id: str | None = None, *, actor: str | None = None
    ) -> SessionRow:
        """Start tracking an agent session, in phase EXPLORE (a new id when none is given)."""
        agent = identifier("agent", agent)
        session_id = identifier("session_id", session_id or f"ses_{secrets.token_hex(8)}")
        now_us = self._now_us()
        row = SessionRow(agent, session_id, "EXPLORE", now_us, now_us)
        with self._store.write() as tx:
            if not tx.session_insert(row):
                existing = tx.session(agent, session_id)
                phase = existing.phase if existing else "unknown"
                raise PhaseTransitionError(
                    f"session `{session_id}` of agent `{agent}` already exists (phase {phase})"
                )
            self._audit_session(tx, row, None, actor)
        return row

    def advance_phase(
        self, agent: str, session_id: str, phase: str, *, actor: str | None = None
    ) -> SessionRow:
        """Move a session to its next phase: EXPLORE -> DECIDE -> COMMIT, nothing else."""
        target = phase.upper() if isinstance(phase, str) else ""
        if target not in PHASES:
            raise InvalidInputError(f"unknown phase `{phase}` (EXPLORE, DECIDE, COMMIT)")
        now_us = self._now_us()
        with self._store.write() as tx:
            current = tx.session(agent, session_id)
            if current is None:
                raise NotFoundError(f"agent `{agent}` has no session `{session_id}`")
            if target not in TRANSITIONS[current.phase] or not tx.session_transition(
                agent, session_id, current.phase, _phase(target), now_us
            ):
                allowed = ", ".join(TRANSITIONS[current.phase]) or "none: COMMIT is final"
                raise PhaseTransitionError(
                    f"session `{session_id}` cannot move from {current.phase} to {target} "
                    f"(allowed: {allowed})"
                )
            row = SessionRow(agent, session_id, _phase(target), current.created_us, now_us)
            self._audit_session(tx, row, current.phase, actor)
        return row

    def session(self, agent: str, session_id: str) -> SessionRow:
        with self._store.read() as tx:
            row = tx.session(agent, session_id)
        if row is None:
            raise NotFoundError(f"agent `{agent}` has no session `{session_id}`")
        return row

    def _audit_session(
        self, tx: LedgerTx, row: SessionRow, source: str | None, actor: str | None
    ) -> None:
        records.append(
            tx,
            row.updated_us,
            "session.started" if source is None else "session.phase",
            f"{row.agent}/{row.session_id}",
            {
                "actor": actor or f"agent:{row.agent}",
                "agent": row.agent,
                "session_id": row.session_id,
                "from": source,
                "phase": row.phase,
            },
        )

    # Transaction scopes -----------------------------------------------------------------------

    def transaction(self, agent: str) -> TransactionScope:
        """Open a compensation scope for one agent's multi-step workflow (a context manager):
        on an exception its paid steps are refunded in reverse order, then it re-raises."""
        agent = identifier("agent", agent)
        now_us = self._now_us()
        row = ScopeRow(self._ids("scp"), agent, "open", now_us, now_us)
        with self._store.write() as tx:
            tx.scope_insert(row)
            records.append(
                tx,
                now_us,
                "scope.opened",
                row.scope_id,
                {"actor": f"agent:{agent}", "scope_id": row.scope_id},
            )
        return TransactionScope(self, row)  # type: ignore[arg-type]

    def resume_scope(self, scope_id: str) -> TransactionScope:
        """An open scope from another process (its payment steps can still be compensated)."""
        row = self.scope(scope_id)
        return TransactionScope(self, row)  # type: ignore[arg-type]

    def scope(self, scope_id: str) -> ScopeRow:
        with self._store.read() as tx:
            row = tx.scope(scope_id)
        if row is None:
            raise NotFoundError(f"no scope `{scope_id}`")
        return row

    def scopes(self, status: str | None = None, *, limit: int = 100) -> list[ScopeRow]:
        """Scopes, newest first; `status="compensation_failed"` lists what needs a human."""
        with self._store.read() as tx:
            return tx.scopes(status, max(1, min(limit, 1000)))

    def scope_steps(self, scope_id: str) -> list[ScopeStepRow]:
        with self._store.read() as tx:
            return tx.scope_steps(scope_id)

    # Disputes ---------------------------------------------------------------------------------

    def open_dispute(self, payment_id: str, *, reason: str, actor: str) -> DisputeRow:
        """Open a case on a settled payment; its proof trace and audit entries are attached."""
        if not reason or not reason.strip():
            raise InvalidInputError("a dispute needs a reason")
        text = self.clean_text("reason", reason.strip())
        with self._store.write() as tx:
            return disputes.open_case(tx, payment_id, text, actor, self._ids("dsp"), self._now_us())

    def review_dispute(self, dispute_id: str, *, operator: str, note: str = "") -> DisputeRow:
        """An operator takes the case: `open` -> `under_review`."""
        note = self.clean_text("note", note)
        with self._store.write() as tx:
            check_operator(tx, operator)
            row = disputes.get(tx, dispute_id)
            if row.status != "open":
                raise StateConflictError(f"dispute `{dispute_id}` is {row.status}, not open")
            return disputes.move(
                tx, row, "under_review", f"operator:{operator}", self._now_us(), note
            )

    def resolve_dispute(
        self,
        dispute_id: str,
        outcome: str,
        *,
        operator: str,
        note: str = "",
        amount: str | int | None = None,
    ) -> DisputeRow:
        """Close a case: `refund` (all that is left, or `amount`, through the rail), `reject`
        or `withdraw`. A refund whose outcome is not settled yet leaves the case under review
        with the refund attached; resolve again after `reconcile`."""
        if outcome not in ("refund", "reject", "withdraw"):
            raise InvalidInputError("outcome must be `refund`, `reject` or `withdraw`")
        note = self.clean_text("note", note)
        actor = f"operator:{operator}"
        with self._store.write() as tx:
            check_operator(tx, operator)
            row = disputes.get(tx, dispute_id)
            if outcome != "refund":
                target: DisputeStatus = "rejected" if outcome == "reject" else "withdrawn"
                return disputes.move(tx, row, target, actor, self._now_us(), note)
            pending = tx.refund(row.refund_id) if row.refund_id else None
        if row.status not in disputes.ACTIVE:
            raise StateConflictError(f"dispute `{dispute_id}` is already {row.status}")
        if pending is None or pending.state == "failed":
            pending = self.refund(
                row.payment_id, amount, reason=f"dispute {dispute_id}: {note}"[:500], actor=actor
            )
        with self._store.write() as tx:
            row = disputes.get(tx, dispute_id)
            if pending.state == "settled":
                return disputes.move(
                    tx, row, "refunded", actor, self._now_us(), note, pending.refund_id
                )
            if row.status == "open":
                row = disputes.move(
                    tx, row, "under_review", actor, self._now_us(), note, pending.refund_id
                )
            tx.dispute_transition(
                dispute_id, row.status, row.status, self._now_us(), None, pending.refund_id
            )
            return disputes.get(tx, dispute_id)

    def dispute(self, dispute_id: str) -> DisputeRow:
        with self._store.read() as tx:
            return disputes.get(tx, dispute_id)

    def disputes(
        self, *, payment_id: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[DisputeRow]:
        with self._store.read() as tx:
            return tx.disputes(payment_id, status, max(1, min(limit, 1000)))


def _phase(name: str) -> Phase:
    if name == "EXPLORE":
        return "EXPLORE"
    return "DECIDE" if name == "DECIDE" else "COMMIT"
