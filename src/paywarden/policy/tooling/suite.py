"""Policy test files: YAML cases of intents, optional ledger history, clock and session phase,
each with the decision it expects.

A file is read with the policy's own document loader, so every problem is reported with its
line and column, numbers keep their exact decimal text and duplicate keys are errors. Intents
are built later, with the currency table of the policy under test (`build_intent`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from paywarden.errors import InvalidInputError
from paywarden.intent import PaymentIntent
from paywarden.money import CurrencyTable
from paywarden.policy.document import DocumentError, LocList, LocMap, Mark, load_document

INTENT_FIELDS = frozenset(
    {
        "agent",
        "action",
        "amount",
        "currency",
        "recipient",
        "environment",
        "category",
        "purpose",
        "recipient_name",
        "rail",
        "session_id",
        "metadata",
    }
)
CASE_KEYS = INTENT_FIELDS | {
    "name",
    "description",
    "now",
    "phase",
    "deployment",
    "history",
    "expect",
}
HISTORY_KEYS = INTENT_FIELDS | {"at", "status"}
HISTORY_STATUSES = ("captured", "held")
FILE_KEYS = frozenset({"description", "defaults", "cases"})
EXPECT_KEYS = frozenset({"outcome", "reason_code", "rule_ids"})
OUTCOMES = ("allow", "deny", "require_approval")
PHASES = ("EXPLORE", "DECIDE", "COMMIT")
DEFAULT_NOW = "2026-01-07T15:00:00+00:00"  # a Wednesday: 15:00 UTC, 10:00 in New York
DEFAULT_SESSION = "policy-test"


class SuiteError(Exception):
    """A test file that cannot be run: unreadable, malformed or naming unknown keys."""

    def __init__(self, source: str, message: str, mark: Mark | None = None) -> None:
        where = f"{source}:{mark}" if mark else source
        super().__init__(f"{where}: {message}")
        self.source = source
        self.message = message
        self.mark = mark


@dataclass(frozen=True, slots=True)
class Expectation:
    """What a case expects; `reason_code` and `rule_ids` are checked only when given."""

    outcome: str
    reason_code: str | None = None
    rule_ids: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"outcome": self.outcome}
        if self.reason_code is not None:
            data["reason_code"] = self.reason_code
        if self.rule_ids is not None:
            data["rule_ids"] = list(self.rule_ids)
        return data


@dataclass(frozen=True, slots=True)
class PastPayment:
    """A payment made before the case: authorized at `at`, then captured or left held."""

    fields: Mapping[str, object]
    at: datetime
    status: str
    mark: Mark


@dataclass(frozen=True, slots=True)
class TestCase:
    """One case: the intent's fields, the instant, the session phase, the past payments."""

    __test__ = False  # not a pytest class, whatever its name

    source: str
    name: str
    mark: Mark
    fields: Mapping[str, object]
    now: datetime
    expect: Expectation
    phase: str | None = None
    history: tuple[PastPayment, ...] = field(default=())
    deployment: str | None = None  # the deployment's environment (the Warden's)


def load_suite(text: str, source: str, *, samples: bool = False) -> list[TestCase]:
    """The cases of one test file, or raise `SuiteError` at the first problem. Sample intents
    (`samples`, for `policy diff --intents`) need no `expect` and take no `history`."""
    try:
        document = load_document(text)
    except DocumentError as error:
        raise SuiteError(source, error.message, error.mark) from None
    if not isinstance(document, LocMap):
        raise SuiteError(source, "a test file is a mapping with `cases`")
    _no_unknown(document, FILE_KEYS, source, "key")
    defaults = document.get("defaults", LocMap(document.mark))
    if not isinstance(defaults, LocMap):
        raise SuiteError(source, "`defaults` must be a mapping", document.mark_of("defaults"))
    _no_unknown(defaults, CASE_KEYS - {"name", "expect", "history"}, source, "default")
    raw_cases = document.get("cases")
    if not isinstance(raw_cases, LocList) or not raw_cases:
        raise SuiteError(source, "`cases` must be a non-empty list", document.mark_of("cases"))
    cases: list[TestCase] = []
    seen: dict[str, Mark] = {}
    for index, raw in enumerate(raw_cases):
        mark = raw_cases.mark_of(index)
        if not isinstance(raw, LocMap):
            raise SuiteError(source, f"`cases[{index}]` must be a mapping", mark)
        case = _case(raw, defaults, source, samples)
        if case.name in seen:
            first = seen[case.name].line
            raise SuiteError(source, f"duplicate case name `{case.name}` (line {first})", mark)
        seen[case.name] = mark
        cases.append(case)
    return cases


def _case(raw: LocMap, defaults: LocMap, source: str, samples: bool) -> TestCase:
    _no_unknown(raw, CASE_KEYS, source, "case key")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise SuiteError(source, "every case needs a `name`", raw.mark)
    merged = {**defaults, **raw}
    fields = {key: _plain(value) for key, value in merged.items() if key in INTENT_FIELDS}
    now = _instant(merged.get("now", DEFAULT_NOW), source, _mark(raw, defaults, "now"))
    phase = merged.get("phase")
    if phase is not None and (not isinstance(phase, str) or phase.upper() not in PHASES):
        where = _mark(raw, defaults, "phase")
        raise SuiteError(source, f"`phase` must be one of {', '.join(PHASES)}", where)
    if samples and "history" in raw:
        raise SuiteError(source, "sample intents take no `history`", raw.mark_of("history"))
    if "expect" not in raw and not samples:
        raise SuiteError(source, f"case `{name}` needs `expect`", raw.mark)
    expect = (
        _expectation(raw["expect"], source, raw.mark_of("expect"))
        if "expect" in raw
        else Expectation("deny")
    )
    history = _history(raw.get("history"), fields, source, raw.mark_of("history"))
    deployment = merged.get("deployment")
    if deployment is not None and not isinstance(deployment, str):
        where = _mark(raw, defaults, "deployment")
        raise SuiteError(source, "`deployment` must be an environment name", where)
    return TestCase(
        source,
        name,
        raw.mark,
        fields,
        now,
        expect,
        phase.upper() if isinstance(phase, str) else None,
        history,
        deployment,
    )


def _expectation(value: object, source: str, mark: Mark) -> Expectation:
    if not isinstance(value, LocMap):
        raise SuiteError(source, "`expect` must be a mapping with `outcome`", mark)
    _no_unknown(value, EXPECT_KEYS, source, "expect key")
    outcome = value.get("outcome")
    if outcome not in OUTCOMES:
        where = value.mark_of("outcome")
        raise SuiteError(source, f"`expect.outcome` must be one of {', '.join(OUTCOMES)}", where)
    reason_code = value.get("reason_code")
    if reason_code is not None and not isinstance(reason_code, str):
        raise SuiteError(source, "`expect.reason_code` must be text", value.mark_of("reason_code"))
    rule_ids = value.get("rule_ids")
    if rule_ids is not None and not (
        isinstance(rule_ids, list) and all(isinstance(item, str) for item in rule_ids)
    ):
        raise SuiteError(source, "`expect.rule_ids` must be a list", value.mark_of("rule_ids"))
    return Expectation(
        str(outcome),
        reason_code,
        tuple(str(item) for item in rule_ids) if isinstance(rule_ids, list) else None,
    )


def _history(
    value: object, base: Mapping[str, object], source: str, mark: Mark
) -> tuple[PastPayment, ...]:
    if value is None:
        return ()
    if not isinstance(value, LocList):
        raise SuiteError(source, "`history` must be a list of past payments", mark)
    payments = []
    for index, entry in enumerate(value):
        where = value.mark_of(index)
        if not isinstance(entry, LocMap) or "at" not in entry:
            raise SuiteError(source, "each past payment is a mapping with `at`", where)
        _no_unknown(entry, HISTORY_KEYS, source, "history key")
        status = entry.get("status", "captured")
        if status not in HISTORY_STATUSES:
            raise SuiteError(source, "`status` must be captured or held", entry.mark_of("status"))
        fields = {**base, **{k: _plain(v) for k, v in entry.items() if k in INTENT_FIELDS}}
        at = _instant(entry["at"], source, entry.mark_of("at"))
        payments.append(PastPayment(fields, at, str(status), where))
    return tuple(payments)


def build_intent(
    fields: Mapping[str, object], currencies: CurrencyTable, default_currency: str
) -> PaymentIntent:
    """The intent a case describes (in the policy's currency unless it names one); raise
    `InvalidInputError` when it is not a valid one."""
    missing = sorted({"agent", "action", "amount", "recipient"} - set(fields))
    if missing:
        raise InvalidInputError(f"the intent has no `{missing[0]}`")
    values: dict[str, object] = {"currency": default_currency, **fields}
    return PaymentIntent(currencies=currencies, **values)  # type: ignore[arg-type]


def _instant(value: object, source: str, mark: Mark) -> datetime:
    try:
        instant = datetime.fromisoformat(str(value))
    except ValueError:
        raise SuiteError(source, f"`{value}` is not an ISO 8601 instant", mark) from None
    if instant.tzinfo is None:
        raise SuiteError(source, f"`{value}` needs a UTC offset such as +00:00", mark)
    return instant.astimezone(UTC)


def _plain(value: object) -> object:
    """Document values as intent fields: an exact decimal becomes its text."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


def _mark(raw: LocMap, defaults: LocMap, key: str) -> Mark:
    return raw.mark_of(key) if key in raw else defaults.mark_of(key)


def _no_unknown(mapping: LocMap, known: frozenset[str], source: str, what: str) -> None:
    unknown = sorted(set(mapping) - known)
    if unknown:
        raise SuiteError(source, f"unknown {what} `{unknown[0]}`", mapping.mark_of(unknown[0]))
