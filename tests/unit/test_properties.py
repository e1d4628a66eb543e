"""Properties: evaluation is deterministic, no invalid amount reaches a rule, money round-trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paywarden import limits
from paywarden.errors import InvalidAmountError, InvalidIntentError
from paywarden.intent import PaymentIntent, normalize_recipient
from paywarden.money import DEFAULT_TOKEN_EXPONENTS, ISO_4217_EXPONENTS, Money, format_minor
from paywarden.policy import BudgetTrace, StateSnapshot, check_policy, compile_policy, evaluate
from paywarden.policy.compiler import RULE_KEYS, TOP_LEVEL_KEYS

ALL_CODES = sorted({**ISO_4217_EXPONENTS, **DEFAULT_TOKEN_EXPONENTS})
EXPONENT_EXAMPLES = ["USD", "JPY", "KWD", "CLF", "USDC"]  # exponents 2, 0, 3, 4, 6

POLICY = compile_policy(
    """\
currency: USD
timezone: America/New_York
fx:
  as_of: "2026-01-05"
  rates: {EUR/USD: "1.08"}
rules:
  - id: deny-above-10000
    effect: deny
    amount: {gt: 10000}
  - id: deny-evil
    effect: deny
    recipients: ["*.evil.com", evil.com]
  - id: deny-night
    effect: deny
    during: {hours: "22:00-06:00"}
  - id: halt
    effect: deny
    budget_ratio: {gt: 0.9}
  - id: approve-above-500
    effect: require_approval
    amount: {gte: 500}
  - id: approve-large-to-shops
    effect: require_approval
    when: 'amount_minor > 20000 && recipient.endsWith(".shop")'
  - id: allow-business
    effect: allow
    actions: ["payments.*"]
    phases_not: [EXPLORE]
"""
)

amounts = st.integers(min_value=1, max_value=2_000_000).map(lambda cents: format_minor(cents, 2))
intents = st.builds(
    PaymentIntent,
    agent=st.sampled_from(["treasury-agent", "research-bot"]),
    action=st.sampled_from(["payments.transfer", "payments.refund", "tools.pay"]),
    amount=amounts,
    currency=st.sampled_from(["USD", "EUR", "GBP"]),
    recipient=st.sampled_from(
        ["vendor-corp-123", "x.evil.com", "EVIL.com.", "a.shop", "paypal.com"]
    ),
)
instants = st.datetimes(
    min_value=datetime(2026, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
    max_value=datetime(2026, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)
budgets = st.lists(
    st.builds(
        BudgetTrace,
        budget_id=st.sampled_from(["daily", "weekly"]),
        currency=st.just("USD"),
        limit_minor=st.integers(0, 10**8),
        spent_minor=st.integers(0, 10**8),
        held_minor=st.integers(0, 10**8),
        amount_minor=st.integers(1, 10**6),
        gate=st.just("ok"),
    ),
    max_size=2,
).map(tuple)
states = st.builds(
    StateSnapshot,
    phase=st.sampled_from([None, "EXPLORE", "commit", "DECIDE"]),
    budgets=budgets,
)


@given(intent=intents, state=states, now=instants)
def test_evaluation_is_deterministic(
    intent: PaymentIntent, state: StateSnapshot, now: datetime
) -> None:
    first = evaluate(POLICY, intent, state, now)
    second = evaluate(POLICY, intent, state, now)
    rebuilt = PaymentIntent(
        agent=intent.agent,
        action=intent.action,
        amount=format_minor(intent.amount_minor, intent.amount.exponent),
        currency=intent.currency,
        recipient=intent.recipient_original,
    )
    third = evaluate(POLICY, rebuilt, StateSnapshot(state.phase, state.budgets), now)
    assert first == second == third
    assert first.to_dict() == second.to_dict() == third.to_dict()
    assert first.outcome in ("allow", "deny", "require_approval")
    if first.outcome == "allow":  # fail closed: an allow never coexists with a failing rule
        assert all(rule.error is None for rule in first.trace.rules)


@given(intent=intents, now=instants, shift=st.integers(-(10**6), 10**6))
def test_evaluation_depends_only_on_the_instant_not_its_offset(
    intent: PaymentIntent, now: datetime, shift: int
) -> None:
    offset = timezone(timedelta(seconds=(shift % 86_400) - 43_200))
    assert (
        evaluate(POLICY, intent, now=now).outcome
        == evaluate(POLICY, intent, now=now.astimezone(offset)).outcome
    )


edge_values = st.one_of(
    st.text(max_size=45),
    st.from_regex(r"\A[+-]?[0-9_]{0,20}(\.[0-9]{0,9})?([eE][+-]?[0-9]{1,3})?\Z"),
    st.from_regex(r"\A[0-9]{1,17}(\.[0-9]{0,8})?\Z"),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.decimals(min_value=Decimal(0), max_value=Decimal(10**14), places=3),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)


def _exact_minor(value: Any, exponent: int) -> Decimal:
    return Decimal(value).scaleb(exponent)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(value=edge_values, code=st.sampled_from(EXPONENT_EXAMPLES))
def test_no_invalid_amount_reaches_a_rule(value: object, code: str) -> None:
    try:
        money = Money.parse(value, code)
    except InvalidAmountError as error:
        assert str(error)  # every rejection says why
        return
    assert not isinstance(value, bool | float)
    assert type(money.amount_minor) is int
    assert 0 < money.amount_minor <= limits.amount_minor_max
    # the value is kept exactly: no rounding, no truncation
    assert _exact_minor(value, money.exponent) == money.amount_minor
    assert Money.parse(format_minor(money.amount_minor, money.exponent), code) == money


@given(code=st.sampled_from(ALL_CODES), minor=st.integers(1, limits.amount_minor_max))
def test_format_then_parse_round_trips_for_every_currency(code: str, minor: int) -> None:
    money = Money.parse(format_minor(minor, ISO_4217_EXPONENTS.get(code, 6)), code)
    assert money.amount_minor == minor
    assert Money.parse(str(money).split()[0], code) == money
    assert Money.parse(money.to_decimal(), code) == money


@settings(deadline=None)
@given(
    threshold=st.integers(0, 10**9),
    delta=st.integers(-3, 3),
    op=st.sampled_from(["gt", "gte", "lt", "lte"]),
    code=st.sampled_from(EXPONENT_EXAMPLES),
)
def test_amount_rules_compare_exactly_at_any_threshold(
    threshold: int, delta: int, op: str, code: str
) -> None:
    amount = threshold + delta
    if amount <= 0:
        return
    exponent = {"USD": 2, "JPY": 0, "KWD": 3, "CLF": 4, "USDC": 6}[code]
    policy = compile_policy(
        f"currency: {code}\nrules:\n  - id: r\n    effect: deny\n"
        f"    amount: {{{op}: '{format_minor(threshold, exponent)}'}}\n"
    )
    intent = PaymentIntent(
        agent="a",
        action="payments.x",
        amount=format_minor(amount, exponent),
        currency=code,
        recipient="r",
    )
    expected = {
        "gt": amount > threshold,
        "gte": amount >= threshold,
        "lt": amount < threshold,
        "lte": amount <= threshold,
    }[op]
    decision = evaluate(policy, intent, now=datetime(2026, 1, 7, tzinfo=UTC))
    assert (decision.rule_ids == ("r",)) is expected


RECIPIENT_PIECES = st.sampled_from(
    [*"aZ09.@:/ -_", "xn--", "https://", ":8443", "\u00a0", "\u3002", "\uff0e", "ß", "ü", "а", "Ｋ"]
)


@settings(max_examples=300)
@given(text=st.one_of(st.text(max_size=40), st.lists(RECIPIENT_PIECES, max_size=12).map("".join)))
def test_recipient_normalisation_is_idempotent_or_rejects(text: str) -> None:
    try:
        canonical = normalize_recipient(text)
    except InvalidIntentError:
        return
    assert canonical and canonical == canonical.strip()
    assert "://" in canonical or not canonical.endswith(".")
    assert normalize_recipient(canonical) == canonical


@given(
    label=st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?\Z"),
    upper=st.booleans(),
    dot=st.booleans(),
    pad=st.sampled_from(["", " ", "  "]),
)
def test_case_dots_and_spaces_never_separate_a_recipient_from_a_deny_rule(
    label: str, upper: bool, dot: bool, pad: str
) -> None:
    if label.startswith("xn--") or "--" in label[2:4]:
        return  # not a valid plain label
    recipient = f"{label}.evil.com"
    variant = pad + (recipient.upper() if upper else recipient) + ("." if dot else "") + pad
    intent = PaymentIntent(
        agent="a", action="payments.transfer", amount="1", currency="USD", recipient=variant
    )
    decision = evaluate(POLICY, intent, now=datetime(2026, 1, 7, 15, tzinfo=UTC))
    assert decision.rule_ids[:1] == ("deny-evil",)


YAML_VALUES = st.sampled_from(
    [
        *("5", "-1", "0", "1.5", "0.001", "'x'", "''", "null", "true", "[]", "{}", "[a, b]"),
        *("{gt: 5}", "{gt: 1, currency: EUR}", "{gt: [1]}", "{gt: {a: 1}}", "{gt: .inf}"),
        *("'09:00-17:00'", "{hours: '09:00-24:30'}", "{days: [1]}", "{days: [null]}"),
        *("'amount_minor > 1'", "'[1].exists(x, x > y)'", "0x10", "1e400", "'*.mün*.de'"),
        *("{rates: {EUR/USD: 1}}", "{as_of: x, rates: {EUR/USD: abc}}", "{as_of: x, rates: []}"),
        *("{MYT: 4}", "{MYT: x}", "[{id: b, limit: 5, window: day}]", "[{}]", "[1]"),
    ]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    top=st.dictionaries(
        st.sampled_from(sorted(TOP_LEVEL_KEYS - {"rules"})), YAML_VALUES, max_size=3
    ),
    rule=st.dictionaries(
        st.sampled_from(sorted(RULE_KEYS - {"id", "effect"})), YAML_VALUES, max_size=4
    ),
    effect=st.sampled_from(["deny", "allow", "require_approval", "DENY"]),
)
def test_compiling_any_policy_reports_instead_of_raising(
    top: dict[str, str], rule: dict[str, str], effect: str
) -> None:
    lines = [f"{key}: {value}" for key, value in top.items()]
    lines += ["rules:", "  - id: r1", f"    effect: {effect}"]
    lines += [f"    {key}: {value}" for key, value in rule.items()]
    policy, report = check_policy("\n".join(lines) + "\n")
    assert (policy is None) == (not report.ok)
    assert all(problem.message for problem in report.problems)
