"""Human approvals, the whole state machine: request, vote, approve or reject, expire, consume.

```
pending --(enough approve votes, rechecked)--> approved --(the same intent again)--> consumed
   |  \\--(a reject vote, or the recheck fails)--> rejected
   |   \\--(time runs out)----------------------> expired   (approved requests expire too)
   \\------(its hold voided, a halt)-------------> voided    (an approved one whose intent a deny
                                                             rule now stops is voided too)
```

Every change out of `pending`/`approved` goes through `close`: one compare-and-set, the hold
released, one audit entry, one webhook event. Only registered human operators vote, never the
agent that asked; above the policy's four-eyes amount two distinct operators must approve. The
request holds its amount while it waits, and the one payment it authorizes consumes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final, Literal

from paywarden import approval_request, limits
from paywarden.approval_request import ApprovalView
from paywarden.audit import records
from paywarden.audit.canonical import canonical_text
from paywarden.clock import to_us
from paywarden.errors import (
    ApprovalExpiredError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    StateConflictError,
)
from paywarden.intent import PaymentIntent, free_text
from paywarden.ledger import settle
from paywarden.ledger.usage import ROLLING_HEAD_US
from paywarden.policy.compiler import CompiledPolicy
from paywarden.policy.decision import Decision, Trace
from paywarden.policy.evaluator import deny_everything, evaluate
from paywarden.policy.facts import StateSnapshot
from paywarden.ports import ApprovalRow, ApprovalStatus, OperatorRow, UnitOfWork, VoteRow
from paywarden.runtime import Runtime

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


# Inside a decision's transaction (called by `decide`) ----------------------------------------


def request(
    tx: UnitOfWork,
    policy: CompiledPolicy,
    intent: PaymentIntent,
    decision: Decision,
    phase: str | None,
    approval_id: str,
    now_us: int,
    expires_us: int,
) -> str:
    """Open the request of a `require_approval` decision whose amount is held."""
    row = ApprovalRow(
        approval_id=approval_id,
        decision_id=str(decision.decision_id),
        hold_id=str(decision.hold_id),
        agent=intent.agent,
        binding=approval_request.binding(intent),
        intent=approval_request.intent_json(intent, phase),
        status="pending",
        required=approval_request.required_operators(policy, intent),
        rule_ids=json.dumps(list(decision.rule_ids)),
        created_us=now_us,
        expires_us=expires_us,
        decided_us=None,
        note=decision.reason,
    )
    tx.approvals.insert(row)
    records.append(
        tx,
        now_us,
        "approval.requested",
        row.approval_id,
        {
            "actor": f"agent:{row.agent}",
            "approval_id": row.approval_id,
            "decision_id": row.decision_id,
            "hold_id": row.hold_id,
            "required": row.required,
            "expires_us": row.expires_us,
        },
    )
    text = f"Approval needed: {row.agent} wants to pay {intent.amount} to {intent.recipient}"
    notify(tx, row, "approval.requested", f"{text} ({decision.reason})", now_us)
    return row.approval_id


def with_open_approval(
    tx: UnitOfWork,
    policy: CompiledPolicy,
    intent: PaymentIntent,
    phase: str | None,
    row: ApprovalRow,
    decision_id: str,
    now: datetime,
    hold_ttl_us: int,
) -> Decision:
    """The same intent again: still pending -> the same request; approved -> consume it (its
    deny rules checked once more: budgets already hold the amount)."""
    rule_ids = tuple(json.loads(row.rule_ids))
    if row.status == "pending":
        reason = f"awaiting approval `{row.approval_id}`: {row.note or ''}".rstrip(": ")
        trace = Trace(policy.version, now, (), notes=("approval pending",))
        return Decision(
            "require_approval",
            "approval_required",
            reason,
            rule_ids,
            trace,
            decision_id=decision_id,
            hold_id=row.hold_id,
            approval_id=row.approval_id,
        )
    now_us = to_us(now)
    decision = replace(
        evaluate(policy, intent, StateSnapshot(phase=phase), now), decision_id=decision_id
    )
    if decision.outcome == "deny":
        close(tx, row, "voided", f"voided: {decision.reason}", now_us, "system")
        return decision
    approvers = [
        vote.operator_id
        for vote in tx.approvals.list_votes(row.approval_id)
        if vote.vote == "approve"
    ]
    if not tx.approvals.transition(row.approval_id, "approved", "consumed", now_us, None):
        return deny_everything(
            "approval_required", "the approval was already used", policy.version, now
        )
    tx.holds.set_expiry(row.hold_id, now_us + hold_ttl_us)
    records.append(
        tx,
        now_us,
        "approval.consumed",
        row.approval_id,
        {"actor": f"agent:{row.agent}", "approval_id": row.approval_id, "decision_id": decision_id},
    )
    return replace(
        decision,
        outcome="allow",
        reason_code="approved",
        reason=f"approved by {', '.join(approvers)} (approval `{row.approval_id}`)",
        rule_ids=rule_ids,
        hold_id=row.hold_id,
        approval_id=row.approval_id,
    )


def close(
    tx: UnitOfWork, row: ApprovalRow, status: ApprovalStatus, note: str, now_us: int, actor: str
) -> bool:
    """Close a pending or approved request (rejected, expired, voided), once: release its hold,
    audit it, queue its event. False when another transaction closed it first."""
    if not tx.approvals.transition(row.approval_id, row.status, status, now_us, note):
        return False
    release_hold(tx, row.hold_id, status, now_us, actor)
    closed = replace(row, status=status)
    body: dict[str, object] = {
        "actor": actor,
        "approval_id": row.approval_id,
        "status": status,
        "hold_id": row.hold_id,
        "note": note,
    }
    records.append(tx, now_us, f"approval.{status}", row.approval_id, body)
    text = f"Approval {row.approval_id} {status}: {note}"
    if status == "expired":
        text = f"Approval {row.approval_id} expired"
    notify(tx, closed, "approval.decided", text, now_us)
    return True


def release_hold(tx: UnitOfWork, hold_id: str, status: str, now_us: int, actor: str) -> None:
    hold = tx.holds.get(hold_id)
    if hold is not None and hold.state == "held":
        settle.settle(tx, hold, "expired" if status == "expired" else "voided", now_us, actor)


def expire_if_due(tx: UnitOfWork, row: ApprovalRow, now_us: int) -> bool:
    """Expire a pending or approved request whose time ran out; whether it had run out."""
    if row.status not in ("pending", "approved") or row.expires_us > now_us:
        return False
    close(tx, row, "expired", "expired", now_us, "system")
    return True


def sweep(tx: UnitOfWork, now_us: int, batch_max: int) -> int:
    """Expire overdue holds (a bounded sweep), and the approval requests they belonged to."""
    expired = settle.expire_due(tx, now_us, batch_max)
    for hold in expired:
        row = tx.approvals.get_by_hold(hold.hold_id)
        if row is not None and row.status in ("pending", "approved"):
            close(tx, row, "expired", "expired", now_us, "system")  # its hold: expired above
    return len(expired)


def notify(tx: UnitOfWork, row: ApprovalRow, kind: str, text: str, now_us: int) -> None:
    """Queue a webhook event in the same transaction (delivered later, never blocking)."""
    if tx.meta.get("webhooks") == "on":
        tx.outbox.insert(kind, canonical_text(approval_request.event(row, kind, text)), now_us)


def check_operator(tx: UnitOfWork, operator_id: str, requester: str | None = None) -> None:
    """Only registered, enabled human operators decide; never the requesting agent."""
    operator = tx.operators.get(operator_id)
    if operator is None or operator.disabled_us is not None:
        raise ForbiddenError(f"`{operator_id}` is not a registered operator")
    if requester is not None and operator_id == requester:
        raise ForbiddenError(f"`{operator_id}` requested this payment and cannot decide it")


# Use cases -----------------------------------------------------------------------------------


def approve(rt: Runtime, approval_id: str, *, operator: str, reason: str) -> ApprovalView:
    """Approve as `operator`. Above the policy's four-eyes amount a second, distinct operator
    must approve too. When enough have, deny rules and budgets are checked again; the request
    becomes `approved` (the agent's next identical intent is allowed once) or `rejected`."""
    now = rt.now()
    reason = _vote_reason(rt, reason)
    with rt.store.write() as tx:
        row = _vote(tx, approval_id, operator, "approve", reason, to_us(now))
        if row is not None:
            approvers = [
                v.operator_id for v in tx.approvals.list_votes(approval_id) if v.vote == "approve"
            ]
            if len(approvers) >= row.required:
                _finalize(rt, tx, row, approvers, now)
        view = _view(tx, approval_id)
    if row is None:
        raise ApprovalExpiredError(f"approval `{approval_id}` expired; its hold was released")
    return view


def reject(rt: Runtime, approval_id: str, *, operator: str, reason: str) -> ApprovalView:
    """Reject as `operator`: the request is closed and its hold released."""
    now_us = rt.now_us()
    reason = _vote_reason(rt, reason)
    with rt.store.write() as tx:
        row = _vote(tx, approval_id, operator, "reject", reason, now_us)
        if row is not None:
            note = f"rejected by {operator}: {reason}"
            close(tx, row, "rejected", note, now_us, f"operator:{operator}")
        view = _view(tx, approval_id)
    if row is None:
        raise ApprovalExpiredError(f"approval `{approval_id}` expired; its hold was released")
    return view


def approval(rt: Runtime, approval_id: str) -> ApprovalView:
    with rt.store.read() as tx:
        return _view(tx, approval_id)


def approvals_page(
    rt: Runtime,
    status: str | None = None,
    agent: str | None = None,
    *,
    limit: int = APPROVALS_PAGE_DEFAULT,
    offset: int = 0,
) -> ApprovalPage:
    """`limit` requests (1 to `APPROVALS_PAGE_MAX`) from `offset`, optionally of one status or
    agent, in an order no agent can flood: pending requests first, agents taking turns (each
    agent's oldest pending request before any agent's second), then the others the same way
    from the newest."""
    _check_page(status, limit, offset)
    with rt.store.read() as tx:
        rows = tx.approvals.list_fair_page(status, agent, limit + 1, offset)
        views = tuple(
            ApprovalView(row, tuple(tx.approvals.list_votes(row.approval_id))) for row in rows
        )
    more = len(views) > limit
    return ApprovalPage(views[:limit], offset + limit if more else None)


def add_operator(rt: Runtime, operator_id: str, *, name: str, actor: str) -> OperatorRow:
    """Register a human operator who may approve, reject and grant."""
    plain = operator_id.replace("-", "").replace("_", "").replace(".", "").replace("@", "")
    if not operator_id or not plain.isalnum():
        raise InvalidInputError(f"operator id `{operator_id}` must be a short identifier")
    row = OperatorRow(operator_id, name, rt.now_us())
    with rt.store.write() as tx:
        if not tx.operators.insert_if_absent(row):
            raise InvalidInputError(f"operator `{operator_id}` already exists")
        body: dict[str, object] = {"actor": actor, "operator_id": operator_id, "name": name}
        records.append(tx, row.created_us, "operator.added", operator_id, body)
    return row


def operators(rt: Runtime) -> list[OperatorRow]:
    with rt.store.read() as tx:
        return tx.operators.list_all()


# Internals -----------------------------------------------------------------------------------


def _view(tx: UnitOfWork, approval_id: str) -> ApprovalView:
    row = tx.approvals.get(approval_id)
    if row is None:
        raise NotFoundError(f"no approval `{approval_id}`")
    return ApprovalView(row, tuple(tx.approvals.list_votes(approval_id)))


def _vote_reason(rt: Runtime, reason: str) -> str:
    """A blank reason is refused by `_vote` before anything else; any other is kept bounded
    and without secrets."""
    return rt.clean_text("reason", reason) if reason.strip() else reason


def _vote(
    tx: UnitOfWork, approval_id: str, operator_id: str, choice: str, reason: str, now_us: int
) -> ApprovalRow | None:
    """Record one operator's vote on a pending request; returns the row, or None when the
    request had expired (the expiry is recorded; the caller raises after committing it).

    A blank reason is bad input (`InvalidInputError`): it is refused before anything else is
    looked at, so the request is left exactly as it was, not even expired."""
    if not reason.strip():
        raise InvalidInputError("a decision needs a reason")
    free_text("reason", reason, limits.free_text_bytes_max)  # bounded, no invisible characters
    row = tx.approvals.get(approval_id)
    if row is None:
        raise NotFoundError(f"no approval `{approval_id}`")
    check_operator(tx, operator_id, requester=row.agent)
    if expire_if_due(tx, row, now_us) or row.status == "expired":
        return None
    if row.status != "pending":
        raise StateConflictError(f"approval `{approval_id}` is already {row.status}")
    vote: Literal["approve", "reject"] = "approve" if choice == "approve" else "reject"
    if not tx.approvals.insert_vote_if_absent(
        VoteRow(approval_id, operator_id, vote, reason, now_us)
    ):
        raise ForbiddenError(
            f"`{operator_id}` already decided approval `{approval_id}`; another operator must"
        )
    body: dict[str, object] = {
        "actor": f"operator:{operator_id}",
        "approval_id": approval_id,
        "vote": vote,
        "reason": reason,
    }
    records.append(tx, now_us, f"approval.{vote}_vote", approval_id, body)
    return row


def _finalize(
    rt: Runtime, tx: UnitOfWork, row: ApprovalRow, approvers: list[str], now: datetime
) -> None:
    """Enough approvals: check deny rules and budgets again, then approve or reject."""
    now_us = to_us(now)
    problem = _recheck(rt, tx, row, now)
    if problem is not None:
        close(tx, row, "rejected", problem, now_us, "system")
        return
    names = ", ".join(approvers)
    if tx.approvals.transition(
        row.approval_id, "pending", "approved", now_us, f"approved by {names}"
    ):
        approved = replace(row, status="approved")
        body: dict[str, object] = {
            "actor": "system",
            "approval_id": row.approval_id,
            "approved_by": approvers,
        }
        records.append(tx, now_us, "approval.approved", row.approval_id, body)
        text = f"Approved {row.approval_id} for {row.agent} by {names}"
        notify(tx, approved, "approval.decided", text, now_us)


def _recheck(rt: Runtime, tx: UnitOfWork, row: ApprovalRow, now: datetime) -> str | None:
    """Why the approved intent may not proceed now, or None."""
    policy = rt.policy
    if policy is None:
        return "no usable policy at approval time"
    intent = approval_request.intent_from_json(row.intent)
    phase = approval_request.phase_of(row)
    decision = evaluate(policy, intent, StateSnapshot(phase=phase), now)
    if decision.outcome == "deny":
        return f"at approval time: {decision.reason}"
    limits_by_id = {spec.budget_id: spec.limit.amount_minor for spec in policy.budgets}
    for charge in tx.holds.list_charges(row.hold_id):
        limit = limits_by_id.get(charge.budget_id)
        if limit is None or charge.window_start_us == ROLLING_HEAD_US:
            continue
        counter = tx.budgets.lock_counter(
            charge.budget_id, charge.scope_key, charge.window_start_us, ""
        )
        if counter.spent_minor + counter.held_minor > limit:
            return f"at approval time: budget `{charge.budget_id}` is over its limit"
    return None


def _check_page(status: str | None, limit: int, offset: int) -> None:
    if status is not None and status not in APPROVAL_STATUSES:
        raise InvalidInputError(
            f"unknown approval status `{status[:40]}`; one of {', '.join(APPROVAL_STATUSES)}"
        )
    if type(limit) is not int or not 1 <= limit <= APPROVALS_PAGE_MAX:
        raise InvalidInputError(f"`limit` must be an integer from 1 to {APPROVALS_PAGE_MAX}")
    if type(offset) is not int or not 0 <= offset <= APPROVALS_OFFSET_MAX:
        raise InvalidInputError(f"`offset` must be an integer from 0 to {APPROVALS_OFFSET_MAX}")
