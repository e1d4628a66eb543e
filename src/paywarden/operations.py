"""The operator side of the Warden: operators, approvals, grants and the kill switch.

These methods are mixed into `Warden`; each runs one store transaction in which every change
is audited. Only registered human operators decide approvals or create grants, and the agent
that asked for a payment can never decide it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Final

from paywarden import approvals, grants, limits
from paywarden.approvals import ApprovalView
from paywarden.audit import records
from paywarden.bootstrap import LoadedPolicy
from paywarden.clock import Clock, to_us
from paywarden.errors import ApprovalExpiredError, InvalidInputError, NotFoundError
from paywarden.grants import GrantRequest
from paywarden.ledger.usage import ROLLING_HEAD_US
from paywarden.policy.evaluator import evaluate
from paywarden.policy.facts import StateSnapshot
from paywarden.ports import ApprovalRow, GrantRow, HaltRow, IdSource, LedgerTx, OperatorRow, Store

APPROVAL_STATUSES: Final = ("pending", "approved", "rejected", "expired", "consumed", "voided")
# A page of the operators' inbox: a screenful by default, and never more than other lists.
APPROVALS_PAGE_DEFAULT: Final = 100
APPROVALS_PAGE_MAX: Final = limits.list_rows_max
# Offsets beyond this are refused: nobody pages through a million requests.
APPROVALS_OFFSET_MAX: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class ApprovalPage:
    """One page of approval requests; `next_offset` is where the next page starts, or None
    when this page is the last."""

    views: tuple[ApprovalView, ...]
    next_offset: int | None


def _check_page(status: str | None, limit: int, offset: int) -> None:
    if status is not None and status not in APPROVAL_STATUSES:
        raise InvalidInputError(
            f"unknown approval status `{status[:40]}`; one of {', '.join(APPROVAL_STATUSES)}"
        )
    if type(limit) is not int or not 1 <= limit <= APPROVALS_PAGE_MAX:
        raise InvalidInputError(f"`limit` must be an integer from 1 to {APPROVALS_PAGE_MAX}")
    if type(offset) is not int or not 0 <= offset <= APPROVALS_OFFSET_MAX:
        raise InvalidInputError(f"`offset` must be an integer from 0 to {APPROVALS_OFFSET_MAX}")


class OperatorActions:
    """Mixed into Warden, which provides these attributes."""

    _store: Store
    _clock: Clock
    _loaded: LoadedPolicy
    _ids: IdSource

    if TYPE_CHECKING:

        def clean_text(self, field: str, text: str) -> str: ...

    # Operators --------------------------------------------------------------------------------

    def add_operator(self, operator_id: str, *, name: str, actor: str = "admin") -> OperatorRow:
        """Register a human operator who may approve, reject and grant."""
        if (
            not operator_id
            or not operator_id.replace("-", "")
            .replace("_", "")
            .replace(".", "")
            .replace("@", "")
            .isalnum()
        ):
            raise InvalidInputError(f"operator id `{operator_id}` must be a short identifier")
        now_us = to_us(self._clock.now())
        row = OperatorRow(operator_id, name, now_us)
        with self._store.write() as tx:
            if not tx.operator_insert(row):
                raise InvalidInputError(f"operator `{operator_id}` already exists")
            records.append(
                tx,
                now_us,
                "operator.added",
                operator_id,
                {"actor": actor, "operator_id": operator_id, "name": name},
            )
        return row

    def operators(self) -> list[OperatorRow]:
        with self._store.read() as tx:
            return tx.operators()

    # Approvals --------------------------------------------------------------------------------

    def approvals(
        self,
        status: str | None = None,
        agent: str | None = None,
        *,
        limit: int = APPROVALS_PAGE_DEFAULT,
        offset: int = 0,
    ) -> list[ApprovalView]:
        """One page of approval requests in the fair order of `approvals_page`."""
        return list(self.approvals_page(status, agent, limit=limit, offset=offset).views)

    def approvals_page(
        self,
        status: str | None = None,
        agent: str | None = None,
        *,
        limit: int = APPROVALS_PAGE_DEFAULT,
        offset: int = 0,
    ) -> ApprovalPage:
        """`limit` approval requests (1 to `APPROVALS_PAGE_MAX`) from `offset`, optionally of
        one status or agent, in an order that no agent can flood: pending requests first,
        agents taking turns (each agent's oldest pending request before any agent's second),
        then the others the same way from the newest. Raises InvalidInputError for an unknown
        status or a limit or offset out of range."""
        _check_page(status, limit, offset)
        with self._store.read() as tx:
            rows = tx.approvals_fair_page(status, agent, limit + 1, offset)
            views = tuple(ApprovalView(row, tuple(tx.votes(row.approval_id))) for row in rows)
        more = len(views) > limit
        return ApprovalPage(views[:limit], offset + limit if more else None)

    def approval(self, approval_id: str) -> ApprovalView:
        with self._store.read() as tx:
            return approvals.view(tx, approval_id)

    def approve(self, approval_id: str, *, operator: str, reason: str) -> ApprovalView:
        """Approve as `operator`. Above the policy's four-eyes amount a second, distinct
        operator must approve too. When enough have, deny rules and budgets are checked again;
        the request becomes `approved` (the agent's next identical intent is allowed once) or
        `rejected`. Raises InvalidInputError for a blank reason (before anything else, so
        nothing changes), NotFoundError, ForbiddenError, ApprovalExpiredError (the expiry is
        recorded) or StateConflictError."""
        now = self._clock.now()
        now_us = to_us(now)
        reason = self._vote_reason(reason)
        with self._store.write() as tx:
            row = approvals.vote(tx, approval_id, operator, "approve", reason, now_us)
            if row is not None:
                approvers = [v.operator_id for v in tx.votes(approval_id) if v.vote == "approve"]
                if len(approvers) >= row.required:
                    self._finalize(tx, row, approvers, now)
            view = approvals.view(tx, approval_id)
        if row is None:
            raise ApprovalExpiredError(f"approval `{approval_id}` expired; its hold was released")
        return view

    def reject(self, approval_id: str, *, operator: str, reason: str) -> ApprovalView:
        """Reject as `operator`: the request is closed and its hold released. Raises what
        `approve` raises."""
        now_us = to_us(self._clock.now())
        reason = self._vote_reason(reason)
        with self._store.write() as tx:
            row = approvals.vote(tx, approval_id, operator, "reject", reason, now_us)
            if row is not None:
                self._close(
                    tx,
                    row,
                    "rejected",
                    f"rejected by {operator}: {reason}",
                    now_us,
                    f"operator:{operator}",
                )
            view = approvals.view(tx, approval_id)
        if row is None:
            raise ApprovalExpiredError(f"approval `{approval_id}` expired; its hold was released")
        return view

    def _vote_reason(self, reason: str) -> str:
        """A blank reason is refused by `approvals.vote` before anything else; any other is
        kept bounded and without secrets."""
        return self.clean_text("reason", reason) if reason.strip() else reason

    def _finalize(
        self, tx: LedgerTx, row: ApprovalRow, approvers: list[str], now: datetime
    ) -> None:
        """Enough approvals: check deny rules and budgets again, then approve or reject."""
        now_us = to_us(now)
        problem = self._recheck(tx, row, now)
        if problem is not None:
            self._close(tx, row, "rejected", problem, now_us, "system")
            return
        names = ", ".join(approvers)
        if tx.approval_transition(
            row.approval_id, "pending", "approved", now_us, f"approved by {names}"
        ):
            approved = replace(row, status="approved")
            records.append(
                tx,
                now_us,
                "approval.approved",
                row.approval_id,
                {"actor": "system", "approval_id": row.approval_id, "approved_by": approvers},
            )
            approvals.notify(
                tx,
                approved,
                "approval.decided",
                f"Approved {row.approval_id} for {row.agent} by {names}",
                now_us,
            )

    def _recheck(self, tx: LedgerTx, row: ApprovalRow, now: datetime) -> str | None:
        """Why the approved intent may not proceed now, or None."""
        policy = self._loaded.policy
        if policy is None:
            return "no usable policy at approval time"
        intent = approvals.intent_from_json(row.intent)
        decision = evaluate(policy, intent, StateSnapshot(phase=approvals.phase_of(row)), now)
        if decision.outcome == "deny":
            return f"at approval time: {decision.reason}"
        limits_by_id = {spec.budget_id: spec.limit.amount_minor for spec in policy.budgets}
        for charge in tx.charges(row.hold_id):
            limit = limits_by_id.get(charge.budget_id)
            if limit is None or charge.window_start_us == ROLLING_HEAD_US:
                continue
            counter = tx.lock_counter(
                charge.budget_id, charge.scope_key, charge.window_start_us, ""
            )
            if counter.spent_minor + counter.held_minor > limit:
                return f"at approval time: budget `{charge.budget_id}` is over its limit"
        return None

    def _close(
        self, tx: LedgerTx, row: ApprovalRow, status: str, note: str, now_us: int, actor: str
    ) -> None:
        if tx.approval_transition(row.approval_id, row.status, status, now_us, note):
            approvals.release_hold(tx, row.hold_id, "voided", now_us, actor)
            closed = replace(row, status=status)  # type: ignore[arg-type]
            records.append(
                tx,
                now_us,
                f"approval.{status}",
                row.approval_id,
                {"actor": actor, "approval_id": row.approval_id, "note": note},
            )
            approvals.notify(
                tx,
                closed,
                "approval.decided",
                f"Approval {row.approval_id} {status}: {note}",
                now_us,
            )

    # Grants -----------------------------------------------------------------------------------

    def grant(self, request: GrantRequest, *, operator: str) -> GrantRow:
        """Pre-approve an agent within bounds (see `paywarden.grants`)."""
        now_us = to_us(self._clock.now())
        with self._store.write() as tx:
            approvals.check_operator(tx, operator, requester=request.agent)
            return grants.create(tx, request, self._ids("grant"), operator, now_us)

    def grants(self, agent: str | None = None, active_only: bool = False) -> list[GrantRow]:
        active_at = to_us(self._clock.now()) if active_only else None
        with self._store.read() as tx:
            return tx.grants(agent, active_at)

    def revoke_grant(self, grant_id: str, *, operator: str) -> GrantRow:
        now_us = to_us(self._clock.now())
        with self._store.write() as tx:
            approvals.check_operator(tx, operator)
            return grants.revoke(tx, grant_id, operator, now_us)

    # Kill switch ------------------------------------------------------------------------------

    def halt(
        self, agent: str | None = None, *, reason: str, actor: str, void_pending: bool = False
    ) -> HaltRow:
        """Deny every new authorization (of `agent`, or of everyone) until `resume`.

        With `void_pending`, pending and approved-but-unused requests are voided and their
        holds released. Returns the halt of that scope: this one, or the first one when the
        scope was already halted (an agent's own halt, even while all agents are halted)."""
        if not reason.strip():
            raise InvalidInputError("a halt needs a reason")
        reason = self.clean_text("reason", reason)
        now_us = to_us(self._clock.now())
        scope = agent or "*"
        with self._store.write() as tx:
            approvals.check_operator(tx, actor)
            if tx.halt_set(HaltRow(scope, reason, actor, now_us)):
                records.append(
                    tx,
                    now_us,
                    "halt.set",
                    scope,
                    {"actor": actor, "scope": scope, "reason": reason},
                )
            if void_pending:
                for status in ("pending", "approved"):
                    for row in tx.approvals(status, agent, limits.list_rows_max):
                        self._close(tx, row, "voided", f"voided by halt: {reason}", now_us, actor)
            halt = next((row for row in tx.halts() if row.scope == scope), None)
        if halt is None:  # pragma: no cover - set in this very transaction
            raise NotFoundError("halt not recorded")
        return halt

    def resume(self, agent: str | None = None, *, actor: str) -> bool:
        """Lift a halt; returns False when there was none for that scope."""
        now_us = to_us(self._clock.now())
        scope = agent or "*"
        with self._store.write() as tx:
            approvals.check_operator(tx, actor)
            cleared = tx.halt_clear(scope)
            if cleared:
                records.append(tx, now_us, "halt.cleared", scope, {"actor": actor, "scope": scope})
        return cleared

    def halts(self) -> list[HaltRow]:
        with self._store.read() as tx:
            return tx.halts()
