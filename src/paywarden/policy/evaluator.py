"""The evaluator: evaluate(policy, intent, state, now) -> Decision. Pure and fail-closed.

Every rule is evaluated, so the trace lists each one and whether it matched. Precedence: any
matching deny wins, then require_approval, then allow; nothing matched means deny. A rule with
`mode: log_only` is evaluated and traced like the others but never decides: it is in none of
the policy's effect indexes, and an error inside it does not deny. A rule that
raises makes the decision a deny with reason code `rule_error` (unlike Cedar, which skips a
policy that errors: for money, an error must never open a path).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from paywarden import limits
from paywarden.intent import PaymentIntent
from paywarden.policy.compiler import CompiledPolicy, CompiledRule
from paywarden.policy.decision import Decision, Outcome, RuleTrace, Trace
from paywarden.policy.facts import EMPTY_STATE, Facts, StateSnapshot

_NO_ERRORS: dict[int, str] = {}


def evaluate(
    policy: CompiledPolicy,
    intent: PaymentIntent,
    state: StateSnapshot = EMPTY_STATE,
    now: datetime | None = None,
) -> Decision:
    """Decide one intent. `now` must be an aware datetime (the server's clock)."""
    if now is None:
        raise ValueError("now is required: evaluation is a pure function of its inputs")
    facts = Facts(intent, state, now, policy.timezone)
    rules = policy.rules
    try:
        matched = policy.match_all(facts)
        errors = _NO_ERRORS
    except Exception:  # fall back to rule-by-rule evaluation to find which rules failed
        matched, errors = _evaluate_each(rules, facts)
    trace = Trace(
        policy_version=policy.version,
        evaluated_at=now,
        rules=None,
        lazy_rules=lambda: _rule_traces(rules, matched, errors),
        budgets=state.budgets,
        phase=state.phase,
        anomaly=state.anomaly,
    )
    phase_denial = None
    if state.phase is not None or policy.sessions.required:
        phase_denial = _phase_denial(policy, state.phase)
    return _decide(policy, intent, matched, errors, trace, phase_denial)


def _phase_denial(policy: CompiledPolicy, phase: str | None) -> tuple[str, str] | None:
    """Payments only from a session in a payment phase (COMMIT unless the policy says)."""
    allowed = " or ".join(sorted(policy.sessions.payment_phases))
    if phase is None:
        return (
            "phase_required",
            f"this policy requires a session phase: start a session and move it to {allowed}",
        )
    if phase not in policy.sessions.payment_phases:
        return (
            "phase_not_allowed",
            f"payments are allowed only in phase {allowed}; the session is in {phase}",
        )
    return None


def _rule_traces(
    rules: Sequence[CompiledRule], matched: list[bool], errors: dict[int, str]
) -> tuple[RuleTrace, ...]:
    if not errors:
        return tuple(
            [
                rule.trace_hit if hit else rule.trace_miss
                for rule, hit in zip(rules, matched, strict=True)
            ]
        )
    return tuple(
        RuleTrace(rule.rule_id, rule.effect, matched[i], errors.get(i))
        for i, rule in enumerate(rules)
    )


def _evaluate_each(
    rules: Sequence[CompiledRule], facts: Facts
) -> tuple[list[bool], dict[int, str]]:
    matched: list[bool] = []
    errors: dict[int, str] = {}
    for index, rule in enumerate(rules):
        try:
            matched.append(rule.matches(facts))
        except Exception as error:  # any failure inside a rule fails closed below
            matched.append(False)
            errors[index] = str(error) or type(error).__name__
    return matched, errors


def _decide(
    policy: CompiledPolicy,
    intent: PaymentIntent,
    matched: list[bool],
    errors: dict[int, str],
    trace: Trace,
    phase_denial: tuple[str, str] | None = None,
) -> Decision:
    rules = policy.rules
    any_matched = True in matched
    denies = [rules[i] for i in policy.deny_rules if matched[i]] if any_matched else []
    if denies:
        return _decision("deny", "denied_by_rule", denies, trace)
    if phase_denial is not None:
        return Decision("deny", phase_denial[0], phase_denial[1], (), trace)
    if errors and policy.log_only_rules:
        errors = {i: error for i, error in errors.items() if not rules[i].log_only}
    if errors:
        failed = [rules[i] for i in sorted(errors)]
        first = errors[min(errors)]
        reason = f"rule `{failed[0].rule_id}` failed to evaluate ({first}); denied"
        return Decision("deny", "rule_error", reason, tuple(r.rule_id for r in failed), trace)
    if any_matched:
        approvals = [rules[i] for i in policy.approval_rules if matched[i]]
        if approvals:
            return _decision("require_approval", "approval_required", approvals, trace)
        allows = [rules[i] for i in policy.allow_rules if matched[i]]
        if allows:
            return _decision("allow", "allowed", allows, trace)
    reason = (
        f"no rule allows `{intent.action}` of {intent.amount} to `{intent.recipient}`; "
        "denied by default"
    )
    return Decision("deny", "no_rule_matched", reason, (), trace)


def _decision(
    outcome: Outcome, reason_code: str, rules: list[CompiledRule], trace: Trace
) -> Decision:
    if len(rules) == 1:  # the common case, without building joins and tuples
        rule = rules[0]
        return Decision(outcome, reason_code, rule.reason, rule.id_tuple, trace)
    # Many matching rules: the first few reasons and ids decide the record's size, not the
    # policy's (the trace reproduces the rest).
    shown = rules[: limits.decision_reasons_max]
    reason = "; ".join([rule.reason for rule in shown])
    if len(rules) > len(shown):
        reason += f"; and {len(rules) - len(shown)} more rules"
    ids = tuple([rule.rule_id for rule in rules[: limits.trace_rules_listed_max]])
    return Decision(outcome, reason_code, reason, ids, trace)


def deny_everything(reason_code: str, reason: str, policy_version: str, now: datetime) -> Decision:
    """The decision when no policy can be used (missing or invalid): deny, with why."""
    trace = Trace(policy_version=policy_version, evaluated_at=now, rules=())
    return Decision("deny", reason_code, reason, (), trace)
