"""What each rule's conditions are, as values, with where each is written.

The compiler turns conditions into closures; lint and diff also need to see them: which values
a list names, which thresholds an amount has, which hours a window covers. This module reads the
same native document the compiler reads (after the same dialect import) and keeps exactly that,
for compiled rules only. Deciding stays with the compiled policy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import time
from decimal import Decimal
from fractions import Fraction

from paywarden.errors import InvalidInputError
from paywarden.money import Money
from paywarden.policy import dialects
from paywarden.policy.compiler import FLAT_AMOUNT, LIST_CONDITIONS, CompiledPolicy
from paywarden.policy.document import LocList, LocMap, Mark, load_document
from paywarden.policy.facts import WEEKDAYS
from paywarden.policy.recipients import GLOB_CHARS
from paywarden.policy.report import CompileReport
from paywarden.policy.rules import COMPARISONS, Check, RuleContext, schedule_check

ListField = str  # an intent field (`action`, `currency`, ...) or `phase`


@dataclass(frozen=True, slots=True)
class ListCondition:
    field: ListField
    values: tuple[str, ...]  # normalised as the compiler normalises them
    negate: bool
    mark: Mark

    @property
    def globs(self) -> tuple[str, ...]:
        return tuple(v for v in self.values if any(c in v for c in GLOB_CHARS))


@dataclass(frozen=True, slots=True)
class AmountBound:
    op: str  # gt, gte, lt, lte
    threshold: Money
    mark: Mark


@dataclass(frozen=True, slots=True)
class Schedule:
    negate: bool  # `outside:` rather than `during:`
    days: frozenset[int] | None
    hours: tuple[time, time] | None
    mark: Mark
    check: Check | None = None  # the compiler's own check of this window


@dataclass(frozen=True, slots=True)
class RatioBound:
    op: str
    threshold: Fraction
    budget_id: str | None
    mark: Mark


@dataclass(slots=True)
class RuleShape:
    rule_id: str
    effect: str
    mark: Mark
    lists: list[ListCondition] = field(default_factory=list)
    amounts: list[AmountBound] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)
    ratios: list[RatioBound] = field(default_factory=list)
    cel: tuple[str, Mark] | None = None
    anomaly: bool = False  # an `anomaly:` condition: facts of the stored history, not modelled

    @property
    def has_cap(self) -> bool:
        return any(bound.op in ("lt", "lte") for bound in self.amounts)


def rule_shapes(text: str, policy: CompiledPolicy) -> list[RuleShape]:
    """The shape of every compiled rule of `policy`, compiled from `text`, in policy order."""
    document = native_document(text)
    entries = document.get("rules") if document is not None else None
    by_id: dict[str, LocMap] = {}
    if isinstance(entries, LocList):
        for entry in entries:
            if isinstance(entry, LocMap) and isinstance(entry.get("id"), str):
                by_id.setdefault(str(entry["id"]), entry)
    return [
        _shape(by_id.get(rule.rule_id, LocMap(rule.mark)), rule.rule_id, rule.effect, policy)
        for rule in policy.rules
    ]


def native_document(text: str) -> LocMap | None:
    """The policy document in the native format (imported formats converted), or None."""
    try:
        document = load_document(text)
    except Exception:  # an invalid document has no shapes; the compiler reports why
        return None
    if not isinstance(document, LocMap):
        return None
    dialect = dialects.detect(document)
    scratch = CompileReport()
    if dialect == "capfence":
        return dialects.from_capfence(document, scratch)
    if dialect == "governance":
        return dialects.from_governance(document, scratch)
    return document


def _shape(entry: LocMap, rule_id: str, effect: str, policy: CompiledPolicy) -> RuleShape:
    shape = RuleShape(rule_id, effect, entry.mark)
    for key, value in entry.items():
        mark = entry.mark_of(key)
        if key in LIST_CONDITIONS:
            name, negate = LIST_CONDITIONS[key]
            items = value if isinstance(value, list) else [value]
            values = tuple(_normalise(name, str(item), policy) for item in items)
            shape.lists.append(ListCondition(name, values, negate, mark))
        elif key in FLAT_AMOUNT:
            bound = _bound(FLAT_AMOUNT[key], value, policy.currency, policy, mark)
            shape.amounts.extend(bound)
        elif key == "amount" and isinstance(value, LocMap):
            currency = str(value.get("currency", policy.currency))
            for op in COMPARISONS:
                if op in value:
                    shape.amounts.extend(_bound(op, value[op], currency, policy, mark))
        elif key in ("during", "outside") and isinstance(value, LocMap):
            shape.schedules.append(_schedule(value, key == "outside", mark, policy))
        elif key == "budget_ratio" and isinstance(value, LocMap):
            budget = value.get("budget")
            for op in COMPARISONS:
                number = value.get(op)
                if isinstance(number, int | Decimal):
                    threshold = Fraction(number)
                    budget_id = str(budget) if budget is not None else None
                    shape.ratios.append(RatioBound(op, threshold, budget_id, mark))
        elif key == "when":
            shape.cel = (str(value), mark)
        elif key == "anomaly":
            shape.anomaly = True
    return shape


_NORMALISE: dict[str, Callable[[str], str]] = {
    "phase": str.upper,
    "action": str.lower,
    "environment": str.lower,
    "category": str.lower,
    "rail": str.lower,
}


def _normalise(name: str, value: str, policy: CompiledPolicy) -> str:
    if name == "currency":
        try:
            return policy.currencies.normalize(value)
        except InvalidInputError:
            return value
    normalise = _NORMALISE.get(name)
    return normalise(value) if normalise else value


def _bound(
    op: str, value: object, currency: str, policy: CompiledPolicy, mark: Mark
) -> list[AmountBound]:
    try:
        code = policy.currencies.normalize(currency)
        money = Money.parse(value, code, currencies=policy.currencies, allow_zero=True)
    except InvalidInputError:
        return []
    return [AmountBound(op, money, mark)]


def _schedule(spec: LocMap, negate: bool, mark: Mark, policy: CompiledPolicy) -> Schedule:
    days: set[int] | None = None
    if "days" in spec:
        days = set()
        names = spec["days"] if isinstance(spec["days"], list) else [spec["days"]]
        for name in names:
            first, _, last = str(name).lower().partition("-")
            start, stop = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
            days.update(
                range(start, stop + 1) if start <= stop else [*range(start, 7), *range(stop + 1)]
            )
    hours = None
    if "hours" in spec:
        begin, _, end = str(spec["hours"]).partition("-")
        h1, m1 = (int(part) for part in begin.split(":"))
        h2, m2 = (int(part) for part in end.split(":"))
        hours = (time(h1, m1), time.max if (h2, m2) == (24, 0) else time(h2, m2))
    ctx = RuleContext(CompileReport(), "", policy.currencies, policy.currency, policy.fx)
    check = schedule_check(spec, ctx, mark, negate=negate)
    return Schedule(negate, frozenset(days) if days is not None else None, hours, mark, check)
