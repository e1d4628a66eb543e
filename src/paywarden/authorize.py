"""The authorization pipeline, run inside one store transaction by `Warden.authorize`.

In order: the kill switch; an open approval for this exact intent (a pending one is returned
again, an approved one is consumed); budget and velocity usage; the pure policy evaluation;
budget gates; velocity limits; a grant standing in for a human; for `require_approval`, the
per-agent caps on waiting requests (`approval_queue_full`); then the hold, and for
`require_approval` the approval request. The Warden records and audits the result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime

from paywarden import approvals, grants
from paywarden.audit import records
from paywarden.clock import to_us
from paywarden.intent import PaymentIntent
from paywarden.ledger import holds
from paywarden.ledger.usage import (
    BudgetClaim,
    apply_budget_gates,
    budget_claims,
    velocity_claims,
    velocity_denial,
)
from paywarden.money import Money, format_minor
from paywarden.policy.compiler import CompiledPolicy
from paywarden.policy.decision import BudgetTrace, Decision, Trace
from paywarden.policy.evaluator import deny_everything, evaluate
from paywarden.policy.facts import StateSnapshot
from paywarden.policy.fx import ceil_fraction
from paywarden.ports import ApprovalRow, IdSource, LedgerTx


@dataclass(frozen=True, slots=True)
class Context:
    policy: CompiledPolicy
    intent: PaymentIntent
    phase: str | None
    now: datetime
    ids: IdSource
    hold_ttl_us: int

    @property
    def now_us(self) -> int:
        return to_us(self.now)


def decide(tx: LedgerTx, ctx: Context) -> Decision:
    halt = tx.halt_for(ctx.intent.agent)
    if halt is not None:
        scope = "all agents" if halt.scope == "*" else f"agent `{halt.scope}`"
        decision = deny_everything(
            "halted", f"payments are halted for {scope}: {halt.reason}", ctx.policy.version, ctx.now
        )
        decision.rule_ids = (f"halt:{halt.scope}",)
        return decision
    binding = approvals.binding(ctx.intent)
    existing = tx.approval_open(ctx.intent.agent, binding, ctx.now_us)
    if existing is not None:
        return _with_open_approval(tx, ctx, existing)
    decision, claims, traces = _evaluate_with_ledger(tx, ctx)
    # A grant stands in for a human only where a rule asked for one: never past a budget's
    # restrict gate, which asks for a human because of the money already spent.
    restricted = any(trace.gate == "restrict" for trace in traces)
    rule_asked = decision.reason_code == "approval_required" and not restricted
    if decision.outcome == "require_approval" and rule_asked:
        grant = grants.use(tx, ctx.intent, ctx.now_us)
        if grant is not None:
            decision.outcome, decision.reason_code = "allow", "allowed_by_grant"
            decision.reason = f"covered by grant `{grant.grant_id}` from {grant.created_by}"
            decision.rule_ids = (*decision.rule_ids, f"grant:{grant.grant_id}")
    if decision.outcome == "deny":
        return decision
    return _hold(tx, ctx, decision, binding, claims, traces)


def _evaluate_with_ledger(
    tx: LedgerTx, ctx: Context
) -> tuple[Decision, list[BudgetClaim], list[BudgetTrace]]:
    policy, intent, now_us = ctx.policy, ctx.intent, ctx.now_us
    claims = budget_claims(policy, intent, ctx.now)
    traces = holds.read_budgets(tx, claims)
    state = StateSnapshot(phase=ctx.phase, budgets=tuple(traces))
    decision = apply_budget_gates(evaluate(policy, intent, state, ctx.now), claims, traces)
    if decision.outcome != "deny":
        for claim, count, last_us in holds.read_velocity(
            tx, velocity_claims(policy, intent), now_us
        ):
            denial = velocity_denial(decision, claim, count, last_us, now_us)
            if denial is not None:
                decision = denial
                break
    # The decision is this call's own new value until returned: set its ids in place.
    decision.decision_id = ctx.ids("dec")
    return decision, claims, traces


def _hold(
    tx: LedgerTx,
    ctx: Context,
    decision: Decision,
    binding: str,
    claims: list[BudgetClaim],
    traces: list[BudgetTrace],
) -> Decision:
    pending = decision.outcome == "require_approval"
    if pending:
        full = _queue_full(tx, ctx)
        if full is not None:
            setting, reason = full
            decision.outcome, decision.reason_code = "deny", "approval_queue_full"
            decision.reason = reason
            decision.rule_ids = (*decision.rule_ids, f"approvals:{setting}")
            return decision
    ttl_us = (
        approvals.ttl_seconds(ctx.policy, decision) * 1_000_000 if pending else (ctx.hold_ttl_us)
    )
    hold = holds.NewHold(
        ctx.ids("hold"),
        str(decision.decision_id),
        ctx.intent.agent,
        ctx.intent.amount_minor,
        ctx.intent.currency,
        ctx.now_us,
        ctx.now_us + ttl_us,
    )
    holds.reserve(tx, hold, claims, traces, velocity_claims(ctx.policy, ctx.intent))
    decision.hold_id = hold.hold_id
    if pending:
        decision.approval_id = _request(tx, ctx, decision, binding, hold.expires_us)
    return decision


def _queue_full(tx: LedgerTx, ctx: Context) -> tuple[str, str] | None:
    """The cap of the policy's `approvals:` that one more request of this agent would pass,
    and why, or None. Counted in the write transaction that would insert the request, so
    concurrent requests (threads, processes) can never take an agent past a cap."""
    settings, agent = ctx.policy.approvals, ctx.intent.agent
    totals = tx.approvals_pending_totals(agent, ctx.now_us)
    count = sum(row_count for _, row_count, _ in totals)
    if count >= settings.pending_max_per_agent:
        return "pending_max_per_agent", (
            f"agent `{agent}` already has {count} approval requests waiting, the most the "
            f"policy allows (`approvals.pending_max_per_agent`); wait until operators decide "
            f"them or they expire"
        )
    cap = settings.pending_amount_max_per_agent
    if cap is None:
        return None
    waiting_minor = _pending_minor(ctx, cap, totals)
    intent_minor = _pending_minor(ctx, cap, [(ctx.intent.currency, 1, ctx.intent.amount_minor)])
    if waiting_minor is None or intent_minor is None:
        what = "an amount it has waiting" if waiting_minor is None else str(ctx.intent.amount)
        return "pending_amount_max_per_agent", (
            f"agent `{agent}`: {what} has no FX rate to {cap.currency}, so it counts as over "
            f"the policy's cap of {cap} (`approvals.pending_amount_max_per_agent`)"
        )
    if waiting_minor + intent_minor > cap.amount_minor:
        waiting = f"{format_minor(waiting_minor, cap.exponent)} {cap.currency}"
        return "pending_amount_max_per_agent", (
            f"agent `{agent}` already has {waiting} waiting for approval; {ctx.intent.amount} "
            f"more would pass the policy's cap of {cap} (`approvals.pending_amount_max_per_agent`)"
        )
    return None


def _pending_minor(ctx: Context, cap: Money, totals: list[tuple[str, int, int]]) -> int | None:
    """The amounts in minor units of the cap's currency, each currency's total converted with
    the policy's FX rates and rounded up; None when a currency cannot be converted."""
    policy, result = ctx.policy, 0
    for currency, _, amount_minor in totals:
        if currency not in policy.currencies:
            return None
        converted = policy.fx.convert_minor(
            amount_minor, currency, policy.currencies.exponent(currency), cap.currency, cap.exponent
        )
        if converted is None:
            return None
        result += ceil_fraction(converted)
    return result


def _request(tx: LedgerTx, ctx: Context, decision: Decision, binding: str, expires_us: int) -> str:
    row = ApprovalRow(
        approval_id=ctx.ids("apr"),
        decision_id=str(decision.decision_id),
        hold_id=str(decision.hold_id),
        agent=ctx.intent.agent,
        binding=binding,
        intent=approvals.intent_json(ctx.intent, ctx.phase),
        status="pending",
        required=approvals.required_operators(ctx.policy, ctx.intent),
        rule_ids=json.dumps(list(decision.rule_ids)),
        created_us=ctx.now_us,
        expires_us=expires_us,
        decided_us=None,
        note=decision.reason,
    )
    tx.approval_insert(row)
    records.append(
        tx,
        ctx.now_us,
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
    approvals.notify(
        tx,
        row,
        "approval.requested",
        f"Approval needed: {row.agent} wants to pay {ctx.intent.amount} to "
        f"{ctx.intent.recipient} ({decision.reason})",
        ctx.now_us,
    )
    return row.approval_id


def _with_open_approval(tx: LedgerTx, ctx: Context, row: ApprovalRow) -> Decision:
    """The same intent again: still pending -> the same request; approved -> consume it."""
    rule_ids = tuple(json.loads(row.rule_ids))
    if row.status == "pending":
        reason = f"awaiting approval `{row.approval_id}`: {row.note or ''}".rstrip(": ")
        trace = Trace(ctx.policy.version, ctx.now, (), notes=("approval pending",))
        return Decision(
            "require_approval",
            "approval_required",
            reason,
            rule_ids,
            trace,
            decision_id=ctx.ids("dec"),
            hold_id=row.hold_id,
            approval_id=row.approval_id,
        )
    # Approved: deny rules are checked once more (budgets already hold the amount).
    decision = evaluate(ctx.policy, ctx.intent, StateSnapshot(phase=ctx.phase), ctx.now)
    decision.decision_id = ctx.ids("dec")
    if decision.outcome == "deny":
        note = f"voided: {decision.reason}"
        if tx.approval_transition(row.approval_id, "approved", "voided", ctx.now_us, note):
            approvals.release_hold(tx, row.hold_id, "voided", ctx.now_us, "system")
            voided = replace(row, status="voided")
            records.append(
                tx,
                ctx.now_us,
                "approval.voided",
                row.approval_id,
                {"actor": "system", "approval_id": row.approval_id, "note": note},
            )
            approvals.notify(
                tx, voided, "approval.decided", f"Approval {row.approval_id} {note}", ctx.now_us
            )
        return decision
    approvers = [vote.operator_id for vote in tx.votes(row.approval_id) if vote.vote == "approve"]
    if not tx.approval_transition(row.approval_id, "approved", "consumed", ctx.now_us, None):
        return deny_everything(
            "approval_required", "the approval was already used", ctx.policy.version, ctx.now
        )
    tx.hold_set_expiry(row.hold_id, ctx.now_us + ctx.hold_ttl_us)
    records.append(
        tx,
        ctx.now_us,
        "approval.consumed",
        row.approval_id,
        {
            "actor": f"agent:{row.agent}",
            "approval_id": row.approval_id,
            "decision_id": decision.decision_id,
        },
    )
    decision.outcome, decision.reason_code = "allow", "approved"
    decision.reason = f"approved by {', '.join(approvers)} (approval `{row.approval_id}`)"
    decision.rule_ids, decision.hold_id, decision.approval_id = (
        rule_ids,
        row.hold_id,
        row.approval_id,
    )
    return decision
