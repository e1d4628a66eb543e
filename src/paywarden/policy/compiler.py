"""The policy compiler: text -> located document -> native form -> CompiledPolicy or a report.

Compilation happens once per policy version; evaluation then only runs the compiled checks.
Every problem is reported with its line, column and rule id; unknown keys are errors;
warnings never block loading.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from paywarden import limits
from paywarden.audit.canonical import canonical_bytes
from paywarden.audit.redact import DEFAULT_REDACTOR, Redactor
from paywarden.errors import InvalidInputError, PolicyCompileError
from paywarden.money import CurrencyTable
from paywarden.policy import dialects
from paywarden.policy.agent_settings import AgentSettings, compile_agent_settings
from paywarden.policy.alert_settings import (
    AlertSettings,
    compile_alert_settings,
    with_alert_reads,
)
from paywarden.policy.anomaly import AnomalySettings, anomaly_checks, compile_anomaly_settings
from paywarden.policy.approval_settings import (
    ApprovalSettings,
    compile_approval_settings,
    duration_seconds,
)
from paywarden.policy.budgets import BudgetSpec, VelocitySpec, compile_budgets, compile_velocity
from paywarden.policy.decision import Effect, RuleTrace
from paywarden.policy.document import DocumentError, LocList, LocMap, Mark, load_document
from paywarden.policy.facts import Facts
from paywarden.policy.fx import EMPTY_FX, FxTable
from paywarden.policy.mandate_settings import MandateSettings, compile_mandate_settings
from paywarden.policy.matcher import MatchAll, generate
from paywarden.policy.redaction_settings import compile_redaction_settings
from paywarden.policy.report import CompileReport
from paywarden.policy.rules import (
    COMPARISONS,
    Check,
    RuleContext,
    amount_check,
    amount_checks,
    budget_ratio_checks,
    cel_check,
    list_check,
    normalizer_for,
    parse_threshold,
    schedule_check,
    string_list,
)
from paywarden.policy.workflow_settings import (
    CompensationSettings,
    RefundSettings,
    SessionSettings,
    compile_compensation,
    compile_refunds,
    compile_sessions,
)

EFFECTS: tuple[Effect, ...] = ("deny", "require_approval", "allow")
TOP_LEVEL_KEYS = frozenset(
    {
        "name",
        "version",
        "description",
        "timezone",
        "currency",
        "tokens",
        "fx",
        "rules",
        "budgets",
        "velocity",
        "sessions",
        "refunds",
        "compensation",
        "approvals",
        "redaction",
        "anomaly",
        "alerts",
        "agents",
        "mandates",
    }
)
# List conditions: every accepted spelling -> (intent field, negated).
LIST_CONDITIONS: Mapping[str, tuple[str, bool]] = {
    "action": ("action", False),
    "actions": ("action", False),
    "capability": ("action", False),
    "actions_not": ("action", True),
    "agent": ("agent", False),
    "agents": ("agent", False),
    "agents_not": ("agent", True),
    "environment": ("environment", False),
    "environments": ("environment", False),
    "environments_not": ("environment", True),
    "currency": ("currency", False),
    "currencies": ("currency", False),
    "currencies_not": ("currency", True),
    "recipient": ("recipient", False),
    "recipients": ("recipient", False),
    "recipients_not": ("recipient", True),
    "category": ("category", False),
    "categories": ("category", False),
    "categories_not": ("category", True),
    "rail": ("rail", False),
    "rails": ("rail", False),
    "rails_not": ("rail", True),
    "phase": ("phase", False),
    "phases": ("phase", False),
    "phases_not": ("phase", True),
}
FLAT_AMOUNT = {f"amount_{op}": op for op in COMPARISONS}
RULE_KEYS = frozenset(
    {
        "id",
        "effect",
        "reason",
        "description",
        "amount",
        "during",
        "outside",
        "budget_ratio",
        "anomaly",
        "when",
        "approval_ttl",
        "mode",
        *LIST_CONDITIONS,
        *FLAT_AMOUNT,
    }
)
_RULE_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.:\[\]-]{0,127}\Z")


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule_id: str
    effect: Effect
    reason: str
    checks: tuple[Check, ...]
    conditions: tuple[str, ...]
    mark: Mark
    approval_ttl_seconds: int | None = None
    log_only: bool = False  # `mode: log_only`: evaluated and traced, never enforced
    matches: Check = field(init=False)
    trace_hit: RuleTrace = field(init=False)
    trace_miss: RuleTrace = field(init=False)
    id_tuple: tuple[str] = field(init=False)

    def __post_init__(self) -> None:
        # Compose the checks once and build both possible trace entries once, so evaluating a
        # rule is one call and recording it allocates nothing.
        object.__setattr__(self, "matches", compose(self.checks))
        object.__setattr__(self, "trace_hit", RuleTrace(self.rule_id, self.effect, True))
        object.__setattr__(self, "trace_miss", RuleTrace(self.rule_id, self.effect, False))
        object.__setattr__(self, "id_tuple", (self.rule_id,))


def compose(checks: tuple[Check, ...]) -> Check:
    """One function that is true when every check is, short-circuiting in order."""
    if not checks:
        return lambda facts: True
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda facts: first(facts) and second(facts)
    if len(checks) == 3:
        first, second, third = checks
        return lambda facts: first(facts) and second(facts) and third(facts)

    def every(facts: Facts) -> bool:
        for check in checks:  # a plain loop is faster than all() over a generator here
            if not check(facts):
                return False
        return True

    return every


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """A policy ready to evaluate. `version` is a hash of its canonical content."""

    name: str
    label: str | None
    version: str
    dialect: str
    timezone: ZoneInfo
    currency: str
    currencies: CurrencyTable
    fx: FxTable
    rules: tuple[CompiledRule, ...]
    budgets: tuple[BudgetSpec, ...]
    velocity: tuple[VelocitySpec, ...]
    sessions: SessionSettings
    refunds: RefundSettings
    compensation: CompensationSettings
    approvals: ApprovalSettings
    report: CompileReport
    match_all: MatchAll
    deny_rules: tuple[int, ...] = field(default=())
    approval_rules: tuple[int, ...] = field(default=())
    allow_rules: tuple[int, ...] = field(default=())
    log_only_rules: tuple[int, ...] = field(default=())  # evaluated and traced only
    redaction: Redactor = field(default=DEFAULT_REDACTOR)
    anomaly: AnomalySettings = field(default=AnomalySettings())  # `anomaly:` (policy.anomaly)
    alerts: AlertSettings = field(default=AlertSettings())  # `alerts:` (paywarden.alerting)
    agents: AgentSettings = field(default=AgentSettings())  # `agents:` (actions.goals)
    mandates: MandateSettings = field(default=MandateSettings())  # `mandates:` (docs/ap2.md)

    def rule(self, rule_id: str) -> CompiledRule | None:
        return next((rule for rule in self.rules if rule.rule_id == rule_id), None)


def compile_policy(text: str | bytes, source: str = "policy") -> CompiledPolicy:
    """Compile or raise `PolicyCompileError` carrying the full report."""
    policy, report = check_policy(text, source)
    if policy is None:
        raise PolicyCompileError(report)
    return policy


def check_policy(
    text: str | bytes, source: str = "policy"
) -> tuple[CompiledPolicy | None, CompileReport]:
    """Compile and return (policy or None, report); never raises for bad policy text."""
    report = CompileReport(source)
    try:
        document = load_document(text)
    except DocumentError as error:
        report.error(error.message, error.mark)
        return None, report
    if not isinstance(document, LocMap):
        report.error("policy must be a YAML mapping with `rules`", None)
        return None, report
    dialect = dialects.detect(document)
    if dialect == "capfence":
        document = dialects.from_capfence(document, report)
    elif dialect == "governance":
        document = dialects.from_governance(document, report)
    policy = _compile_native(document, dialect, report)
    return (policy if report.ok else None), report


def _compile_native(document: LocMap, dialect: str, report: CompileReport) -> CompiledPolicy | None:
    for key in document:
        if key not in TOP_LEVEL_KEYS:
            report.error(f"unknown top-level key `{key}`", document.mark_of(key))
    timezone = _timezone(document, report)
    currencies = _currencies(document, report)
    currency = _default_currency(document, currencies, report)
    fx = _fx(document.get("fx"), currencies, report, document.mark_of("fx"))
    ctx = RuleContext(report, "", currencies, currency, fx)
    budgets = (
        compile_budgets(document["budgets"], ctx, document.mark_of("budgets"))
        if ("budgets" in document)
        else ()
    )
    ctx.budget_ids = frozenset(budget.budget_id for budget in budgets)
    rules = _compile_rules(document.get("rules"), ctx, document.mark_of("rules"))
    velocity = (
        compile_velocity(document["velocity"], ctx, document.mark_of("velocity"))
        if ("velocity" in document)
        else ()
    )
    ctx.rule_id = ""  # approval settings belong to no rule
    approvals = compile_approval_settings(
        document.get("approvals"), ctx, document.mark_of("approvals")
    )
    sessions = compile_sessions(document.get("sessions"), report, document.mark_of("sessions"))
    refunds = compile_refunds(document.get("refunds"), report, document.mark_of("refunds"))
    compensation = compile_compensation(
        document.get("compensation"), report, document.mark_of("compensation")
    )
    alerts = compile_alert_settings(document.get("alerts"), ctx, document.mark_of("alerts"))
    redaction = compile_redaction_settings(
        document.get("redaction"), report, document.mark_of("redaction")
    )
    anomaly = compile_anomaly_settings(
        document.get("anomaly"), document.get("rules"), ctx, document.mark_of("anomaly")
    )
    anomaly = with_alert_reads(anomaly, alerts)  # a `rate_spike` alert reads the rate
    if timezone is None or not report.ok:
        return None
    name = document.get("name")
    label = document.get("version")
    return CompiledPolicy(
        name=str(name) if name is not None else "policy",
        label=str(label) if label is not None else None,
        version=_version_hash(document),
        dialect=dialect,
        timezone=timezone,
        currency=currency,
        currencies=currencies,
        fx=fx,
        rules=rules,
        budgets=budgets,
        velocity=velocity,
        sessions=sessions,
        refunds=refunds,
        compensation=compensation,
        approvals=approvals,
        report=report,
        match_all=generate([rule.checks for rule in rules]),
        deny_rules=_enforced(rules, "deny"),
        approval_rules=_enforced(rules, "require_approval"),
        allow_rules=_enforced(rules, "allow"),
        log_only_rules=tuple(i for i, r in enumerate(rules) if r.log_only),
        redaction=redaction,
        anomaly=anomaly,
        alerts=alerts,
        agents=compile_agent_settings(document.get("agents"), report, document.mark_of("agents")),
        mandates=_mandates(document, ctx),  # errors still fail the compile (`report.ok`)
    )


def _mandates(document: LocMap, ctx: RuleContext) -> MandateSettings:
    """`mandates:` (docs/ap2.md): its `requires_mandate` entries take the rules' conditions."""
    ctx.rule_id = ""
    where = document.mark_of("mandates")
    return compile_mandate_settings(document.get("mandates"), ctx, where, _rule_checks, RULE_KEYS)


def _enforced(rules: tuple[CompiledRule, ...], effect: str) -> tuple[int, ...]:
    """The indexes of the enforced rules with `effect` (a `log_only` rule decides nothing)."""
    return tuple(i for i, r in enumerate(rules) if r.effect == effect and not r.log_only)


def _timezone(document: LocMap, report: CompileReport) -> ZoneInfo | None:
    name = document.get("timezone", "UTC")
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        report.error(f"unknown time zone `{name}`", document.mark_of("timezone"))
        return None


def _currencies(document: LocMap, report: CompileReport) -> CurrencyTable:
    tokens = document.get("tokens")
    if tokens is None:
        return CurrencyTable()
    if not isinstance(tokens, LocMap):
        report.error("`tokens` must map token codes to exponents", document.mark_of("tokens"))
        return CurrencyTable()
    try:
        return CurrencyTable({str(k): v for k, v in tokens.items()})  # type: ignore[misc]
    except InvalidInputError as error:
        report.error(str(error), document.mark_of("tokens"))
        return CurrencyTable()


def _default_currency(document: LocMap, currencies: CurrencyTable, report: CompileReport) -> str:
    if "currency" not in document:
        report.warning(
            "no `currency:` declared; amounts without a currency are read as USD", document.mark
        )
        return "USD"
    try:
        return currencies.normalize(document["currency"])
    except InvalidInputError as error:
        report.error(str(error), document.mark_of("currency"))
        return "USD"


def _fx(value: object, currencies: CurrencyTable, report: CompileReport, mark: Mark) -> FxTable:
    """`fx: {as_of: 2026-11-01, rates: {"EUR/USD": "1.08"}}`."""
    if value is None:
        return EMPTY_FX
    if not isinstance(value, LocMap) or set(value) - {"as_of", "rates"} or "rates" not in value:
        report.error("`fx` must be a mapping with `as_of` and `rates`", mark)
        return EMPTY_FX
    if "as_of" not in value:
        report.error("`fx.as_of` is required: rates must declare their date", mark)
    rates: dict[tuple[str, str], Fraction] = {}
    raw_rates = value["rates"]
    if not isinstance(raw_rates, LocMap):
        report.error("`fx.rates` must map `BASE/QUOTE` pairs to rates", value.mark_of("rates"))
        return EMPTY_FX
    for pair, rate in raw_rates.items():
        source, _, target = pair.partition("/")
        try:
            key = (currencies.normalize(source), currencies.normalize(target))
        except InvalidInputError as error:
            report.error(f"fx pair `{pair}`: {error}", raw_rates.mark_of(pair))
            continue
        number = _fx_rate(rate)
        if number is None or not number.is_finite() or number <= 0:
            report.error(f"fx rate for `{pair}` must be a positive number", raw_rates.mark_of(pair))
            continue
        rates[key] = Fraction(number)
    return FxTable(str(value.get("as_of")), rates)


def _fx_rate(rate: object) -> Decimal | None:
    if isinstance(rate, Decimal):
        return rate
    if isinstance(rate, str | int) and not isinstance(rate, bool):
        try:
            return Decimal(rate)
        except InvalidOperation:
            return None
    return None


def _compile_rules(value: object, ctx: RuleContext, mark: Mark) -> tuple[CompiledRule, ...]:
    if value is None:
        ctx.report.warning("the policy has no rules, so it denies everything", mark)
        return ()
    if not isinstance(value, LocList):
        ctx.report.error("`rules` must be a list", mark)
        return ()
    if len(value) > limits.policy_rules_count_max:
        ctx.report.error(f"more than {limits.policy_rules_count_max} rules", mark)
        return ()
    compiled: list[CompiledRule] = []
    seen: dict[str, Mark] = {}
    for index, entry in enumerate(value):
        rule = _compile_rule(entry, index, ctx, value.mark_of(index), seen)
        if rule is not None:
            compiled.append(rule)
    if not any(rule.effect == "allow" and not rule.log_only for rule in compiled):
        ctx.report.warning("the policy has no allow rule, so it can never allow a payment", mark)
    return tuple(compiled)


def _compile_rule(
    entry: object, index: int, ctx: RuleContext, mark: Mark, seen: dict[str, Mark]
) -> CompiledRule | None:
    if not isinstance(entry, LocMap):
        ctx.report.error(f"`rules[{index}]` must be a mapping", mark)
        return None
    rule_id = entry.get("id")
    if not isinstance(rule_id, str) or not _RULE_ID.match(rule_id):
        ctx.report.error(
            f"`rules[{index}]` needs an `id` of letters, digits and . _ : - [ ]",
            entry.mark_of("id"),
        )
        return None
    ctx.rule_id = rule_id
    if rule_id in seen:
        ctx.error(f"duplicate rule id (first defined at line {seen[rule_id].line})", entry.mark)
        return None
    seen[rule_id] = entry.mark
    effect = entry.get("effect")
    if effect not in EFFECTS:
        ctx.error("`effect` must be deny, require_approval or allow", entry.mark_of("effect"))
        return None
    unknown = sorted(set(entry) - RULE_KEYS)
    for key in unknown:
        ctx.error(f"unknown key `{key}`", entry.mark_of(key))
    checks, conditions = _rule_checks(entry, ctx, effect)
    if unknown or checks is None:
        return None
    if not checks:
        ctx.report.warning("rule has no conditions and matches every intent", entry.mark, rule_id)
    reason = str(
        entry.get("reason")
        or entry.get("description")
        or _default_reason(rule_id, effect, conditions)
    )
    if len(reason) > limits.rule_reason_chars_max:
        reason = reason[: limits.rule_reason_chars_max - 1] + "…"
        if entry.get("reason") or entry.get("description"):
            ctx.report.warning(
                f"`reason` is longer than {limits.rule_reason_chars_max} characters; "
                "decisions quote it cut short",
                entry.mark_of("reason") if "reason" in entry else entry.mark,
                rule_id,
            )
    ttl = None
    if "approval_ttl" in entry:
        if effect != "require_approval":
            ctx.error(
                "`approval_ttl` applies only to require_approval rules",
                entry.mark_of("approval_ttl"),
            )
            return None
        ttl = duration_seconds(
            entry["approval_ttl"], ctx, entry.mark_of("approval_ttl"), "approval_ttl"
        )
    mode = entry.get("mode", "enforce")
    if mode not in ("enforce", "log_only"):
        ctx.error("`mode` must be enforce or log_only", entry.mark_of("mode"))
        return None
    return CompiledRule(
        rule_id,
        effect,
        str(reason),
        tuple(checks),
        tuple(conditions),
        entry.mark,
        ttl,
        log_only=mode == "log_only",
    )


# Conditions run cheapest first, whatever their order in the file: list lookups, then
# amounts (which may need FX), then time, budget ratios and CEL. Besides speed, a fixed order
# means a rule whose `currencies` excludes an intent never reaches its amount comparison, so
# whether a rule errors cannot depend on how its keys were written.
_STAGE_LISTS, _STAGE_AMOUNTS, _STAGE_LATE = 0, 1, 2


def _rule_checks(
    entry: LocMap, ctx: RuleContext, effect: str
) -> tuple[list[Check] | None, list[str]]:
    errors_before = len(ctx.report.errors)
    staged: list[tuple[int, Check]] = []
    conditions: list[str] = []
    for key, value in entry.items():
        built = _condition(key, value, entry.mark_of(key), ctx, effect)
        if built is None:
            continue
        staged.extend(built)
        conditions.append(_describe(key, value))
    if len(ctx.report.errors) > errors_before:
        return None, conditions
    return [check for _, check in sorted(staged, key=lambda item: item[0])], conditions


def _condition(
    key: str, value: object, mark: Mark, ctx: RuleContext, effect: str
) -> list[tuple[int, Check]] | None:
    """The staged checks of one condition key; None for keys that are not conditions."""
    if key in LIST_CONDITIONS:
        field_name, negate = LIST_CONDITIONS[key]
        patterns = string_list(value, key, ctx, mark)
        if patterns is None:
            return []
        try:
            check = list_check(
                field_name,
                patterns,
                negate=negate,
                normalize=normalizer_for(field_name, ctx),
                unknown_matches=effect != "allow",
            )
        except InvalidInputError as error:
            ctx.error(f"`{key}`: {error}", mark)
            return []
        return [(_STAGE_LISTS, check)]
    if key in FLAT_AMOUNT:
        threshold = parse_threshold(value, ctx.default_currency, ctx, mark)
        if threshold is None:
            return []
        return [(_STAGE_AMOUNTS, amount_check(FLAT_AMOUNT[key], threshold, ctx.fx))]
    if key == "amount":
        return [(_STAGE_AMOUNTS, check) for check in amount_checks(value, ctx, mark)]
    if key in ("during", "outside"):
        schedule = schedule_check(value, ctx, mark, negate=key == "outside")
        return [(_STAGE_LATE, schedule)] if schedule else []
    if key == "budget_ratio":
        return [(_STAGE_LATE, check) for check in budget_ratio_checks(value, ctx, mark)]
    if key == "anomaly":
        return [(_STAGE_LATE, check) for check in anomaly_checks(value, ctx, mark)]
    if key == "when":
        expression = cel_check(value, ctx, mark)
        return [(_STAGE_LATE + 1, expression)] if expression else []
    return None


_EFFECT_WORDS = {"deny": "denied", "require_approval": "approval required", "allow": "allowed"}
_OP_SIGNS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _describe(key: str, value: object) -> str:
    """A short human description of one condition, for default reasons and `explain`."""
    if key in FLAT_AMOUNT:
        return f"amount {_OP_SIGNS[FLAT_AMOUNT[key]]} {value}"
    if isinstance(value, dict):
        parts = [f"{_OP_SIGNS.get(k, k)} {v}" for k, v in value.items() if k in _OP_SIGNS]
        rest = [f"{k} {_plain(v)}" for k, v in value.items() if k not in _OP_SIGNS]
        return f"{key} " + " ".join(parts + rest)
    if key in LIST_CONDITIONS:
        field_name, negate = LIST_CONDITIONS[key]
        items = value if isinstance(value, list) else [value]
        shown = ", ".join(str(v) for v in items[:5]) + (", ..." if len(items) > 5 else "")
        return f"{field_name} {'not in' if negate else 'in'} [{shown}]"
    return f"{key}: {value}"


def _default_reason(rule_id: str, effect: str, conditions: list[str]) -> str:
    detail = " and ".join(conditions) if conditions else "every intent"
    return f"{_EFFECT_WORDS[effect]} by rule `{rule_id}` ({detail})"


def _plain(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    return value


def _version_hash(document: LocMap) -> str:
    """SHA-256 of the canonical native form: comments and layout do not change the version."""
    return "sha256:" + hashlib.sha256(canonical_bytes(_plain(document))).hexdigest()
