"""The policy's `alerts:` rules: what paywarden tells operators about, once per occurrence.

```yaml
alerts:
  - {id: budget-80, kind: budget_threshold, percent: [80, 95], gates: true}
  - {id: big-payment, kind: large_transaction, amount: 5000}
  - {id: spike, kind: rate_spike}
  - {id: rail-down, kind: breaker_opened}
  - {id: halted, kind: halt}
  - {id: slow-approvals, kind: approval_waiting, after: 30m}
  - {id: audit-broken, kind: audit_failure}
```

`budget_threshold` fires once per budget, scope value, window and threshold when the budget's
use (spent + held) reaches a percentage (`percent`) or, with `gates: true`, a gate of the budget
(`warn`, `restrict`, `halt`); `budgets` limits it to some budget ids. `large_transaction` fires
for each decision whose amount is at least `amount` (policy currency by default, converted with
the policy's `fx`); `outcomes` limits it to some outcomes. Each alert is raised, audited and
delivered by `paywarden.alerting`; docs/observability.md explains when each kind fires.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction

from paywarden.money import Money
from paywarden.policy.anomaly import AnomalySettings
from paywarden.policy.approval_settings import duration_seconds
from paywarden.policy.document import LocList, LocMap, Mark
from paywarden.policy.rules import RuleContext, parse_threshold, string_list

# kind -> the keys a rule of that kind may have besides `id`, `kind` and `description`.
KINDS: dict[str, frozenset[str]] = {
    "budget_threshold": frozenset({"percent", "gates", "budgets"}),
    "large_transaction": frozenset({"amount", "outcomes"}),
    "rate_spike": frozenset(),
    "breaker_opened": frozenset({"rails"}),
    "halt": frozenset(),
    "approval_waiting": frozenset({"after"}),
    "audit_failure": frozenset(),
}
OUTCOMES = ("allow", "require_approval", "deny")
ALERT_RULES_MAX = 100
_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z")


@dataclass(frozen=True, slots=True)
class AlertRule:
    rule_id: str
    kind: str
    percents: tuple[Fraction, ...] = ()  # budget_threshold: fractions of the limit, ascending
    gates: bool = False  # budget_threshold: each gate of the budget too
    budgets: frozenset[str] | None = None  # budget_threshold: these budgets only
    amount: Money | None = None  # large_transaction: at least this much
    outcomes: frozenset[str] = frozenset(OUTCOMES)  # large_transaction: for these outcomes
    rails: frozenset[str] | None = None  # breaker_opened: these rails only
    after_seconds: int = 0  # approval_waiting: pending for longer than this


@dataclass(frozen=True, slots=True)
class AlertSettings:
    rules: tuple[AlertRule, ...] = ()

    def of_kind(self, kind: str) -> tuple[AlertRule, ...]:
        return tuple(rule for rule in self.rules if rule.kind == kind)


def with_alert_reads(anomaly: AnomalySettings, alerts: AlertSettings) -> AnomalySettings:
    """The anomaly settings reading `rate_spike` too when an alert rule needs it (a decision
    reads only the anomaly facts something uses)."""
    if not alerts.of_kind("rate_spike") or "rate_spike" in anomaly.reads:
        return anomaly
    return replace(anomaly, reads=anomaly.reads | {"rate_spike"})


def compile_alert_settings(value: object, ctx: RuleContext, mark: Mark) -> AlertSettings:
    if value is None:
        return AlertSettings()
    if not isinstance(value, LocList) or len(value) > ALERT_RULES_MAX:
        ctx.error(f"`alerts` must be a list of at most {ALERT_RULES_MAX} alert rules", mark)
        return AlertSettings()
    rules: list[AlertRule] = []
    seen: set[str] = set()
    for index, entry in enumerate(value):
        rule = _compile_rule(entry, ctx, value.mark_of(index), seen)
        if rule is not None:
            rules.append(rule)
    return AlertSettings(tuple(rules))


def _compile_rule(entry: object, ctx: RuleContext, mark: Mark, seen: set[str]) -> AlertRule | None:
    if not isinstance(entry, LocMap):
        ctx.error("an alert rule must be a mapping with `id` and `kind`", mark)
        return None
    rule_id, kind = entry.get("id"), entry.get("kind")
    if not isinstance(rule_id, str) or _ID.match(rule_id) is None or rule_id in seen:
        ctx.error("an alert rule needs a unique `id` (letters, digits, `_.:-`)", mark)
        return None
    seen.add(rule_id)
    if kind not in KINDS:
        ctx.error(f"alert `{rule_id}`: `kind` must be one of {', '.join(KINDS)}", mark)
        return None
    unknown = set(entry) - {"id", "kind", "description"} - KINDS[kind]
    if unknown:
        ctx.error(f"alert `{rule_id}`: unknown key `{sorted(unknown)[0]}` for kind `{kind}`", mark)
        return None
    rule = AlertRule(rule_id, kind)
    if kind == "budget_threshold":
        return _budget_rule(rule, entry, ctx, mark)
    if kind == "large_transaction":
        return _large_rule(rule, entry, ctx, mark)
    if kind == "breaker_opened" and "rails" in entry:
        rails = string_list(entry["rails"], "rails", ctx, entry.mark_of("rails"))
        return None if rails is None else replace(rule, rails=frozenset(rails))
    if kind == "approval_waiting":
        after = duration_seconds(entry.get("after"), ctx, entry.mark_of("after"), "after")
        return None if after is None else replace(rule, after_seconds=after)
    return rule


def _budget_rule(rule: AlertRule, entry: LocMap, ctx: RuleContext, mark: Mark) -> AlertRule | None:
    raw = entry.get("percent", [])
    raw = raw if isinstance(raw, list) else [raw]
    percents: set[Fraction] = set()
    for item in raw:
        if isinstance(item, bool) or not isinstance(item, Decimal | int) or not 0 < item <= 1000:
            ctx.error(f"alert `{rule.rule_id}`: `percent` must be numbers above 0, to 1000", mark)
            return None
        percents.add(Fraction(item) / 100)
    gates = entry.get("gates", False)
    if not isinstance(gates, bool) or (not gates and not percents):
        ctx.error(f"alert `{rule.rule_id}`: give `percent`, or `gates: true`, or both", mark)
        return None
    budgets = None
    if "budgets" in entry:
        names = string_list(entry["budgets"], "budgets", ctx, entry.mark_of("budgets"))
        if names is None:
            return None
        unknown = [name for name in names if name not in ctx.budget_ids]
        if unknown:
            ctx.error(f"alert `{rule.rule_id}`: no budget `{unknown[0]}`", mark)
            return None
        budgets = frozenset(names)
    return replace(rule, percents=tuple(sorted(percents)), gates=gates, budgets=budgets)


def _large_rule(rule: AlertRule, entry: LocMap, ctx: RuleContext, mark: Mark) -> AlertRule | None:
    amount = parse_threshold(
        entry.get("amount"), ctx.default_currency, ctx, entry.mark_of("amount")
    )
    if amount is None:
        return None
    outcomes = frozenset(OUTCOMES)
    if "outcomes" in entry:
        names = string_list(entry["outcomes"], "outcomes", ctx, entry.mark_of("outcomes"))
        if names is None or not set(names) <= outcomes:
            ctx.error(f"alert `{rule.rule_id}`: `outcomes` are {', '.join(OUTCOMES)}", mark)
            return None
        outcomes = frozenset(names)
    return replace(rule, amount=amount, outcomes=outcomes)
