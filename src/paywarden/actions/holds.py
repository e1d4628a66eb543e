"""Holds and budgets: capture or release what a decision held, expire what outlived its time,
and read each budget's state.

A hold resolves exactly once (captured, voided or expired), each resolution a compare-and-set
with its audit entry in the same transaction. The hold of an approval request can be captured
only once the approval was used; releasing it closes the request.
"""

from __future__ import annotations

from paywarden import limits
from paywarden.actions import approvals
from paywarden.errors import NotFoundError, StateConflictError
from paywarden.ledger import settle
from paywarden.ledger.status import BudgetStatus, budget_status
from paywarden.ports import HoldRow
from paywarden.runtime import Runtime


def capture(
    rt: Runtime, hold_id: str, amount: str | int | None = None, *, actor: str = "system"
) -> HoldRow:
    """Capture a held amount: all of it, or a smaller `amount` that frees the rest. Raises
    `NotFoundError` for an unknown hold and `StateConflictError` when the hold was already
    captured, voided or expired."""
    now_us = rt.now_us()
    with rt.store.write() as tx:
        hold = settle.open_hold(tx, hold_id, now_us)
        request = tx.approvals.get_by_hold(hold_id)
        if request is not None and request.status != "consumed":
            raise StateConflictError(
                f"hold `{hold_id}` belongs to approval `{request.approval_id}`, which is "
                f"{request.status}: only an approved and used request may be captured"
            )
        captured = settle.capture_amount(hold, amount)
        updated = settle.settle(tx, hold, "captured", now_us, actor, captured)
    if updated is None:
        raise settle.already_resolved(hold, "captured")
    return updated


def void(rt: Runtime, hold_id: str, *, actor: str = "system") -> HoldRow:
    """Release a held amount without spending it (once); an approval request it belongs to is
    voided too (its money is gone, so it can no longer be approved or used)."""
    now_us = rt.now_us()
    with rt.store.write() as tx:
        hold = settle.open_hold(tx, hold_id, now_us)
        updated = settle.settle(tx, hold, "voided", now_us, actor)
        request = tx.approvals.get_by_hold(hold_id)
        if updated is not None and request is not None:
            approvals.close(tx, request, "voided", f"hold voided by {actor}", now_us, actor)
    if updated is None:
        raise settle.already_resolved(hold, "voided")
    return updated


def expire_due(rt: Runtime, batch_max: int = limits.expire_sweep_batch_max) -> int:
    """Expire holds past their deadline (a bounded sweep); returns how many expired."""
    with rt.store.write() as tx:
        return approvals.sweep(tx, rt.now_us(), batch_max)


def hold(rt: Runtime, hold_id: str) -> HoldRow:
    with rt.store.read() as tx:
        row = tx.holds.get(hold_id)
    if row is None:
        raise NotFoundError(f"no hold `{hold_id}`")
    return row


def budgets(rt: Runtime) -> list[BudgetStatus]:
    """Each budget's spent, held, remaining and gate in its current window, per scope."""
    policy = rt.policy
    if policy is None:
        return []
    with rt.store.read() as tx:
        return budget_status(tx, policy, rt.now())
