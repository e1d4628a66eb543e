"""Anomaly facts (issue 17): settings, the scores, and the rule condition on them.

Three facts about one intent, each from the agent's stored history (read by
`paywarden.ledger.anomaly` inside the decision's transaction, never kept in memory):

- `anomaly.amount_score`: the robust z-score of ln(amount) against the amounts of the agent's
  last `history` allowed payments in the same currency:
  `0.6745 * (ln x - median) / max(MAD, mad_floor)`, MAD the median absolute deviation of the
  logs. With fewer than `min_history` payments it is 0.0; a history that never varied still
  gives a finite score, loud for any other amount (MAD 0 counts as `mad_floor`).
- `anomaly.new_recipient`: the agent was never allowed to pay this canonical recipient before.
- `anomaly.rate_spike`: the agent's decisions in the last `rate_window` (this one included)
  exceed `rate_min`, and exceed `rate_factor` times the average per `rate_window` over the last
  `rate_baseline`.

```yaml
anomaly:
  history: 50          # allowed payments the amount is compared with
  min_history: 10      # fewer: amount_score is 0.0
  mad_floor: 0.05      # the least spread assumed (in ln units)
  flag_above: 3.5      # a score above this is an anomaly (auto_halt)
  rate_window: 5m
  rate_baseline: 24h
  rate_min: 10
  rate_factor: 6
  auto_halt: {after: 3, within: 1h}   # halt the agent at its 3rd anomaly within an hour
```

They are read only when the policy uses them (a rule's `anomaly:` condition or a `when:` naming
`anomaly`, or `auto_halt`): a policy that does not pays nothing for them.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction

from paywarden.policy.budgets import parse_window
from paywarden.policy.decision import AnomalyFacts
from paywarden.policy.document import LocMap, Mark
from paywarden.policy.facts import NO_ANOMALY, Facts
from paywarden.policy.rules import COMPARISONS, Check, RuleContext

ROBUST_SCALE = 0.6745  # makes the MAD of a normal sample estimate its standard deviation
# The least `mad_floor`: with amounts of at most 10**18 minor units, |score| stays below 3e7
# (a smaller floor, or one that is 0.0 as a float, could make a zero-variance score inf).
MAD_FLOOR_MIN = Fraction(1, 1_000_000)
_COUNTS = {"history": (1, 1000), "min_history": (1, 1000), "rate_min": (0, 1_000_000)}
_DURATIONS = ("rate_window", "rate_baseline")
_KEYS = frozenset({*_COUNTS, *_DURATIONS, "mad_floor", "flag_above", "rate_factor", "auto_halt"})
FACTS = ("amount_score", "new_recipient", "rate_spike")
# `anomaly.amount_score` names one fact; `anomaly` alone (the whole map) names them all.
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
_MENTION = re.compile(r"\banomaly\b(?:\s*\.\s*([A-Za-z_]+))?")


@dataclass(frozen=True, slots=True)
class AutoHalt:
    """Halt the agent once it has `after` anomalies within `within_seconds` (this one too)."""

    after: int
    within_seconds: int


@dataclass(frozen=True, slots=True)
class AnomalySettings:
    history: int = 50
    min_history: int = 10
    mad_floor: float = 0.05
    flag_above: float = 3.5
    rate_window_seconds: int = 300
    rate_baseline_seconds: int = 86_400
    rate_min: int = 10
    rate_factor: Fraction = Fraction(6)
    auto_halt: AutoHalt | None = None
    reads: frozenset[str] = frozenset()  # the facts rules read (and auto_halt): only these

    @property
    def used(self) -> bool:
        """Whether a decision reads any anomaly fact (else it pays nothing for them)."""
        return bool(self.reads)


def amount_score(amount_minor: int, history: Sequence[int], settings: AnomalySettings) -> float:
    """The robust z-score of ln(amount) against `history` (0.0 below `min_history`)."""
    if len(history) < settings.min_history or not history:
        return 0.0
    logs = sorted(map(math.log, history))
    median = _median(logs)
    mad = _median(sorted([abs(value - median) for value in logs]))
    return ROBUST_SCALE * (math.log(amount_minor) - median) / max(mad, settings.mad_floor)


def _median(ordered: Sequence[float]) -> float:
    """The median of sorted values: the middle one, or the mean of the middle two."""
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def rate_spike(recent: int, baseline: int, settings: AnomalySettings) -> bool:
    """`recent` (in the short window) exceeds `rate_min` and `rate_factor` times the baseline's
    average per short window (`baseline` decisions over the long one), compared exactly."""
    if recent <= settings.rate_min:
        return False
    factor = settings.rate_factor  # recent > factor * baseline * window / baseline_length:
    return (
        recent * settings.rate_baseline_seconds * factor.denominator
        > factor.numerator * baseline * settings.rate_window_seconds
    )


def is_anomalous(facts: AnomalyFacts, settings: AnomalySettings) -> bool:
    """What counts towards `auto_halt`: a score above `flag_above`, or a rate spike (a new
    recipient alone does not: every agent has first payments)."""
    return facts.amount_score > settings.flag_above or facts.rate_spike


# The policy section ---------------------------------------------------------------------------


def compile_anomaly_settings(
    value: object, rules: object, ctx: RuleContext, mark: Mark
) -> AnomalySettings:
    """The `anomaly:` section (defaults when absent), with the facts that rules in `rules` (the
    document's `rules:`) read, and those `auto_halt` needs (the score and the rate)."""
    settings = AnomalySettings()
    if value is not None:
        if not isinstance(value, LocMap) or set(value) - _KEYS:
            keys = ", ".join(sorted(_KEYS))
            ctx.report.error(f"`anomaly` must be a mapping with some of: {keys}", mark)
            return settings
        settings = _settings(value, ctx)
    reads = _mentions(rules)
    if settings.auto_halt is not None:
        reads |= {"amount_score", "rate_spike"}
    return replace(settings, reads=frozenset(reads))


def _settings(value: LocMap, ctx: RuleContext) -> AnomalySettings:
    found: dict[str, object] = {}
    for name, (low, high) in _COUNTS.items():
        if name in value:
            count = value[name]
            if type(count) is not int or not low <= count <= high:
                ctx.error(
                    f"`anomaly.{name}` must be an integer from {low} to {high}", value.mark_of(name)
                )
                continue
            found[name] = count
    for name in _DURATIONS:
        if name in value:
            seconds = _duration(value[name], f"anomaly.{name}", ctx, value.mark_of(name))
            if seconds is not None:
                found[f"{name}_seconds"] = seconds
    for name in ("mad_floor", "flag_above", "rate_factor"):
        if name in value:
            number = _positive(value[name], f"anomaly.{name}", ctx, value.mark_of(name))
            if name == "mad_floor" and number is not None and number < MAD_FLOOR_MIN:
                ctx.error(
                    f"`anomaly.mad_floor` must be at least {MAD_FLOOR_MIN}", value.mark_of(name)
                )
                continue
            if number is not None:
                found[name] = number if name == "rate_factor" else float(number)
    if "auto_halt" in value:
        found["auto_halt"] = _auto_halt(value["auto_halt"], ctx, value.mark_of("auto_halt"))
    settings = AnomalySettings(**found)  # type: ignore[arg-type]
    if settings.rate_baseline_seconds <= settings.rate_window_seconds:
        ctx.error(
            "`anomaly.rate_baseline` must be longer than `rate_window`",
            value.mark_of("rate_baseline"),
        )
    return settings


def _duration(value: object, name: str, ctx: RuleContext, mark: Mark) -> int | None:
    window = parse_window(value)
    if window is None or window.kind != "rolling" or not window.seconds:
        ctx.error(f"`{name}` must be a duration such as `5m`, `1h` or `1d`", mark)
        return None
    return window.seconds


def _positive(value: object, name: str, ctx: RuleContext, mark: Mark) -> Fraction | None:
    """A number above 0 whose float is finite and above 0 too (a `mad_floor` of `1e-400` would
    be 0.0 as a float: a zero-variance history would then divide by zero)."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal) or value <= 0:
        ctx.error(f"`{name}` must be a number above 0", mark)
        return None
    number = Fraction(value)
    try:
        as_float = float(number)
    except OverflowError:
        as_float = math.inf
    if not 0 < as_float < math.inf:
        ctx.error(f"`{name}` must be a number above 0 and below 1e300", mark)
        return None
    return number


def _auto_halt(value: object, ctx: RuleContext, mark: Mark) -> AutoHalt | None:
    if not isinstance(value, LocMap) or set(value) != {"after", "within"}:
        ctx.error("`anomaly.auto_halt` must be a mapping with `after` and `within`", mark)
        return None
    after = value["after"]
    if type(after) is not int or not 1 <= after <= 1000:
        ctx.error(
            "`anomaly.auto_halt.after` must be an integer from 1 to 1000", value.mark_of("after")
        )
        return None
    within = _duration(value["within"], "anomaly.auto_halt.within", ctx, value.mark_of("within"))
    return AutoHalt(after, within) if within is not None else None


def _mentions(rules: object) -> set[str]:
    """The facts rules read: the keys of an `anomaly:` condition, and each `anomaly.<fact>` a
    `when:` names (every fact for `anomaly` alone; a mention inside a string literal counts
    too: it only costs the reads)."""
    found: set[str] = set()
    for rule in rules if isinstance(rules, list) else ():
        if not isinstance(rule, LocMap):
            continue
        condition, when = rule.get("anomaly"), rule.get("when")
        if isinstance(condition, LocMap):
            found |= set(condition) & set(FACTS)
        for match in _MENTION.finditer(when if isinstance(when, str) else ""):
            found |= {match.group(1)} if match.group(1) in FACTS else set(FACTS)
    return found


# The rule condition ---------------------------------------------------------------------------


def anomaly_checks(spec: object, ctx: RuleContext, mark: Mark) -> list[Check]:
    """`anomaly: {amount_score: {gt: 3.5}, new_recipient: true, rate_spike: true}`: every
    fact named must hold."""
    if not isinstance(spec, LocMap) or not spec:
        ctx.error("`anomaly` must be a mapping such as `{amount_score: {gt: 3.5}}`", mark)
        return []
    unknown = set(spec) - {"amount_score", "new_recipient", "rate_spike"}
    if unknown:
        ctx.error(f"unknown key `{sorted(unknown)[0]}` in `anomaly`", spec.mark_of(min(unknown)))
        return []
    checks: list[Check] = []
    for name in ("new_recipient", "rate_spike"):
        if name in spec:
            wanted = spec[name]
            if not isinstance(wanted, bool):
                ctx.error(f"`anomaly.{name}` must be true or false", spec.mark_of(name))
                continue
            checks.append(_flag_check(name, wanted))
    if "amount_score" in spec:
        checks.extend(_score_checks(spec["amount_score"], ctx, spec.mark_of("amount_score")))
    return checks


def _flag_check(name: str, wanted: bool) -> Check:
    def check(facts: Facts) -> bool:
        found = facts.state.anomaly or NO_ANOMALY
        return bool(getattr(found, name) is wanted)

    return check


def _score_checks(spec: object, ctx: RuleContext, mark: Mark) -> list[Check]:
    if not isinstance(spec, LocMap) or not spec or set(spec) - set(COMPARISONS):
        ctx.error("`anomaly.amount_score` must be a mapping such as `{gt: 3.5}`", mark)
        return []
    checks: list[Check] = []
    for op in COMPARISONS:
        if op not in spec:
            continue
        value = spec[op]
        if isinstance(value, bool) or not isinstance(value, int | Decimal) or not _finite(value):
            ctx.error(f"`anomaly.amount_score.{op}` must be a finite number", spec.mark_of(op))
            continue
        checks.append(_score_check(op, float(value)))
    return checks


def _finite(value: int | Decimal) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _score_check(op: str, threshold: float) -> Check:
    compare = _COMPARE[op]

    def check(facts: Facts) -> bool:
        return compare((facts.state.anomaly or NO_ANOMALY).amount_score, threshold)

    return check
