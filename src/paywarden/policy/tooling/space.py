"""The partition of the input space that one or more policies define, one intent per cell.

Every structured condition splits one dimension at known points: a list splits its field into
each listed value and "anything else" (and "absent" for optional fields), an amount threshold
splits amounts at that minor unit (converted through each policy's FX rates), a time window
splits the week at its days and hours in the policy's zone, a budget gate or ratio splits the
budget's use. Inside a cell every structured condition answers the same way, so evaluating one
representative per cell, with the real evaluator, decides every intent. What the partition
cannot capture (CEL, overlapping glob patterns) is listed in `undecided`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from fractions import Fraction

from paywarden import limits
from paywarden.errors import InvalidInputError
from paywarden.intent import PaymentIntent
from paywarden.ledger.usage import apply_budget_gates, budget_claims, budget_trace
from paywarden.money import Money
from paywarden.policy.compiler import CompiledPolicy
from paywarden.policy.decision import Decision
from paywarden.policy.evaluator import evaluate
from paywarden.policy.facts import StateSnapshot
from paywarden.policy.tooling.shapes import RuleShape

OTHER = {
    "agent": "zz-other-agent",
    "action": "zz.other",
    "recipient": "zz-other-payee.example",
    "environment": "zz-other",
    "category": "zz-other",
    "rail": "zz-other",
}
OPTIONAL_FIELDS = ("environment", "category", "rail")
PHASES = ("EXPLORE", "DECIDE", "COMMIT")
OTHER_CURRENCIES = ("CHF", "SEK", "JPY", "NOK")
REFERENCE_MONDAY = (2026, 1, 5)  # a week with no DST change in the northern hemisphere
DEFAULT_NOW = datetime(2026, 1, 7, 15, 0, tzinfo=UTC)
CELLS_MAX = 200_000


@dataclass(frozen=True, slots=True)
class Point:
    """One representative: an intent, a session phase, an instant, each budget's use."""

    intent: PaymentIntent
    phase: str | None
    now: datetime
    used: tuple[tuple[str, int], ...]  # (budget id, spent + held + this amount) in minor units

    def describe(self) -> str:
        intent = self.intent
        parts = [
            f"{intent.action} {intent.amount} by {intent.agent} to {intent.recipient}",
            *(
                f"{name} {getattr(intent, name)}"
                for name in OPTIONAL_FIELDS
                if getattr(intent, name)
            ),
        ]
        if self.phase:
            parts.append(f"phase {self.phase}")
        parts.append(f"at {self.now.isoformat()}")
        parts.extend(f"budget {b} used {u} minor units" for b, u in self.used if u)
        return ", ".join(parts)


@dataclass(slots=True)
class Space:
    points: list[Point]
    undecided: list[str] = field(default_factory=list)
    undecided_fields: frozenset[str] = frozenset()  # list fields with overlapping globs


Policy = tuple[CompiledPolicy, Sequence[RuleShape]]


def build_space(policies: Sequence[Policy], cells_max: int = CELLS_MAX) -> Space:
    """One point per cell of the partition the policies' structured conditions define."""
    undecided: list[str] = []
    values = {name: _list_values(policies, name, undecided) for name in OTHER}
    values["phase"] = _phases(policies)
    currencies = _currencies(policies)
    amounts = {code: _amounts(policies, code) for code in currencies}
    instants = _instants(policies)
    usage = _usage_levels(policies)
    for _, shapes in policies:
        undecided.extend(
            f"rule `{s.rule_id}` (line {s.mark.line}) has a CEL `when:` condition"
            for s in shapes
            if s.cel is not None
        )
        undecided.extend(
            f"rule `{s.rule_id}` (line {s.mark.line}) has an `anomaly:` condition (the points "
            "read no unusual history)"
            for s in shapes
            if s.anomaly
        )
    money = [
        Money(a, code, _exponent(policies, code)) for code in currencies for a in amounts[code]
    ]
    intent_dims: list[Sequence[object]] = [values[name] for name in OTHER]
    state_dims: list[Sequence[object]] = [
        values["phase"],
        instants,
        *[[(budget_id, level) for level in levels] for budget_id, levels in usage],
    ]
    size = math.prod([len(d) for d in (*intent_dims, money, *state_dims)])
    if size > cells_max:
        undecided.append(f"the partition has {size} cells; only the first {cells_max} are checked")
    intents = _intents(intent_dims, money, policies[0][0])
    states = list(itertools.product(*state_dims))
    points = [
        Point(intent, phase, now, tuple(used))  # type: ignore[arg-type]
        for intent, (phase, now, *used) in itertools.islice(
            itertools.product(intents, states), cells_max
        )
    ]
    fields = frozenset(name for name in OTHER if any(f"`{name}` patterns" in u for u in undecided))
    return Space(points, sorted(set(undecided)), fields)


def _intents(
    dims: Sequence[Sequence[object]], money: Sequence[Money], policy: CompiledPolicy
) -> list[PaymentIntent]:
    intents = []
    for agent, action, recipient, environment, category, rail in itertools.product(*dims):
        for amount in money:
            try:
                intent = PaymentIntent(
                    agent=str(agent),
                    action=str(action),
                    amount=amount,
                    recipient=str(recipient),
                    environment=environment,  # type: ignore[arg-type]
                    category=category,  # type: ignore[arg-type]
                    rail=rail,  # type: ignore[arg-type]
                    currencies=policy.currencies,
                )
            except InvalidInputError:
                continue  # a value no intent can carry: the intent validation refuses it
            intents.append(intent)
    return intents


def decide(policy: CompiledPolicy, point: Point) -> Decision:
    """The policy's decision at `point`: the evaluator, then the ledger's budget gates."""
    claims = budget_claims(policy, point.intent, point.now)
    used = dict(point.used)
    traces = [
        budget_trace(
            claim, max(used.get(claim.spec.budget_id, 0) - (claim.amount_minor or 0), 0), 0
        )
        for claim in claims
    ]
    state = StateSnapshot(phase=point.phase, budgets=tuple(traces))
    return apply_budget_gates(evaluate(policy, point.intent, state, point.now), claims, traces)


def _list_values(policies: Sequence[Policy], name: str, undecided: list[str]) -> list[object]:
    exact: set[str] = set()
    globs: set[str] = set()
    for policy, shapes in policies:
        for shape in shapes:
            for condition in shape.lists:
                if condition.field == name:
                    globs.update(condition.globs)
                    exact.update(v for v in condition.values if v not in condition.globs)
        if name in ("agent", "action"):
            specs = [(b.agents, b.actions) for b in policy.budgets]
            specs += [(v.agents, v.actions) for v in policy.velocity]
            for agents, actions in specs:
                patterns = agents if name == "agent" else actions
                if patterns is not None:
                    exact.update(patterns.exact)
    if not exact and not globs:
        return [None] if name in OPTIONAL_FIELDS else [OTHER[name]]
    if (name == "recipient" and globs) or len(globs) > 1:
        undecided.append(f"`{name}` patterns {', '.join(sorted(globs))} may overlap")
    values: list[object] = []
    values.extend(sorted(exact))
    if name == "recipient":
        values.extend(sorted({v.swapcase() for v in exact} - exact))
    values.extend(_glob_sample(glob) for glob in sorted(globs))
    values.append(OTHER[name])
    if name in OPTIONAL_FIELDS:
        values.append(None)
    return values


def _glob_sample(glob: str) -> str:
    return glob.replace("*", "zz").replace("?", "z").replace("[", "").replace("]", "")


def _phases(policies: Sequence[Policy]) -> list[object]:
    phases: set[str] = set(PHASES)
    for policy, shapes in policies:
        phases.update(policy.sessions.payment_phases)
        for shape in shapes:
            for condition in shape.lists:
                if condition.field == "phase":
                    phases.update(v for v in condition.values if not condition.globs)
    # Every phase, even where no rule names one: a session outside the payment phases is
    # denied by the evaluator itself, and the payment phases may differ between policies.
    return [None, *sorted(phases)]


def _currencies(policies: Sequence[Policy]) -> list[str]:
    codes: set[str] = set()
    for policy, shapes in policies:
        codes.add(policy.currency)
        codes.update(c for pair in policy.fx.rates for c in pair)
        codes.update(b.limit.currency for b in policy.budgets)
        for shape in shapes:
            codes.update(bound.threshold.currency for bound in shape.amounts)
            for condition in shape.lists:
                if condition.field == "currency" and not condition.globs:
                    codes.update(condition.values)
    table = policies[0][0].currencies
    codes = {code for code in codes if code in table}
    codes.add(next(code for code in OTHER_CURRENCIES if code not in codes))
    return sorted(codes)


def _exponent(policies: Sequence[Policy], code: str) -> int:
    return policies[0][0].currencies.exponent(code)


def _amounts(policies: Sequence[Policy], code: str) -> list[int]:
    """Amount points in `code`: each threshold, converted when needed, and one unit either side."""
    exponent = _exponent(policies, code)
    boundaries: set[Fraction] = set()
    for policy, shapes in policies:
        thresholds = [
            (Fraction(b.threshold.amount_minor), b.threshold.currency, b.threshold.exponent)
            for shape in shapes
            for b in shape.amounts
        ]
        for budget in policy.budgets:
            limit = budget.limit
            thresholds.extend(
                (limit.amount_minor * fraction, limit.currency, limit.exponent)
                for fraction in _budget_fractions(policy, budget.budget_id, shapes)
            )
        for minor, currency, source_exponent in thresholds:
            rate = policy.fx.rate(currency, code)
            if rate is not None:
                boundaries.add(minor * rate * Fraction(10) ** (exponent - source_exponent))
    points = {1}
    for boundary in boundaries:
        points.update(cuts(boundary))
    return sorted(p for p in points if 1 <= p <= limits.amount_minor_max)


def cuts(boundary: Fraction) -> set[int]:
    """Where comparisons with `boundary` (<, <=, >, >=) can change their answer, as the first
    integer of each run that answers alike: the boundary itself and the next integer, or the
    integer just above a boundary that is not one."""
    if boundary.denominator == 1:
        return {int(boundary), int(boundary) + 1}
    return {math.ceil(boundary)}


def _budget_fractions(
    policy: CompiledPolicy, budget_id: str, shapes: Sequence[RuleShape]
) -> set[Fraction]:
    budget = next(b for b in policy.budgets if b.budget_id == budget_id)
    gates = budget.gates
    fractions = {Fraction(1), *(g for g in (gates.warn, gates.restrict, gates.halt) if g)}
    for shape in shapes:
        fractions.update(r.threshold for r in shape.ratios if r.budget_id in (None, budget_id))
    return fractions


def _usage_levels(policies: Sequence[Policy]) -> list[tuple[str, list[int]]]:
    levels: dict[str, set[int]] = {}
    for policy, shapes in policies:
        for budget in policy.budgets:
            found = levels.setdefault(budget.budget_id, {0})
            for fraction in _budget_fractions(policy, budget.budget_id, shapes):
                found.update(cuts(budget.limit.amount_minor * fraction))
    return sorted((budget_id, sorted(values)) for budget_id, values in levels.items())


def _instants(policies: Sequence[Policy]) -> list[datetime]:
    """The start of each run of local time between window edges (on each weekday when a window
    names days), in every policy's zone; a single instant when no rule has a window."""
    schedules = [sc for _, shapes in policies for shape in shapes for sc in shape.schedules]
    if not schedules:
        return [DEFAULT_NOW]
    edges: set[time] = {time(0, 0)}
    for schedule in schedules:
        if schedule.hours is not None:
            edges.update(edge for edge in schedule.hours if edge != time.max)
    days = range(7) if any(schedule.days is not None for schedule in schedules) else range(1)
    year, month, first = REFERENCE_MONDAY
    instants: set[datetime] = set()
    for policy, _ in policies:
        for offset, edge in itertools.product(days, edges):
            day = date(year, month, first + offset)
            local = datetime.combine(day, edge, tzinfo=policy.timezone)
            instants.add(local.astimezone(UTC))
    return sorted(instants)
