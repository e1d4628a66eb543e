"""Rule conditions, each compiled once into a small pure check `Facts -> bool`.

A condition that cannot be decided on the facts it gets (an amount in a currency with no FX
rate, a CEL expression that errors) raises `RuleEvaluationError`; the evaluator turns that into
a deny. Builders report problems into the compile report instead of raising.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import time
from decimal import Decimal
from fractions import Fraction
from operator import attrgetter
from typing import Any

from paywarden import limits
from paywarden.errors import InvalidInputError
from paywarden.money import CurrencyTable, Money
from paywarden.policy.cel_compile import compile_cel
from paywarden.policy.document import LocMap, Mark
from paywarden.policy.facts import CEL_VARIABLES, WEEKDAYS, Facts, RuleEvaluationError
from paywarden.policy.fx import FxTable
from paywarden.policy.matcher import INLINE_FIELDS, inline
from paywarden.policy.recipients import PatternSet, compile_patterns
from paywarden.policy.report import CompileReport

Check = Callable[[Facts], bool]
COMPARISONS = ("gt", "gte", "lt", "lte")
_HOURS = re.compile(r"\A([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])\Z")
# The variable a macro binds: `list.exists(x, ...)` binds `x` inside the macro.
_CEL_MACRO_VARIABLE = re.compile(
    r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,"
)


@dataclass(slots=True)
class RuleContext:
    """What a condition builder needs: where to report, and the policy-wide settings."""

    report: CompileReport
    rule_id: str
    currencies: CurrencyTable
    default_currency: str
    fx: FxTable
    budget_ids: frozenset[str] = frozenset()

    def error(self, message: str, mark: Mark | None) -> None:
        self.report.error(message, mark, self.rule_id)


# List conditions --------------------------------------------------------------------------


def string_list(value: object, name: str, ctx: RuleContext, mark: Mark) -> list[str] | None:
    items = value if isinstance(value, list) else [value]
    if not items or len(items) > limits.policy_patterns_per_condition_max:
        ctx.error(f"`{name}` needs 1 to {limits.policy_patterns_per_condition_max} values", mark)
        return None
    if not all(isinstance(item, str) and item for item in items):
        ctx.error(f"`{name}` must be a non-empty string or a list of them", mark)
        return None
    return [str(item) for item in items]


def list_check(
    field: str,
    patterns: list[str],
    *,
    negate: bool,
    normalize: Callable[[str], str] | None,
    unknown_matches: bool = False,
) -> Check:
    """`field in patterns` (or `not in`, when `negate`).

    An intent without the field (no category, no phase) never matches a positive list. For a
    negated list the answer is `unknown_matches`: true in deny and approval rules, false in
    allow rules, so a missing value can only ever make a decision stricter.
    """
    if field == "recipient":
        return recipient_check(patterns, negate=negate, restrictive=unknown_matches)
    values = [normalize(p) for p in patterns] if normalize else patterns
    pattern_set = PatternSet(values)
    if field != "phase" and pattern_set.regex is None:
        return _exact_check(field, pattern_set.exact, negate, unknown_matches)
    getter: Callable[[Facts], str | None]
    if field == "phase":
        getter = _phase_of
    else:
        attribute = field

        def getter(facts: Facts) -> str | None:
            value: str | None = getattr(facts.intent, attribute)
            return value

    if negate:

        def negated(facts: Facts) -> bool:
            value = getter(facts)
            return unknown_matches if value is None else not pattern_set.matches(value)

        return negated
    return lambda facts: pattern_set.matches(getter(facts))


def _exact_check(field: str, exact: frozenset[str], negate: bool, unknown_matches: bool) -> Check:
    """The fast path for lists without wildcards: one attribute read and one set lookup."""
    get: Callable[[Facts], str | None] = attrgetter(f"intent.{field}")
    if not negate:

        def listed(facts: Facts) -> bool:
            return get(facts) in exact

        if field in INLINE_FIELDS:
            inline(listed, f"{field} in {{exact}}", exact=exact)
        return listed

    def negated(facts: Facts) -> bool:
        value = get(facts)
        return unknown_matches if value is None else value not in exact

    if field in INLINE_FIELDS:
        inline(
            negated,
            f"({{unknown}} if {field} is None else {field} not in {{exact}})",
            unknown=unknown_matches,
            exact=exact,
        )
    return negated


def recipient_check(patterns: list[str], *, negate: bool, restrictive: bool) -> Check:
    """The payee is (or is not) one of `patterns` (see `paywarden.policy.recipients`).

    Case-sensitive ids (rail accounts, opaque ids) are compared ignoring case only where that
    makes the decision stricter: a positive list in a deny or approval rule, a `_not` list in an
    allow rule. So `ACCT_1ABC` cannot escape a deny on `acct_1AbC`, and cannot join an allow
    list that names `acct_1AbC`.
    """
    matcher = compile_patterns(patterns)
    ignore_case = restrictive != negate

    def listed(facts: Facts) -> bool:
        return matcher.matches(facts.intent.payee, ignore_id_case=ignore_case)

    if negate:
        return lambda facts: not listed(facts)
    return listed


def _phase_of(facts: Facts) -> str | None:
    return facts.state.phase


def normalizer_for(field: str, ctx: RuleContext) -> Callable[[str], str] | None:
    if field == "currency":
        return ctx.currencies.normalize
    if field == "phase":
        return str.upper
    if field in ("action", "environment", "category", "rail"):
        return str.lower
    return None


# Amount -----------------------------------------------------------------------------------


def amount_check(op: str, threshold: Money, fx: FxTable) -> Check:
    """`amount <op> threshold`, exact at the boundary; other currencies only through `fx`."""
    limit_minor, currency, exponent = threshold.amount_minor, threshold.currency, threshold.exponent
    compare = _COMPARE[op]

    def check(facts: Facts) -> bool:
        amount = facts.intent.amount
        if amount.currency == currency:
            return compare(amount.amount_minor, limit_minor)
        converted = fx.convert_minor(
            amount.amount_minor, amount.currency, amount.exponent, currency, exponent
        )
        if converted is None:
            raise RuleEvaluationError(
                f"the rule compares amounts in {currency} but the intent is in "
                f"{amount.currency} and the policy has no fx rate between them"
            )
        return compare(converted, limit_minor)

    template = (
        f"(amount_minor {_SIGNS[op]} {{limit}} if currency == {{currency}} else {{fallback}}(f))"
    )
    return inline(check, template, limit=limit_minor, currency=currency, fallback=check)


_SIGNS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def parse_threshold(value: object, currency: str, ctx: RuleContext, mark: Mark) -> Money | None:
    if isinstance(value, float):  # pragma: no cover - the document loader never yields floats
        ctx.error("amounts must not be floats", mark)
        return None
    try:
        return Money.parse(value, currency, currencies=ctx.currencies, allow_zero=True)
    except InvalidInputError as error:
        ctx.error(str(error), mark)
        return None


def amount_checks(spec: object, ctx: RuleContext, mark: Mark) -> list[Check]:
    """`amount: {gt: 500, lte: 10000, currency: USD}`."""
    if not isinstance(spec, LocMap) or not spec:
        ctx.error("`amount` must be a mapping such as `{gt: 500}`", mark)
        return []
    unknown = set(spec) - {*COMPARISONS, "currency"}
    if unknown:
        ctx.error(f"unknown key `{sorted(unknown)[0]}` in `amount`", spec.mark_of(min(unknown)))
        return []
    if not set(spec) & set(COMPARISONS):
        ctx.error("`amount` needs at least one of gt, gte, lt, lte", mark)
        return []
    currency = spec.get("currency", ctx.default_currency)
    try:
        code = ctx.currencies.normalize(currency)
    except InvalidInputError as error:
        ctx.error(str(error), spec.mark_of("currency"))
        return []
    checks: list[Check] = []
    for op in COMPARISONS:
        if op in spec:
            threshold = parse_threshold(spec[op], code, ctx, spec.mark_of(op))
            if threshold is not None:
                checks.append(amount_check(op, threshold, ctx.fx))
    return checks


# Budget ratio -----------------------------------------------------------------------------


def budget_ratio_checks(spec: object, ctx: RuleContext, mark: Mark) -> list[Check]:
    """`budget_ratio: {gt: 0.9, budget: daily}`: the projected (spent+held+amount)/limit."""
    if not isinstance(spec, LocMap) or not spec:
        ctx.error("`budget_ratio` must be a mapping such as `{gt: 0.9}`", mark)
        return []
    unknown = set(spec) - {*COMPARISONS, "budget"}
    if unknown:
        ctx.error(f"unknown key `{sorted(unknown)[0]}` in `budget_ratio`", mark)
        return []
    if not set(spec) & set(COMPARISONS):
        ctx.error("`budget_ratio` needs at least one of gt, gte, lt, lte", mark)
        return []
    budget_id = spec.get("budget")
    if budget_id is not None and budget_id not in ctx.budget_ids:
        known = ", ".join(sorted(ctx.budget_ids)) or "none"
        ctx.error(
            f"`budget_ratio.budget` `{budget_id}` names no budget (budgets: {known})",
            spec.mark_of("budget"),
        )
        return []
    checks: list[Check] = []
    for op in COMPARISONS:
        if op not in spec:
            continue
        value = spec[op]
        if not isinstance(value, Decimal | int) or isinstance(value, bool) or value < 0:
            ctx.error(f"`budget_ratio.{op}` must be a non-negative number", spec.mark_of(op))
            continue
        checks.append(
            _ratio_check(op, Fraction(value), budget_id if isinstance(budget_id, str) else None)
        )
    return checks


def _ratio_check(op: str, threshold: Fraction, budget_id: str | None) -> Check:
    compare = _COMPARE[op]

    def check(facts: Facts) -> bool:
        for budget in facts.state.budgets:
            if budget_id is not None and budget.budget_id != budget_id:
                continue
            used = budget.spent_minor + budget.held_minor + budget.amount_minor
            ratio = Fraction(used, budget.limit_minor) if budget.limit_minor else Fraction(10**9)
            if compare(ratio, threshold):
                return True
        return False

    return check


# Time windows -----------------------------------------------------------------------------


def schedule_check(spec: object, ctx: RuleContext, mark: Mark, *, negate: bool) -> Check | None:
    """`during:` / `outside:` `{days: [mon-fri], hours: "09:00-17:00"}` in the policy zone."""
    name = "outside" if negate else "during"
    if not isinstance(spec, LocMap) or not spec or set(spec) - {"days", "hours"}:
        ctx.error(f"`{name}` must be a mapping with `days` and/or `hours`", mark)
        return None
    days = _parse_days(spec.get("days"), ctx, spec.mark_of("days")) if "days" in spec else None
    hours = _parse_hours(spec.get("hours"), ctx, spec.mark_of("hours")) if "hours" in spec else None
    if ("days" in spec and days is None) or ("hours" in spec and hours is None):
        return None

    def inside(facts: Facts) -> bool:
        local = facts.local()
        if days is not None and local.weekday() not in days:
            return False
        if hours is None:
            return True
        start, end = hours
        now = local.time()
        if start <= end:
            return start <= now < end
        return now >= start or now < end  # a window that wraps past midnight

    if negate:
        return lambda facts: not inside(facts)
    return inside


def _parse_days(value: object, ctx: RuleContext, mark: Mark) -> frozenset[int] | None:
    names = value if isinstance(value, list) else [value]
    if not names:
        ctx.error("`days` needs at least one day or range such as `mon-fri`", mark)
        return None
    days: set[int] = set()
    for name in names:
        text = str(name).lower()
        first, _, last = text.partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            ctx.error(f"`{name}` is not a day such as `mon` or a range such as `mon-fri`", mark)
            return None
        start, stop = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
        days.update(
            range(start, stop + 1) if start <= stop else [*range(start, 7), *range(stop + 1)]
        )
    return frozenset(days)


def _parse_hours(value: object, ctx: RuleContext, mark: Mark) -> tuple[time, time] | None:
    match = _HOURS.match(value) if isinstance(value, str) else None
    if match is None:
        ctx.error("`hours` must look like `09:00-17:00` (24-hour local time)", mark)
        return None
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h2 == 24 and m2 != 0:
        ctx.error("`hours` cannot end after 24:00", mark)
        return None
    end = time.max if (h2, m2) == (24, 0) else time(h2, m2)
    if (h1, m1) == (h2, m2):
        ctx.error("`hours` is an empty window: it starts and ends at the same time", mark)
        return None
    return time(h1, m1), end


# CEL --------------------------------------------------------------------------------------


def cel_check(expression: object, ctx: RuleContext, mark: Mark) -> Check | None:
    """`when: 'amount_minor > 50000 && recipient.endsWith(".example.com")'` (CEL).

    An expression in the simple subset (see `paywarden.policy.cel_compile`) is compiled into
    the policy's generated matcher, with the library's semantics; any other goes to the CEL
    library, which is then imported (not before: it loads its own REPL, about 0.2 s).
    """
    if not isinstance(expression, str) or not expression.strip():
        ctx.error("`when` must be a CEL expression string", mark)
        return None
    if len(expression) > limits.policy_expression_chars_max:
        ctx.error(f"`when` is longer than {limits.policy_expression_chars_max} characters", mark)
        return None
    compiled = compile_cel(expression)
    if compiled is not None:
        return compiled
    return cel_library_check(expression, ctx, mark)


def cel_library_check(expression: str, ctx: RuleContext, mark: Mark) -> Check | None:
    """`expression` checked and evaluated by the CEL library (every expression outside the
    compiled subset; tests compare the two)."""
    import cel  # here, not at the top: it loads its own REPL (~0.2 s); only `when:` needs it

    try:
        program = cel.compile(expression)
    except ValueError as error:
        ctx.error(f"`when` is not valid CEL: {str(error).splitlines()[0]}", mark)
        return None
    bound = set(_CEL_MACRO_VARIABLE.findall(expression))
    referenced = set(program.variables())
    unknown = referenced - CEL_VARIABLES - bound
    names = tuple(sorted(referenced & CEL_VARIABLES))
    if unknown:
        ctx.error(f"`when` uses unknown variable `{sorted(unknown)[0]}`", mark)
        return None

    def check(facts: Facts) -> bool:
        try:
            result = program.execute(facts.cel_variables(names))
        except Exception as error:  # CEL raises several types; every one fails closed.
            raise RuleEvaluationError(f"`when` failed: {error}") from None
        if not isinstance(result, bool):
            raise RuleEvaluationError(f"`when` returned {type(result).__name__}, not a bool")
        return result

    return check
