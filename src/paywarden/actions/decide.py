"""The decision pipeline, run inside one store transaction by `actions.authorize`.

In order: the kill switch; an open approval for this exact intent (a pending one is returned
again, an approved one is consumed); budget and velocity usage; the pure policy evaluation;
budget gates; velocity limits; a grant standing in for a human; for `require_approval`, the
per-agent caps on waiting requests (`approval_queue_full`); then the hold, and for
`require_approval` the approval request. `authorize` records and audits the result.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from paywarden import approval_request
from paywarden.actions import approvals, grants
from paywarden.audit import records
from paywarden.clock import to_us
from paywarden.intent import PaymentIntent
from paywarden.ledger import anomaly as anomaly_facts
from paywarden.ledger import holds, mandate_claims
from paywarden.ledger.usage import (
    BudgetClaim,
    apply_budget_gates,
    budget_claims,
    velocity_claims,
    velocity_denial,
)
from paywarden.mandates import Mandate, Presented
from paywarden.money import Money, format_minor
from paywarden.policy.compiler import CompiledPolicy
from paywarden.policy.decision import AnomalyFacts, BudgetTrace, Decision, Trace
from paywarden.policy.evaluator import deny_everything, evaluate
from paywarden.policy.facts import StateSnapshot
from paywarden.policy.fx import ceil_fraction
from paywarden.ports import HaltRow, IdSource, PendingTotal, UnitOfWork

AUTO_HALT_ACTOR = "system:anomaly"  # who an anomaly auto-halt is audited under


@dataclass(frozen=True, slots=True)
class Context:
    policy: CompiledPolicy
    intent: PaymentIntent
    phase: str | None
    now: datetime
    ids: IdSource
    hold_ttl_us: int
    mandate: Presented | None = None  # an AP2 mandate presented with the intent (docs/ap2.md)

    @property
    def now_us(self) -> int:
        return to_us(self.now)


def decide(tx: UnitOfWork, ctx: Context) -> Decision:
    halt = tx.halts.get_for_agent(ctx.intent.agent)
    if halt is not None:
        scope = "all agents" if halt.scope == "*" else f"agent `{halt.scope}`"
        reason = f"payments are halted for {scope}: {halt.reason}"
        denied = deny_everything("halted", reason, ctx.policy.version, ctx.now)
        return replace(denied, rule_ids=(f"halt:{halt.scope}",))
    binding = approval_request.binding(ctx.intent)
    existing = tx.approvals.get_open(ctx.intent.agent, binding, ctx.now_us)
    if existing is not None:
        return approvals.with_open_approval(
            tx,
            ctx.policy,
            ctx.intent,
            ctx.phase,
            existing,
            ctx.ids("dec"),
            ctx.now,
            ctx.hold_ttl_us,
        )
    refused = mandate_claims.gate(ctx.policy, ctx.intent, ctx.phase, ctx.mandate, ctx.now)
    if refused is not None:
        return _mandate_denial(ctx, refused)
    anomaly = None
    if ctx.policy.anomaly.used:
        anomaly = anomaly_facts.read_facts(tx, ctx.policy.anomaly, ctx.intent, ctx.now_us)
        halted = _auto_halt(tx, ctx, anomaly) if anomaly.flagged else None
        if halted is not None:
            return halted
    decision, claims, traces = _evaluate_with_ledger(tx, ctx, anomaly)
    # A grant stands in for a human only where a rule asked for one: never past a budget's
    # restrict gate, which asks for a human because of the money already spent.
    restricted = any(trace.gate == "restrict" for trace in traces)
    rule_asked = decision.reason_code == "approval_required" and not restricted
    if decision.outcome == "require_approval" and rule_asked:
        grant = grants.use(tx, ctx.intent, ctx.now_us)
        if grant is not None:
            decision = replace(
                decision,
                outcome="allow",
                reason_code="allowed_by_grant",
                reason=f"covered by grant `{grant.grant_id}` from {grant.created_by}",
                rule_ids=(*decision.rule_ids, f"grant:{grant.grant_id}"),
            )
    if decision.outcome == "deny":
        return decision
    return _hold_claiming(tx, ctx, decision, claims, traces)


def _auto_halt(tx: UnitOfWork, ctx: Context, anomaly: AnomalyFacts) -> Decision | None:
    """`anomaly.auto_halt`: at the agent's `after`-th flagged decision within the window, halt
    the agent (an ordinary halt, audited as `halt.set`; an operator resumes it) and deny this
    one as `halted`. None while the count stays below."""
    agent, settings = ctx.intent.agent, ctx.policy.anomaly
    count = anomaly_facts.anomalies_reached(tx, settings, agent, ctx.now_us)
    if count is None or settings.auto_halt is None:
        return None
    within = settings.auto_halt.within_seconds
    reason = f"auto-halt: {count} anomalies within {within}s (policy `anomaly.auto_halt`)"
    if tx.halts.insert_if_absent(HaltRow(agent, reason, AUTO_HALT_ACTOR, ctx.now_us)):
        body: dict[str, object] = {"actor": AUTO_HALT_ACTOR, "scope": agent, "reason": reason}
        records.append(tx, ctx.now_us, "halt.set", agent, body)
    denied = deny_everything("halted", f"payments are halted for agent `{agent}`: {reason}",
                             ctx.policy.version, ctx.now)  # fmt: skip
    trace = Trace(ctx.policy.version, ctx.now, (), notes=("anomaly auto-halt",), anomaly=anomaly)
    return replace(denied, rule_ids=(f"halt:{agent}",), trace=trace, decision_id=ctx.ids("dec"))


def _evaluate_with_ledger(
    tx: UnitOfWork, ctx: Context, anomaly: AnomalyFacts | None = None
) -> tuple[Decision, list[BudgetClaim], list[BudgetTrace]]:
    policy, intent, now_us = ctx.policy, ctx.intent, ctx.now_us
    claims = budget_claims(policy, intent, ctx.now)
    traces = holds.read_budgets(tx, claims)
    mandate = None if ctx.mandate is None else mandate_claims.facts(tx, ctx.mandate)
    state = StateSnapshot(phase=ctx.phase, budgets=tuple(traces), anomaly=anomaly, mandate=mandate)
    decision = apply_budget_gates(evaluate(policy, intent, state, ctx.now), claims, traces)
    if decision.outcome != "deny":
        for claim, count, last_us in holds.read_velocity(
            tx, velocity_claims(policy, intent), now_us
        ):
            denial = velocity_denial(decision, claim, count, last_us, now_us)
            if denial is not None:
                decision = denial
                break
    return replace(decision, decision_id=ctx.ids("dec")), claims, traces


def _hold(
    tx: UnitOfWork,
    ctx: Context,
    decision: Decision,
    claims: list[BudgetClaim],
    traces: list[BudgetTrace],
) -> Decision:
    pending = decision.outcome == "require_approval"
    if pending:
        full = _queue_full(tx, ctx)
        if full is not None:
            setting, reason = full
            return replace(
                decision,
                outcome="deny",
                reason_code="approval_queue_full",
                reason=reason,
                rule_ids=(*decision.rule_ids, f"approvals:{setting}"),
            )
    ttl_us = ctx.hold_ttl_us
    if pending:
        ttl_us = approval_request.ttl_seconds(ctx.policy, decision) * 1_000_000
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
    decision = replace(decision, hold_id=hold.hold_id)
    if not pending:
        return decision
    approval_id = approvals.request(
        tx,
        ctx.policy,
        ctx.intent,
        decision,
        ctx.phase,
        ctx.ids("apr"),
        ctx.now_us,
        hold.expires_us,
    )
    return replace(decision, approval_id=approval_id)


def _queue_full(tx: UnitOfWork, ctx: Context) -> tuple[str, str] | None:
    """The cap of the policy's `approvals:` that one more request of this agent would pass,
    and why, or None. Counted in the write transaction that would insert the request, so
    concurrent requests (threads, processes) can never take an agent past a cap."""
    settings, agent = ctx.policy.approvals, ctx.intent.agent
    totals = tx.approvals.list_pending_totals(agent, ctx.now_us)
    count = sum(total.request_count for total in totals)
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
    intent_minor = _pending_minor(
        ctx, cap, [PendingTotal(ctx.intent.currency, 1, ctx.intent.amount_minor)]
    )
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


def _pending_minor(ctx: Context, cap: Money, totals: list[PendingTotal]) -> int | None:
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


def _mandate_denial(ctx: Context, problem: tuple[str, str]) -> Decision:
    """A denial because of the AP2 mandate (`ledger.mandate_claims`): nothing is held."""
    code, reason = problem
    denied = deny_everything(code, reason, ctx.policy.version, ctx.now)
    return replace(denied, rule_ids=("mandate",), decision_id=ctx.ids("dec"))


def _hold_claiming(
    tx: UnitOfWork,
    ctx: Context,
    decision: Decision,
    claims: list[BudgetClaim],
    traces: list[BudgetTrace],
) -> Decision:
    """`_hold`, with the AP2 mandate's nonce and budget claimed first, and released again when
    the decision still ends a denial (same transaction: a refusal leaves nothing behind)."""
    mandate = ctx.mandate
    if not isinstance(mandate, Mandate):
        return _hold(tx, ctx, decision, claims, traces)
    problem = mandate_claims.claim(tx, mandate, ctx.now_us)
    if problem is not None:
        return _mandate_denial(ctx, problem)
    held = _hold(tx, ctx, decision, claims, traces)
    if held.outcome == "deny":
        mandate_claims.release(tx, mandate)
    return held
