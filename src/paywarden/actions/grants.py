"""Grants and the kill switch: what operators decide ahead of payments.

Grants: an operator's standing, bounded permission that stands in for an approval.

A grant lets one agent make payments of one action (a glob such as `payments.*`) without a
human each time, within a ceiling per payment, a total, an optional number of uses, optional
recipients, and until it expires or is revoked. It only turns `require_approval` from the
policy's rules into `allow`: deny rules, budget gates and velocity limits still apply, and it
never covers another agent. Each use is one conditional UPDATE, so concurrent payments can
never take a grant past its total or its uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from paywarden import limits
from paywarden.actions import approvals
from paywarden.audit import records
from paywarden.errors import InvalidInputError, NotFoundError
from paywarden.intent import PaymentIntent
from paywarden.money import Money
from paywarden.policy.recipients import PatternSet, cached_matcher, parse_pattern
from paywarden.ports import GrantRow, HaltRow, UnitOfWork
from paywarden.runtime import Runtime


@dataclass(frozen=True, slots=True)
class GrantRequest:
    """What an operator grants; amounts are `Money` in the grant's currency."""

    agent: str
    action: str
    per_payment: Money
    total: Money
    expires_in_seconds: int
    uses_max: int | None = None
    recipients: tuple[str, ...] = ()

    def validate(self) -> None:
        if self.per_payment.currency != self.total.currency:
            raise InvalidInputError("per-payment and total amounts must be in one currency")
        if self.per_payment.amount_minor <= 0 or self.total.amount_minor <= 0:
            raise InvalidInputError("grant amounts must be greater than zero")
        if self.per_payment.amount_minor > self.total.amount_minor:
            raise InvalidInputError("the per-payment ceiling cannot exceed the total")
        if not 0 < self.expires_in_seconds <= limits.approval_ttl_seconds_max * 4:
            raise InvalidInputError("a grant must expire within 28 days")
        if self.uses_max is not None and self.uses_max < 1:
            raise InvalidInputError("uses must be at least 1")


def create(
    tx: UnitOfWork, request: GrantRequest, grant_id: str, operator_id: str, now_us: int
) -> GrantRow:
    request.validate()
    recipients = [parse_pattern(pattern).text for pattern in request.recipients]
    row = GrantRow(
        grant_id=grant_id,
        agent=request.agent,
        action=request.action.lower(),
        currency=request.total.currency,
        per_payment_minor=request.per_payment.amount_minor,
        total_minor=request.total.amount_minor,
        used_minor=0,
        uses_max=request.uses_max,
        uses=0,
        recipients=json.dumps(recipients),
        created_by=operator_id,
        created_us=now_us,
        expires_us=now_us + request.expires_in_seconds * 1_000_000,
        revoked_us=None,
    )
    tx.grants.insert(row)
    records.append(
        tx, now_us, "grant.created", grant_id, {"actor": f"operator:{operator_id}", **_summary(row)}
    )
    return row


def revoke(tx: UnitOfWork, grant_id: str, operator_id: str, now_us: int) -> GrantRow:
    row = tx.grants.get(grant_id)
    if row is None:
        raise NotFoundError(f"no grant `{grant_id}`")
    if tx.grants.revoke(grant_id, now_us):
        records.append(
            tx,
            now_us,
            "grant.revoked",
            grant_id,
            {"actor": f"operator:{operator_id}", "grant_id": grant_id},
        )
    updated = tx.grants.get(grant_id)
    assert updated is not None  # it existed a moment ago in this transaction
    return updated


def use(tx: UnitOfWork, intent: PaymentIntent, now_us: int) -> GrantRow | None:
    """Consume the first grant that covers `intent`, or None. Audited when used."""
    for row in tx.grants.list_by_agent(intent.agent, now_us):
        if not covers(row, intent):
            continue
        if tx.grants.consume(row.grant_id, intent.amount_minor, now_us):
            records.append(
                tx,
                now_us,
                "grant.used",
                row.grant_id,
                {
                    "actor": f"agent:{intent.agent}",
                    "grant_id": row.grant_id,
                    "amount_minor": intent.amount_minor,
                    "currency": intent.currency,
                },
            )
            return row
    return None


def covers(row: GrantRow, intent: PaymentIntent) -> bool:
    if row.agent != intent.agent or row.currency != intent.currency:
        return False
    if not PatternSet([row.action]).matches(intent.action):
        return False
    recipients = tuple(json.loads(row.recipients))
    # Exact: a grant never covers a payee that differs from the one it names, case included.
    return not recipients or cached_matcher(recipients).matches(intent.payee)


def _summary(row: GrantRow) -> dict[str, object]:
    return {
        "grant_id": row.grant_id,
        "agent": row.agent,
        "action": row.action,
        "currency": row.currency,
        "per_payment_minor": row.per_payment_minor,
        "total_minor": row.total_minor,
        "uses_max": row.uses_max,
        "recipients": json.loads(row.recipients),
        "expires_us": row.expires_us,
    }


def to_dict(row: GrantRow) -> dict[str, object]:
    return {
        **_summary(row),
        "used_minor": row.used_minor,
        "uses": row.uses,
        "created_by": row.created_by,
        "created_us": row.created_us,
        "revoked_us": row.revoked_us,
    }


# Use cases -----------------------------------------------------------------------------------


def grant(rt: Runtime, request: GrantRequest, *, operator: str) -> GrantRow:
    """Pre-approve an agent within bounds, as a registered operator other than the agent."""
    now_us = rt.now_us()
    with rt.store.write() as tx:
        approvals.check_operator(tx, operator, requester=request.agent)
        return create(tx, request, rt.ids("grant"), operator, now_us)


def grants(rt: Runtime, agent: str | None = None, active_only: bool = False) -> list[GrantRow]:
    active_at = rt.now_us() if active_only else None
    with rt.store.read() as tx:
        return tx.grants.list_by_agent(agent, active_at)


def revoke_grant(rt: Runtime, grant_id: str, *, operator: str) -> GrantRow:
    now_us = rt.now_us()
    with rt.store.write() as tx:
        approvals.check_operator(tx, operator)
        return revoke(tx, grant_id, operator, now_us)


def halt(
    rt: Runtime, agent: str | None = None, *, reason: str, actor: str, void_pending: bool = False
) -> HaltRow:
    """Deny every new authorization (of `agent`, or of everyone) until `resume`.

    With `void_pending`, pending and approved-but-unused requests are voided and their holds
    released. Returns the halt of that scope: this one, or the first one when the scope was
    already halted (an agent's own halt, even while all agents are halted)."""
    if not reason.strip():
        raise InvalidInputError("a halt needs a reason")
    reason = rt.clean_text("reason", reason)
    now_us = rt.now_us()
    scope = agent or "*"
    with rt.store.write() as tx:
        approvals.check_operator(tx, actor)
        if tx.halts.insert_if_absent(HaltRow(scope, reason, actor, now_us)):
            body: dict[str, object] = {"actor": actor, "scope": scope, "reason": reason}
            records.append(tx, now_us, "halt.set", scope, body)
        if void_pending:
            for status in ("pending", "approved"):
                for row in tx.approvals.list_recent(status, agent, limits.list_rows_max):
                    note = f"voided by halt: {reason}"
                    approvals.close(tx, row, "voided", note, now_us, actor)
        halt_row = next((row for row in tx.halts.list_all() if row.scope == scope), None)
    if halt_row is None:  # pragma: no cover - set in this very transaction
        raise NotFoundError("halt not recorded")
    return halt_row


def resume(rt: Runtime, agent: str | None = None, *, actor: str) -> bool:
    """Lift a halt; returns False when there was none for that scope."""
    now_us = rt.now_us()
    scope = agent or "*"
    with rt.store.write() as tx:
        approvals.check_operator(tx, actor)
        cleared = tx.halts.delete(scope)
        if cleared:
            records.append(tx, now_us, "halt.cleared", scope, {"actor": actor, "scope": scope})
    return cleared


def halts(rt: Runtime) -> list[HaltRow]:
    with rt.store.read() as tx:
        return tx.halts.list_all()
