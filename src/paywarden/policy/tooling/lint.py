"""`policy lint`: rules that cannot do what they seem to, with line:column and a code.

Each rule is evaluated, with the compiled policy's own checks, on one intent per cell of the
partition its structured conditions define (`space`), so "never matches" and "shadowed" are
facts about every intent, not about samples. A rule with a CEL condition, or a field with
overlapping glob patterns, gets only the findings that do not depend on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from paywarden.ledger.usage import budget_claims, budget_trace
from paywarden.policy.budgets import applies
from paywarden.policy.compiler import CompiledPolicy, CompiledRule
from paywarden.policy.facts import EMPTY_STATE, Facts, StateSnapshot
from paywarden.policy.report import Problem
from paywarden.policy.tooling.shapes import RuleShape, rule_shapes
from paywarden.policy.tooling.space import Point, build_space

CODES = {
    "PW100": "compile warning (as `paywarden policy validate` reports it)",
    "PW101": "rule shadowed by an earlier or stronger rule",
    "PW102": "rule can never match",
    "PW103": "allow rule with no amount cap",
    "PW104": "allow and deny rules overlap with no clear winner",
    "PW105": "budget no allowing rule can reach",
    "PW106": "CEL expression errors on every intent that reaches it",
    "PW107": "currency compared or budgeted without an FX rate",
    "PW108": "empty time window",
}
_STRENGTH = {"deny": 0, "require_approval": 1, "allow": 2}


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    problem: Problem

    def format(self, source: str) -> str:
        return self.problem.format(source).replace(": warning", f": warning {self.code}", 1)

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, **self.problem.to_dict()}


@dataclass(slots=True)
class RuleHits:
    """Per rule, the points (as bits of an int) where it matched and where it raised."""

    matched: int = 0
    errors: int = 0


def lint_policy(text: str, policy: CompiledPolicy) -> list[Finding]:
    """Every finding for a compiled policy, compile warnings first, then by line."""
    shapes = rule_shapes(text, policy)
    space = build_space([(policy, shapes)])
    hits = _hits(policy, space.points)
    undecided_fields = space.undecided_fields
    # A `mode: log_only` rule never decides: it neither shadows nor overlaps nor allows.
    enforced = [i not in policy.log_only_rules for i in range(len(shapes))]
    decided = [
        s.cel is None and not s.anomaly and not (_fields(s) & undecided_fields) and enforced[i]
        for i, s in enumerate(shapes)
    ]
    findings = [Finding("PW100", p) for p in policy.report.warnings]
    found: list[Finding] = []
    found += _never_matches(policy, shapes, hits, decided, space.points)
    found += _shadowed(policy, shapes, hits, decided)
    found += _uncapped(
        [s for s, e in zip(shapes, enforced, strict=True) if e],
        [h for h, e in zip(hits, enforced, strict=True) if e],
    )
    found += _overlaps(policy, shapes, hits, decided, space.points)
    found += _unreachable_budgets(policy, hits, space.points)
    found += _currencies_without_fx(policy, shapes)
    found += _empty_windows(policy, shapes, space.points)
    return findings + sorted(found, key=_position)


def _position(finding: Finding) -> tuple[int, int, str]:
    mark = finding.problem.mark
    return (mark.line, mark.column, finding.code) if mark else (0, 0, finding.code)


def _hits(policy: CompiledPolicy, points: Sequence[Point]) -> list[RuleHits]:
    hits = [RuleHits() for _ in policy.rules]
    for bit, point in enumerate(points):
        facts = _facts(policy, point)
        for rule, hit in zip(policy.rules, hits, strict=True):
            try:
                if rule.matches(facts):
                    hit.matched |= 1 << bit
            except Exception:  # a rule that raises fails closed in the evaluator
                hit.errors |= 1 << bit
    return hits


def _facts(policy: CompiledPolicy, point: Point) -> Facts:
    claims = budget_claims(policy, point.intent, point.now)
    used = dict(point.used)
    traces = tuple(
        budget_trace(c, max(used.get(c.spec.budget_id, 0) - (c.amount_minor or 0), 0), 0)
        for c in claims
    )
    state = StateSnapshot(phase=point.phase, budgets=traces)
    return Facts(point.intent, state, point.now, policy.timezone)


def _fields(shape: RuleShape) -> set[str]:
    return {condition.field for condition in shape.lists}


def _warn(code: str, message: str, shape: RuleShape | None, mark: object = None) -> Finding:
    where = mark if mark is not None else (shape.mark if shape else None)
    rule_id = shape.rule_id if shape else None
    return Finding(code, Problem("warning", message, where, rule_id))  # type: ignore[arg-type]


def _never_matches(
    policy: CompiledPolicy,
    shapes: list[RuleShape],
    hits: list[RuleHits],
    decided: list[bool],
    points: Sequence[Point],
) -> list[Finding]:
    found = []
    for index, (shape, hit, sure) in enumerate(zip(shapes, hits, decided, strict=True)):
        if hit.matched:
            continue
        if shape.cel is not None and _cel_always_fails(policy, policy.rules[index], points):
            found.append(
                _warn(
                    "PW106",
                    "the `when:` expression fails on every intent that reaches it; "
                    "the rule never matches and each such intent is denied (rule_error)",
                    shape,
                    shape.cel[1],
                )
            )
        elif sure:
            why = (
                "every intent that passes its other conditions fails its amount comparison "
                "(no fx rate)"
                if hit.errors
                else "its conditions exclude each other"
            )
            found.append(_warn("PW102", f"the rule can never match: {why}", shape))
    return found


def _cel_always_fails(policy: CompiledPolicy, rule: CompiledRule, points: Sequence[Point]) -> bool:
    """The rule's CEL check (its last: the compiler orders CEL after every other condition)
    raises on every point where the rule's other conditions hold, and there is such a point."""
    *others, cel = rule.checks
    reached = False
    for point in points:
        facts = _facts(policy, point)
        try:
            if not all(check(facts) for check in others):
                continue
        except Exception:  # another condition failed first: CEL is not reached
            continue
        reached = True
        try:
            cel(facts)
        except Exception:  # the expression failed, as the evaluator would see it
            continue
        return False
    return reached


def _shadowed(
    policy: CompiledPolicy, shapes: list[RuleShape], hits: list[RuleHits], decided: list[bool]
) -> list[Finding]:
    found = []
    for index, (shape, hit) in enumerate(zip(shapes, hits, strict=True)):
        if not hit.matched or not decided[index]:
            continue
        for other_index, other in enumerate(shapes):
            if other_index == index or not decided[other_index]:
                continue
            stronger = _STRENGTH[other.effect] < _STRENGTH[shape.effect]
            earlier = other.effect == shape.effect and other_index < index
            if (stronger or earlier) and hit.matched & ~hits[other_index].matched == 0:
                what = "the earlier" if earlier else f"the {other.effect}"
                found.append(
                    _warn(
                        "PW101",
                        f"shadowed: every intent it matches also matches {what} rule "
                        f"`{other.rule_id}` (line {other.mark.line}), so it never decides",
                        shape,
                    )
                )
                break
    return found


def _uncapped(shapes: list[RuleShape], hits: list[RuleHits]) -> list[Finding]:
    return [
        _warn(
            "PW103",
            "allow rule with no amount cap (`amount: {lte: ...}`): any amount it "
            "matches is allowed, up to the budgets",
            shape,
        )
        for shape, hit in zip(shapes, hits, strict=True)
        if shape.effect == "allow" and hit.matched and not shape.has_cap and shape.cel is None
    ]


def _overlaps(
    policy: CompiledPolicy,
    shapes: list[RuleShape],
    hits: list[RuleHits],
    decided: list[bool],
    points: Sequence[Point],
) -> list[Finding]:
    found = []
    for i, allow in enumerate(shapes):
        if allow.effect != "allow" or not decided[i]:
            continue
        for j, deny in enumerate(shapes):
            if deny.effect != "deny" or not decided[j]:
                continue
            a, d = hits[i].matched, hits[j].matched
            both = a & d
            if both and a & ~d and d & ~a and _share_a_dimension(allow, deny):
                witness = points[(both & -both).bit_length() - 1].describe()
                found.append(
                    _warn(
                        "PW104",
                        f"overlaps deny rule `{deny.rule_id}` (line {deny.mark.line})"
                        f" and neither contains the other; the deny wins on intents such as: "
                        f"{witness}",
                        allow,
                    )
                )
    return found


def _share_a_dimension(first: RuleShape, second: RuleShape) -> bool:
    """Both rules constrain one same dimension, differently (a list field, the amount, the
    time, a budget ratio): they disagree about the same thing, rather than one adding an
    unrelated restriction to the other."""
    for name in _fields(first) & _fields(second):
        if _list_key(first, name) != _list_key(second, name):
            return True
    pairs = (
        (_amount_key(first), _amount_key(second)),
        (_schedule_key(first), _schedule_key(second)),
        (_ratio_key(first), _ratio_key(second)),
    )
    return any(one and other and one != other for one, other in pairs)


def _list_key(shape: RuleShape, name: str) -> set[tuple[tuple[str, ...], bool]]:
    return {(tuple(sorted(c.values)), c.negate) for c in shape.lists if c.field == name}


def _amount_key(shape: RuleShape) -> set[tuple[str, object]]:
    return {(b.op, b.threshold) for b in shape.amounts}


def _schedule_key(shape: RuleShape) -> set[tuple[object, ...]]:
    return {(sc.negate, sc.days, sc.hours) for sc in shape.schedules}


def _ratio_key(shape: RuleShape) -> set[tuple[object, ...]]:
    return {(r.op, r.threshold, r.budget_id) for r in shape.ratios}


def _unreachable_budgets(
    policy: CompiledPolicy, hits: list[RuleHits], points: Sequence[Point]
) -> list[Finding]:
    rules: Sequence[CompiledRule] = policy.rules
    opening = 0
    for rule, hit in zip(rules, hits, strict=True):
        if rule.effect != "deny":
            opening |= hit.matched
    found = []
    for budget in policy.budgets:
        reached = any(
            opening >> bit & 1
            and applies(budget.agents, budget.actions, point.intent.agent, point.intent.action)
            for bit, point in enumerate(points)
        )
        if not reached:
            found.append(
                Finding(
                    "PW105",
                    Problem(
                        "warning",
                        f"budget `{budget.budget_id}` applies to no intent an allow or "
                        "require_approval rule matches, so it never counts anything",
                        budget.mark,
                    ),
                )
            )
    return found


def _currencies_without_fx(policy: CompiledPolicy, shapes: list[RuleShape]) -> list[Finding]:
    named = {policy.currency}
    for shape in shapes:
        for condition in shape.lists:
            if condition.field == "currency" and not condition.negate:
                named.update(v for v in condition.values if v not in condition.globs)
    found = []
    for shape in shapes:
        reaching = set(named)
        for condition in shape.lists:
            if condition.field == "currency" and not condition.negate and not condition.globs:
                reaching &= set(condition.values)  # other currencies never reach the amount
        for threshold in sorted({bound.threshold.currency for bound in shape.amounts}):
            missing = sorted(c for c in reaching if policy.fx.rate(c, threshold) is None)
            if missing:
                mark = next(b.mark for b in shape.amounts if b.threshold.currency == threshold)
                found.append(
                    _warn(
                        "PW107",
                        f"compares amounts in {threshold}, but the policy names "
                        f"{', '.join(missing)} with no fx rate to it: such intents are "
                        "denied with rule_error",
                        shape,
                        mark,
                    )
                )
    for budget in policy.budgets:
        missing = sorted(c for c in named if policy.fx.rate(c, budget.limit.currency) is None)
        if missing:
            found.append(
                Finding(
                    "PW107",
                    Problem(
                        "warning",
                        f"budget `{budget.budget_id}` counts {budget.limit.currency}, but the "
                        f"policy names {', '.join(missing)} with no fx rate to it: such intents "
                        "are denied (currency_not_convertible)",
                        budget.mark,
                    ),
                )
            )
    return found


def _empty_windows(
    policy: CompiledPolicy, shapes: list[RuleShape], points: Sequence[Point]
) -> list[Finding]:
    """Windows the compiler's own check finds no instant in, over every run of the week."""
    if not points:
        return []
    instants = sorted({point.now for point in points})
    intent = points[0].intent
    found = []
    for shape in shapes:
        for schedule in shape.schedules:
            check = schedule.check
            if check is None:
                continue
            if not any(check(Facts(intent, EMPTY_STATE, now, policy.timezone)) for now in instants):
                found.append(
                    _warn(
                        "PW108",
                        "the time window is empty: no instant of the week is in it",
                        shape,
                        schedule.mark,
                    )
                )
    return found
