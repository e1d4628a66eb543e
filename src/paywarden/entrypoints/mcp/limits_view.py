"""What an agent may know about its own limits: the rules, budgets and velocity limits that can
apply to it, in plain words and as structured fields.

Rules that name other agents only (or exclude this one), or another environment, are left out:
an agent learns its own limits, not the rest of the policy. The compiled policy keeps agent
patterns only as matchers, so the rule filters are read from the policy text once more (it
compiled at load time, so it parses again).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from paywarden.ledger.status import BudgetStatus
from paywarden.money import format_minor
from paywarden.policy import dialects
from paywarden.policy.budgets import BudgetSpec, VelocitySpec
from paywarden.policy.compiler import LIST_CONDITIONS, CompiledPolicy
from paywarden.policy.decision import Effect
from paywarden.policy.document import DocumentError, LocMap, load_document
from paywarden.policy.recipients import PatternSet
from paywarden.policy.report import CompileReport

from .models import BudgetView, LimitsView, RuleView, VelocityView

_SCOPE_WORDS = {
    "global": "shared by every agent",
    "agent": "for you alone",
    "session": "per session",
    "recipient": "per recipient",
    "category": "per category",
    "action": "per action",
}
_EFFECT_WORDS = {
    "deny": "is denied",
    "require_approval": "needs a human approval",
    "allow": "is allowed",
}


@dataclass(frozen=True, slots=True)
class Filters:
    """Per rule: its agent and environment conditions; per budget or limit: its actions."""

    rule_conditions: Mapping[str, list[tuple[str, bool, list[str]]]] = field(default_factory=dict)
    actions: Mapping[str, list[str]] = field(default_factory=dict)

    def rule_applies(self, rule_id: str, agent: str, environment: str | None) -> bool:
        for field_name, negate, patterns in self.rule_conditions.get(rule_id, ()):
            if field_name == "agent":
                value: str | None = agent
            elif environment is None:
                continue  # the deployment's environment decides; keep the rule
            else:
                value = environment
                patterns = [p.lower() for p in patterns]
            if PatternSet(patterns).matches(value) == negate:
                return False
        return True


def read_filters(text: str | None) -> Filters:
    """The filters of the policy text, in its native form (other dialects are converted)."""
    if text is None:
        return Filters()
    try:
        document = load_document(text)
    except DocumentError:
        return Filters()
    if not isinstance(document, LocMap):
        return Filters()
    dialect = dialects.detect(document)
    report = CompileReport("policy")
    if dialect == "capfence":
        document = dialects.from_capfence(document, report)
    elif dialect == "governance":
        document = dialects.from_governance(document, report)
    return Filters(_rule_conditions(document.get("rules")), _actions(document))


def _strings(value: object) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [str(item) for item in items]


def _rule_conditions(rules: object) -> dict[str, list[tuple[str, bool, list[str]]]]:
    result: dict[str, list[tuple[str, bool, list[str]]]] = {}
    for entry in rules if isinstance(rules, list) else ():
        if not isinstance(entry, LocMap) or not isinstance(entry.get("id"), str):
            continue
        conditions = []
        for key, value in entry.items():
            field_name, negate = LIST_CONDITIONS.get(key, ("", False))
            if field_name in ("agent", "environment"):
                conditions.append((field_name, negate, _strings(value)))
        result[str(entry["id"])] = conditions
    return result


def _actions(document: LocMap) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for section in ("budgets", "velocity"):
        entries = document.get(section)
        for entry in entries if isinstance(entries, list) else ():
            if isinstance(entry, LocMap) and "actions" in entry:
                result[f"{section}:{entry.get('id')}"] = _strings(entry["actions"])
    return result


def budget_views(
    policy: CompiledPolicy, statuses: list[BudgetStatus], agent: str, filters: Filters
) -> list[BudgetView]:
    """Every budget that counts this agent's payments, with its use where one bucket is its."""
    index = {(status.budget_id, status.scope_key): status for status in statuses}
    views = []
    for spec in policy.budgets:
        if spec.agents is not None and not spec.agents.matches(agent):
            continue
        key = "*" if spec.scope == "global" else agent if spec.scope == "agent" else None
        actions = filters.actions.get(f"budgets:{spec.budget_id}")
        views.append(_budget_view(spec, key, index.get((spec.budget_id, key or "")), actions))
    return views


def _budget_view(
    spec: BudgetSpec, key: str | None, status: BudgetStatus | None, actions: list[str] | None
) -> BudgetView:
    exponent = spec.limit.exponent
    limit_minor = spec.limit.amount_minor
    spent = held = None
    gate: str | None = None
    if key is not None:
        spent = status.spent_minor if status else 0
        held = status.held_minor if status else 0
        gate = status.gate if status else "ok"
    remaining = None if spent is None or held is None else max(limit_minor - spent - held, 0)
    scope_words = _SCOPE_WORDS.get(spec.scope, spec.scope)
    summary = f"budget `{spec.budget_id}`: {spec.limit} per {spec.window}, {scope_words}"
    if actions:
        summary += f", for actions {', '.join(actions)}"
    if remaining is not None:
        summary += f"; {format_minor(remaining, exponent)} {spec.limit.currency} left now"
    return BudgetView(
        budget_id=spec.budget_id,
        scope=spec.scope,
        scope_key=key,
        window=str(spec.window),
        currency=spec.limit.currency,
        limit=format_minor(limit_minor, exponent),
        limit_minor=limit_minor,
        spent_minor=spent,
        held_minor=held,
        remaining_minor=remaining,
        remaining=None if remaining is None else format_minor(remaining, exponent),
        gate=gate,
        actions=actions,
        summary=summary,
    )


def _velocity_view(spec: VelocitySpec, actions: list[str] | None) -> VelocityView:
    parts = []
    if spec.max_count is not None:
        parts.append(f"at most {spec.max_count} payments per {spec.window_seconds}s")
    if spec.cooldown_seconds:
        parts.append(f"{spec.cooldown_seconds}s between payments")
    summary = f"limit `{spec.velocity_id}`: {' and '.join(parts)}, "
    summary += _SCOPE_WORDS.get(spec.scope, spec.scope)
    if actions:
        summary += f", for actions {', '.join(actions)}"
    return VelocityView(
        velocity_id=spec.velocity_id,
        scope=spec.scope,
        max_count=spec.max_count,
        window_seconds=spec.window_seconds,
        cooldown_seconds=spec.cooldown_seconds,
        actions=actions,
        summary=summary,
    )


def _rule_view(rule_id: str, effect: Effect, conditions: tuple[str, ...], reason: str) -> RuleView:
    return RuleView(
        rule_id=rule_id,
        effect=effect,
        conditions=list(conditions),
        reason=reason,
    )


def limits_view(
    policy: CompiledPolicy | None,
    statuses: list[BudgetStatus],
    agent: str,
    environment: str | None,
    filters: Filters,
) -> LimitsView:
    if policy is None:
        return LimitsView(
            agent=agent,
            environment=environment,
            policy_version=None,
            default_currency=None,
            summary=["no usable policy is loaded, so every payment is denied"],
            rules=[],
            budgets=[],
            velocity=[],
            approvals_ttl_seconds=None,
            two_person_above=None,
        )
    rules = [
        _rule_view(rule.rule_id, rule.effect, rule.conditions, rule.reason)
        for index in (*policy.deny_rules, *policy.approval_rules, *policy.allow_rules)
        if filters.rule_applies((rule := policy.rules[index]).rule_id, agent, environment)
    ]
    budgets = budget_views(policy, statuses, agent, filters)
    velocity = [
        _velocity_view(spec, filters.actions.get(f"velocity:{spec.velocity_id}"))
        for spec in policy.velocity
        if spec.agents is None or spec.agents.matches(agent)
    ]
    return LimitsView(
        agent=agent,
        environment=environment,
        policy_version=policy.version,
        default_currency=policy.currency,
        summary=_summary(rules, budgets, velocity),
        rules=rules,
        budgets=budgets,
        velocity=velocity,
        approvals_ttl_seconds=policy.approvals.ttl_seconds,
        two_person_above=(
            str(policy.approvals.two_person_above) if policy.approvals.two_person_above else None
        ),
    )


def _summary(
    rules: list[RuleView], budgets: list[BudgetView], velocity: list[VelocityView]
) -> list[str]:
    lines = [
        "any deny wins, then require_approval, then allow; a payment no allow rule matches "
        "is denied"
    ]
    for rule in rules:
        when = " and ".join(rule.conditions) or "every payment"
        lines.append(f"rule `{rule.rule_id}`: {when} {_EFFECT_WORDS[rule.effect]}")
    lines.extend(budget.summary for budget in budgets)
    lines.extend(limit.summary for limit in velocity)
    return lines
