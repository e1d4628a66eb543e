"""Budget and velocity definitions from the policy, and the time windows they count in.

A budget is a balance cap over a window: calendar (`hour`, `day`, `week`, `month` in the policy
time zone), rolling (`24h`, `7d`, `90m`, `3600s`) or `lifetime`. Windows are always derived from
the server's UTC instant, never from a timestamp the client sends. Calendar boundaries are the
local midnights (or hours) of the policy zone converted to UTC instants, which is exact across
DST changes: a 23-hour or 25-hour day is still one day.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Literal, TypeVar
from zoneinfo import ZoneInfo

from paywarden.errors import InvalidInputError
from paywarden.money import Money
from paywarden.policy.document import LocList, LocMap, Mark
from paywarden.policy.recipients import PatternSet
from paywarden.policy.rules import RuleContext, parse_threshold, string_list

Scope = Literal["global", "agent", "session", "recipient", "category", "action"]
SCOPES: tuple[Scope, ...] = ("global", "agent", "session", "recipient", "category", "action")
CALENDAR_UNITS = ("hour", "day", "week", "month")
_ROLLING = re.compile(r"\A([1-9][0-9]{0,6})(s|m|h|d)\Z")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Window:
    """`calendar` (unit), `rolling` (seconds) or `lifetime`."""

    kind: Literal["calendar", "rolling", "lifetime"]
    unit: str | None = None
    seconds: int = 0

    def start(self, now: datetime, zone: ZoneInfo) -> datetime:
        """The UTC instant where the window containing `now` begins."""
        if self.kind == "lifetime":
            return EPOCH
        if self.kind == "rolling":
            return now - timedelta(seconds=self.seconds)
        return calendar_start(self.unit or "day", now, zone)

    def __str__(self) -> str:
        if self.kind == "calendar":
            return str(self.unit)
        if self.kind == "rolling":
            return f"{self.seconds}s rolling"
        return "lifetime"


def calendar_start(unit: str, now: datetime, zone: ZoneInfo) -> datetime:
    local = now.astimezone(zone)
    if unit == "hour":
        # An hour boundary is the same instant in every zone except those with sub-hour offsets,
        # so truncating the local time and going back through UTC is exact for all of them.
        start = local.replace(minute=0, second=0, microsecond=0)
        return (
            start.astimezone(UTC)
            if start.utcoffset() == local.utcoffset()
            else (now.replace(minute=0, second=0, microsecond=0))
        )
    day = local.date()
    if unit == "week":
        day = day - timedelta(days=day.weekday())
    elif unit == "month":
        day = day.replace(day=1)
    midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
    # A zone may skip local midnight (DST at 00:00); the first instant of that date is then the
    # first existing one. Going through UTC and back normalises a skipped time forward.
    return midnight.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Gates:
    """Graduated gates as exact fractions of the limit: warn, restrict (approval), halt (deny)."""

    warn: Fraction | None = None
    restrict: Fraction | None = None
    halt: Fraction | None = None


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    budget_id: str
    limit: Money
    window: Window
    scope: Scope
    agents: PatternSet | None
    actions: PatternSet | None
    gates: Gates
    mark: Mark


@dataclass(frozen=True, slots=True)
class VelocitySpec:
    """At most `max_count` payments per window per scope, and/or a cooldown between payments."""

    velocity_id: str
    max_count: int | None
    window_seconds: int
    cooldown_seconds: int
    scope: Scope
    agents: PatternSet | None
    actions: PatternSet | None
    mark: Mark


def applies(agents: PatternSet | None, actions: PatternSet | None, agent: str, action: str) -> bool:
    return (agents is None or agents.matches(agent)) and (
        actions is None or actions.matches(action)
    )


def parse_window(value: object) -> Window | None:
    if value == "lifetime":
        return Window("lifetime")
    if value in CALENDAR_UNITS:
        return Window("calendar", unit=str(value))
    match = _ROLLING.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    return Window("rolling", seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def _duration_seconds(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    window = parse_window(value)
    return window.seconds if window is not None and window.kind == "rolling" else None


def compile_budgets(value: object, ctx: RuleContext, mark: Mark) -> tuple[BudgetSpec, ...]:
    return _compile_list(value, ctx, mark, "budgets", _compile_budget)


def compile_velocity(value: object, ctx: RuleContext, mark: Mark) -> tuple[VelocitySpec, ...]:
    return _compile_list(value, ctx, mark, "velocity", _compile_velocity)


def _compile_list(
    value: object,
    ctx: RuleContext,
    mark: Mark,
    name: str,
    build: Callable[[LocMap, RuleContext], T | None],
) -> tuple[T, ...]:
    if not isinstance(value, LocList):
        ctx.report.error(f"`{name}` must be a list", mark)
        return ()
    seen: set[str] = set()
    result: list[T] = []
    for index, entry in enumerate(value):
        if not isinstance(entry, LocMap):
            ctx.report.error(f"`{name}[{index}]` must be a mapping", value.mark_of(index))
            continue
        entry_id = entry.get("id")
        if not isinstance(entry_id, str) or not _ID.match(entry_id):
            ctx.report.error(f"`{name}[{index}].id` must be a short identifier", entry.mark)
            continue
        if entry_id in seen:
            ctx.report.error(f"duplicate {name} id `{entry_id}`", entry.mark)
            continue
        seen.add(entry_id)
        ctx.rule_id = entry_id
        built = build(entry, ctx)
        if built is not None:
            result.append(built)
    return tuple(result)


def _filters(entry: LocMap, ctx: RuleContext) -> tuple[PatternSet | None, PatternSet | None]:
    agents = actions = None
    if "agents" in entry:
        items = string_list(entry["agents"], "agents", ctx, entry.mark_of("agents"))
        agents = PatternSet(items) if items else None
    if "actions" in entry:
        items = string_list(entry["actions"], "actions", ctx, entry.mark_of("actions"))
        actions = PatternSet([i.lower() for i in items]) if items else None
    return agents, actions


def _scope(entry: LocMap, ctx: RuleContext) -> Scope | None:
    scope = entry.get("scope", "global")
    for candidate in SCOPES:
        if scope == candidate:
            return candidate
    ctx.error(f"`scope` must be one of {', '.join(SCOPES)}", entry.mark_of("scope"))
    return None


_BUDGET_KEYS = frozenset(
    {"id", "limit", "currency", "window", "scope", "agents", "actions", "gates"}
)


def _compile_budget(entry: LocMap, ctx: RuleContext) -> BudgetSpec | None:
    for key in sorted(set(entry) - _BUDGET_KEYS):
        ctx.error(f"unknown key `{key}` in a budget", entry.mark_of(key))
        return None
    limit = _budget_limit(entry, ctx)
    window = parse_window(entry.get("window"))
    if window is None:
        ctx.error(
            "`window` must be hour, day, week, month, lifetime or a duration such as "
            "`24h`, `7d`, `30m`",
            entry.mark_of("window"),
        )
    scope = _scope(entry, ctx)
    gates = _gates(entry.get("gates"), ctx, entry.mark_of("gates"))
    agents, actions = _filters(entry, ctx)
    if limit is None or window is None or scope is None or gates is None:
        return None
    return BudgetSpec(str(entry["id"]), limit, window, scope, agents, actions, gates, entry.mark)


def _budget_limit(entry: LocMap, ctx: RuleContext) -> Money | None:
    raw = entry.get("limit")
    currency: object = entry.get("currency", ctx.default_currency)
    if isinstance(raw, LocMap):
        currency = raw.get("currency", currency)
        raw = raw.get("amount")
    if raw is None:
        ctx.error("a budget needs a `limit`", entry.mark)
        return None
    try:
        code = ctx.currencies.normalize(currency)
    except InvalidInputError as error:
        ctx.error(str(error), entry.mark_of("currency"))
        return None
    return parse_threshold(raw, code, ctx, entry.mark_of("limit"))


def _gates(value: object, ctx: RuleContext, mark: Mark) -> Gates | None:
    if value is None:
        return Gates()
    if not isinstance(value, LocMap) or set(value) - {"warn", "restrict", "halt"}:
        ctx.error("`gates` must be a mapping of warn / restrict / halt fractions", mark)
        return None
    fractions: dict[str, Fraction] = {}
    for name, raw in value.items():
        if not isinstance(raw, Decimal | int) or isinstance(raw, bool) or not 0 < raw <= 1:
            ctx.error(
                f"gate `{name}` must be a fraction in (0, 1], such as 0.75", value.mark_of(name)
            )
            return None
        fractions[name] = Fraction(raw)
    ordered = [fractions[n] for n in ("warn", "restrict", "halt") if n in fractions]
    if ordered != sorted(ordered):
        ctx.error("gates must be ordered warn <= restrict <= halt", mark)
        return None
    return Gates(fractions.get("warn"), fractions.get("restrict"), fractions.get("halt"))


_VELOCITY_KEYS = frozenset({"id", "max_count", "window", "cooldown", "scope", "agents", "actions"})


def _compile_velocity(entry: LocMap, ctx: RuleContext) -> VelocitySpec | None:
    for key in sorted(set(entry) - _VELOCITY_KEYS):
        ctx.error(f"unknown key `{key}` in a velocity limit", entry.mark_of(key))
        return None
    max_count = entry.get("max_count")
    if max_count is not None and (type(max_count) is not int or max_count < 1):
        ctx.error("`max_count` must be a positive integer", entry.mark_of("max_count"))
        return None
    window_seconds = _duration_seconds(entry.get("window")) if "window" in entry else 0
    cooldown_seconds = _duration_seconds(entry.get("cooldown")) if "cooldown" in entry else 0
    if window_seconds is None or cooldown_seconds is None:
        ctx.error("`window` and `cooldown` must be durations such as `60s`, `1m`, `1h`", entry.mark)
        return None
    if max_count is not None and not window_seconds:
        ctx.error("`max_count` needs a `window`", entry.mark)
        return None
    if max_count is None and not cooldown_seconds:
        ctx.error("a velocity limit needs `max_count` with `window`, or a `cooldown`", entry.mark)
        return None
    scope = _scope(entry, ctx)
    agents, actions = _filters(entry, ctx)
    if scope is None:
        return None
    return VelocitySpec(
        str(entry["id"]),
        max_count,
        window_seconds,
        cooldown_seconds,
        scope,
        agents,
        actions,
        entry.mark,
    )
