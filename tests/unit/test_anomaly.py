"""Anomaly facts (issue 17): the scores against hand-computed values, the `anomaly:` policy
section, the rule condition, and compiled CEL agreeing with the CEL library on them."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime
from fractions import Fraction

import pytest

from paywarden.money import DEFAULT_CURRENCIES
from paywarden.policy import compile_policy, evaluate
from paywarden.policy.anomaly import AnomalySettings, AutoHalt, amount_score, rate_spike
from paywarden.policy.cel_compile import compile_cel
from paywarden.policy.compiler import check_policy
from paywarden.policy.decision import AnomalyFacts
from paywarden.policy.document import Mark
from paywarden.policy.facts import Facts, StateSnapshot
from paywarden.policy.fx import EMPTY_FX
from paywarden.policy.report import CompileReport
from paywarden.policy.rules import RuleContext, cel_library_check
from paywarden.testing import example_intent

NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)
DEFAULTS = AnomalySettings()
LN10 = math.log(10)


def test_zero_variance_history_gives_a_finite_loud_score() -> None:
    history = [1000] * 10
    # MAD 0 counts as the floor 0.05: 0.6745 * ln(10) / 0.05 = 31.0619
    assert amount_score(10_000, history, DEFAULTS) == pytest.approx(0.6745 * LN10 / 0.05)
    assert amount_score(10_000, history, DEFAULTS) == pytest.approx(31.06187, abs=1e-5)
    assert amount_score(1000, history, DEFAULTS) == 0.0  # the usual amount is not unusual
    assert amount_score(100, history, DEFAULTS) == pytest.approx(-31.06187, abs=1e-5)


def test_a_huge_outlier_against_a_spread_history() -> None:
    # ln of 100, 100, 1000, 1000, 10000: median ln(1000), MAD ln(10) (deviations 0, 0, ln 10 x3)
    history = [100, 100, 1000, 1000, 10_000]
    settings = replace(DEFAULTS, min_history=5)
    assert amount_score(10**15, history, settings) == pytest.approx(0.6745 * 12)  # 12 decades up
    assert amount_score(1, history, settings) == pytest.approx(0.6745 * -3)
    assert amount_score(10**15, [1] * 50, DEFAULTS) == pytest.approx(0.6745 * 15 * LN10 / 0.05)


def test_a_tiny_history_scores_zero_below_the_minimum() -> None:
    assert amount_score(10**9, [500] * 9, DEFAULTS) == 0.0
    assert amount_score(10**9, [], replace(DEFAULTS, min_history=1)) == 0.0
    one = replace(DEFAULTS, min_history=1)
    assert amount_score(1000, [500], one) == pytest.approx(0.6745 * math.log(2) / 0.05)  # 9.3505
    # an even history: the median is the mean of the middle two logs (ln 100 and ln 10000)
    assert amount_score(1000, [100, 10_000], one) == pytest.approx(0.0, abs=1e-12)


def test_rate_spike_needs_the_minimum_and_the_factor_exactly() -> None:
    # 5-minute windows in 24 hours: 288. A spike: recent > 10 and recent * 288 > 6 * baseline.
    assert rate_spike(11, 11, DEFAULTS)  # a first burst: no longer-run activity
    assert not rate_spike(10, 10, DEFAULTS)  # not above rate_min
    assert rate_spike(11, 527, DEFAULTS)  # 3168 > 3162
    assert not rate_spike(11, 528, DEFAULTS)  # 3168 = 3168: not above
    assert not rate_spike(3, 3, replace(DEFAULTS, rate_min=2, rate_factor=Fraction(288)))


POLICY = """
currency: USD
anomaly:
  history: 20
  min_history: 3
  mad_floor: 0.1
  flag_above: 4
  rate_window: 10m
  rate_baseline: 1d
  rate_min: 5
  rate_factor: 2.5
  auto_halt: {after: 2, within: 1h}
rules:
  - {id: odd, effect: require_approval, anomaly: {amount_score: {gt: 3.5}}}
  - {id: first, effect: require_approval, anomaly: {new_recipient: true}}
  - {id: burst, effect: deny, when: 'anomaly.rate_spike'}
  - {id: ok, effect: allow}
"""


def test_the_policy_section_compiles_and_marks_the_facts_used() -> None:
    policy = compile_policy(POLICY)
    assert policy.anomaly == AnomalySettings(
        history=20,
        min_history=3,
        mad_floor=0.1,
        flag_above=4.0,
        rate_window_seconds=600,
        rate_baseline_seconds=86_400,
        rate_min=5,
        rate_factor=Fraction(5, 2),
        auto_halt=AutoHalt(2, 3600),
        reads=frozenset({"amount_score", "new_recipient", "rate_spike"}),
    )
    plain = compile_policy("currency: USD\nrules:\n  - {id: ok, effect: allow}\n")
    assert plain.anomaly == AnomalySettings() and not plain.anomaly.used


@pytest.mark.parametrize(
    ("rule", "reads"),
    [
        ("when: 'anomaly.amount_score > 5.0'", {"amount_score"}),
        ("when: 'anomaly . rate_spike || amount_minor > 5'", {"rate_spike"}),
        ("when: 'anomaly[\"new_recipient\"]'", {"amount_score", "new_recipient", "rate_spike"}),
        ("anomaly: {new_recipient: true}", {"new_recipient"}),
        ("when: 'amount_minor > 5'", set()),
    ],
)
def test_only_the_facts_rules_read_are_computed(rule: str, reads: set[str]) -> None:
    policy = compile_policy(f"rules:\n  - {{id: x, effect: deny, {rule}}}\n")
    assert policy.anomaly.reads == reads and policy.anomaly.used == bool(reads)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("anomaly: {history: 0}", "anomaly.history"),
        ("anomaly: {rate_window: 2d, rate_baseline: 1d}", "longer than"),
        ("anomaly: {mad_floor: -1}", "anomaly.mad_floor"),
        ("anomaly: {auto_halt: {after: 2}}", "auto_halt"),
        ("anomaly: {colour: red}", "must be a mapping"),
        ("rules:\n  - {id: x, effect: deny, anomaly: {amount_score: 3}}", "amount_score"),
        ("rules:\n  - {id: x, effect: deny, anomaly: {new_recipient: 1}}", "true or false"),
        ("rules:\n  - {id: x, effect: deny, anomaly: {odd: true}}", "unknown key"),
    ],
)
def test_bad_settings_are_compile_errors(section: str, message: str) -> None:
    policy, report = check_policy(f"currency: USD\n{section}\n")
    assert policy is None and message in "\n".join(report.lines())


def _decide(facts: AnomalyFacts | None) -> tuple[str, tuple[str, ...]]:
    decision = evaluate(
        compile_policy(POLICY), example_intent("5.00"), StateSnapshot(anomaly=facts), NOW
    )
    return decision.outcome, decision.rule_ids


def test_rules_decide_on_the_facts_and_the_trace_records_them() -> None:
    calm = AnomalyFacts(0.5, False, False, 20, 1, 40)
    assert _decide(calm) == ("allow", ("ok",))
    assert _decide(replace(calm, amount_score=3.6)) == ("require_approval", ("odd",))
    assert _decide(replace(calm, new_recipient=True)) == ("require_approval", ("first",))
    assert _decide(replace(calm, rate_spike=True))[0] == "deny"
    assert _decide(None) == ("allow", ("ok",))  # not computed (tooling): nothing unusual
    decision = evaluate(
        compile_policy(POLICY), example_intent("5.00"), StateSnapshot(anomaly=calm), NOW
    )
    recorded = decision.to_record()["trace"]
    assert isinstance(recorded, dict) and recorded["anomaly"]["amount_score"] == "0.500000"


@pytest.mark.parametrize(
    "expression",
    [
        "anomaly.amount_score > 3.5",
        "anomaly.amount_score >= 3",
        "anomaly.amount_score < -2.0 || anomaly.new_recipient",
        "anomaly.new_recipient && !anomaly.rate_spike",
        "anomaly.rate_spike == true",
        "anomaly.amount_score == 0",
    ],
)
def test_compiled_anomaly_cel_agrees_with_the_library(expression: str) -> None:
    compiled = compile_cel(expression)
    assert compiled is not None, "in the compiled subset"
    context = RuleContext(CompileReport(), "r", DEFAULT_CURRENCIES, "USD", EMPTY_FX)
    library = cel_library_check(expression, context, Mark(1, 1))
    assert library is not None, context.report.errors
    cases = [
        None,
        AnomalyFacts(0.0, False, False, 0, 1, 1),
        AnomalyFacts(3.5, True, False, 50, 2, 9),
        AnomalyFacts(31.06, False, True, 10, 12, 12),
        AnomalyFacts(-2.5, True, True, 10, 12, 12),
    ]
    for case in cases:
        facts = Facts(example_intent(), StateSnapshot(anomaly=case), NOW, NOW.tzinfo)  # type: ignore[arg-type]
        assert compiled(facts) == library(facts), (expression, case)


def test_anomaly_outside_the_subset_goes_to_the_library() -> None:
    assert compile_cel("anomaly") is None
    assert compile_cel("anomaly.unknown > 1") is None
    assert compile_cel("has(anomaly.amount_score)") is None


GOVERNANCE = """
budget: {session_limit: 100.00}
rules:
  - id: odd_amount
    condition: "anomaly.amount_score > 3.5 && cost > 1"
    action: PENDING_APPROVAL
    message: "Unusual amount"
  - id: new_payee_burst
    condition: "anomaly.new_recipient == true && anomaly.rate_spike != false"
    action: DENY
    message: "Burst to a new payee"
"""


def test_governance_conditions_on_anomaly_facts() -> None:
    policy = compile_policy(GOVERNANCE)
    assert policy.dialect == "governance" and policy.anomaly.reads == {
        "amount_score",
        "new_recipient",
        "rate_spike",
    }
    calm = AnomalyFacts(0.0, False, False, 20, 1, 40)

    def rules_matched(facts: AnomalyFacts) -> set[str]:
        decision = evaluate(policy, example_intent("5.00"), StateSnapshot(anomaly=facts), NOW)
        return {rule.rule_id for rule in decision.trace.rules if rule.matched}

    assert rules_matched(calm) & {"odd_amount", "new_payee_burst"} == set()
    assert "odd_amount" in rules_matched(replace(calm, amount_score=4.0))
    burst = replace(calm, new_recipient=True, rate_spike=True)
    assert "new_payee_burst" in rules_matched(burst)
    assert "new_payee_burst" not in rules_matched(replace(burst, rate_spike=False))
    bad, report = check_policy(GOVERNANCE.replace("!= false", "> 1"))
    assert bad is None and "anomaly.rate_spike" in "\n".join(report.lines())


def test_lint_does_not_call_an_anomaly_rule_dead() -> None:
    from paywarden.policy.tooling.lint import lint_policy

    text = POLICY.replace("  auto_halt: {after: 2, within: 1h}\n", "")
    codes = {finding.code for finding in lint_policy(text, compile_policy(text))}
    assert "PW102" not in codes  # the points read no unusual history: not judged


@pytest.mark.parametrize(
    ("section", "message"),
    [
        # 1e-330 is above 0 but 0.0 as a float: a zero-variance history divided by zero
        ("anomaly: {mad_floor: 1e-330}", "anomaly.mad_floor"),
        ("anomaly: {mad_floor: 0.0000001}", "at least"),
        ("anomaly: {flag_above: 1e400}", "anomaly.flag_above"),
        ("rules:\n  - {id: x, effect: deny, anomaly: {amount_score: {gt: 1e400}}}", "finite"),
    ],
)
def test_settings_that_would_make_scores_non_finite_are_compile_errors(
    section: str, message: str
) -> None:
    policy, report = check_policy(f"currency: USD\n{section}\n")
    assert policy is None and message in "\n".join(report.lines())


def test_the_least_mad_floor_keeps_the_most_extreme_score_finite() -> None:
    settings = replace(DEFAULTS, mad_floor=1e-6, min_history=1)
    assert math.isfinite(amount_score(10**15, [1], settings))
    assert math.isfinite(amount_score(1, [10**15], settings))
