"""The evaluator is pure and fail-closed, and its decisions carry a complete proof trace."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

import pytest

from paywarden.policy import (
    REASON_CODES,
    BudgetTrace,
    Decision,
    StateSnapshot,
    compile_policy,
    evaluate,
)
from paywarden.policy.evaluator import deny_everything
from paywarden.policy.fx import FxTable, ceil_fraction
from support.intents import TREASURY_TRANSFER, intent_builder

NOW = datetime(2026, 1, 7, 15, 0, tzinfo=UTC)

TREASURY = """\
currency: USD
rules:
  - id: deny-above-10000
    effect: deny
    amount: {gt: 10000}
  - id: approve-above-500
    effect: require_approval
    reason: transfers above 500 USD need a human
    amount: {gt: 500}
  - id: allow-transfers
    effect: allow
    actions: [payments.transfer]
"""


_intent = intent_builder("100.00", **TREASURY_TRANSFER)


def _budget(budget_id: str, limit: int, spent: int, held: int, amount: int) -> BudgetTrace:
    return BudgetTrace(budget_id, "USD", limit, spent, held, amount, "ok")


# --- outcome and trace ----------------------------------------------------------------------


def test_approval_decision_names_its_rule_reason_and_policy_version() -> None:
    policy = compile_policy(TREASURY)
    decision = evaluate(policy, _intent("600.00"), now=NOW)
    assert decision.outcome == "require_approval"
    assert decision.reason_code == "approval_required"
    assert decision.rule_ids == ("approve-above-500",)
    assert decision.reason == "transfers above 500 USD need a human"
    assert decision.policy_version == policy.version
    assert not decision.allowed


def test_trace_lists_every_rule_and_whether_it_matched() -> None:
    decision = evaluate(compile_policy(TREASURY), _intent("600.00"), now=NOW)
    assert [(r.rule_id, r.effect, r.matched, r.error) for r in decision.trace.rules] == [
        ("deny-above-10000", "deny", False, None),
        ("approve-above-500", "require_approval", True, None),
        ("allow-transfers", "allow", True, None),
    ]
    assert decision.trace.evaluated_at == NOW


def test_default_reason_describes_the_conditions_of_the_rule() -> None:
    policy = compile_policy(
        "currency: USD\nrules:\n  - id: cap\n    effect: deny\n    amount: {gt: 500}\n"
    )
    decision = evaluate(policy, _intent("500.01"), now=NOW)
    assert decision.reason == "denied by rule `cap` (amount > 500)"


def test_default_deny_reason_names_the_action_amount_and_recipient() -> None:
    decision = evaluate(compile_policy(TREASURY), _intent(action="payments.refund"), now=NOW)
    assert (decision.outcome, decision.reason_code, decision.rule_ids) == (
        "deny",
        "no_rule_matched",
        (),
    )
    assert "`payments.refund` of 100.00 USD to `vendor-corp-123`" in decision.reason


def test_an_empty_policy_denies_by_default() -> None:
    decision = evaluate(compile_policy("currency: USD\nrules: []\n"), _intent(), now=NOW)
    assert (decision.outcome, decision.reason_code) == ("deny", "no_rule_matched")


def test_decision_serialises_outcome_reason_rules_and_trace() -> None:
    data = evaluate(compile_policy(TREASURY), _intent("15000.00"), now=NOW).to_dict()
    assert data["outcome"] == "deny"
    assert data["reason_code"] == "denied_by_rule"
    assert data["rule_ids"] == ["deny-above-10000"]
    trace = data["trace"]
    assert isinstance(trace, dict)
    assert trace["evaluated_at"] == "2026-01-07T15:00:00+00:00"
    assert len(trace["rules"]) == 3


def test_every_reason_code_the_evaluator_uses_is_documented() -> None:
    for code in ("allowed", "approval_required", "denied_by_rule", "no_rule_matched"):
        assert code in REASON_CODES
    assert "rule_error" in REASON_CODES


def test_deny_everything_carries_the_reason_and_no_rules() -> None:
    decision = deny_everything("policy_invalid", "no usable policy", "none", NOW)
    assert (decision.outcome, decision.reason_code, decision.rule_ids) == (
        "deny",
        "policy_invalid",
        (),
    )
    assert decision.trace.rules == ()


# --- rule errors fail closed ----------------------------------------------------------------


def test_amount_rule_in_another_currency_without_fx_is_a_rule_error() -> None:
    decision = evaluate(compile_policy(TREASURY), _intent("1.00", currency="EUR"), now=NOW)
    assert (decision.outcome, decision.reason_code) == ("deny", "rule_error")
    assert decision.rule_ids == ("deny-above-10000", "approve-above-500")
    assert "rule `deny-above-10000` failed to evaluate" in decision.reason
    assert "no fx rate" in decision.reason
    errors = {r.rule_id: r.error for r in decision.trace.rules}
    assert errors["deny-above-10000"] is not None and "EUR" in errors["deny-above-10000"]
    assert errors["allow-transfers"] is None


def test_a_matching_deny_wins_over_a_rule_error() -> None:
    policy = compile_policy(
        "currency: USD\n"
        "rules:\n"
        "  - id: deny-eur\n    effect: deny\n    currencies: [EUR]\n"
        "  - id: cap\n    effect: deny\n    amount: {gt: 500}\n"
    )
    decision = evaluate(policy, _intent("1.00", currency="EUR"), now=NOW)
    assert (decision.reason_code, decision.rule_ids) == ("denied_by_rule", ("deny-eur",))
    assert [r.error is not None for r in decision.trace.rules] == [False, True]


def test_a_rule_error_is_never_an_allow_even_if_only_an_allow_rule_fails() -> None:
    policy = compile_policy(
        "currency: USD\nrules:\n  - id: small\n    effect: allow\n    amount: {lte: 100}\n"
    )
    decision = evaluate(policy, _intent("1", currency="JPY"), now=NOW)
    assert (decision.outcome, decision.reason_code, decision.rule_ids) == (
        "deny",
        "rule_error",
        ("small",),
    )


def test_cel_runtime_error_is_a_rule_error() -> None:
    policy = compile_policy(
        "currency: USD\nrules:\n"
        '  - id: ticket\n    effect: deny\n    when: \'metadata["ticket"] == "x"\'\n'
        "  - id: all\n    effect: allow\n    actions: ['payments.*']\n"
    )
    decision = evaluate(policy, _intent(), now=NOW)
    assert (decision.outcome, decision.reason_code, decision.rule_ids) == (
        "deny",
        "rule_error",
        ("ticket",),
    )
    assert "`when` failed" in decision.reason


# --- fx -------------------------------------------------------------------------------------

FX_POLICY = """\
currency: USD
fx:
  as_of: "2026-01-05"
  rates: {EUR/USD: "1.08"}
rules:
  - id: cap
    effect: deny
    amount: {gt: 500}
  - id: all
    effect: allow
    actions: [payments.transfer]
"""


@pytest.mark.parametrize(
    ("eur", "outcome"),
    [
        ("462.96", "allow"),  # 499.9968 USD
        ("462.97", "deny"),  # 500.0076 USD
        ("0.01", "allow"),
    ],
)
def test_fx_conversion_is_exact_at_the_boundary(eur: str, outcome: str) -> None:
    assert (
        evaluate(compile_policy(FX_POLICY), _intent(eur, currency="EUR"), now=NOW).outcome
        == outcome
    )


def test_fx_table_converts_exactly_through_declared_and_inverse_pairs() -> None:
    table = FxTable("2026-01-05", {("EUR", "USD"): Fraction("1.08"), ("USD", "JPY"): Fraction(150)})
    assert table.convert_minor(10000, "EUR", 2, "USD", 2) == Fraction(10800)
    assert table.convert_minor(100, "USD", 2, "JPY", 0) == Fraction(150)
    assert table.convert_minor(150, "JPY", 0, "USD", 2) == Fraction(100)
    assert table.convert_minor(1, "JPY", 0, "USD", 2) == Fraction(2, 3)
    assert table.convert_minor(1, "GBP", 2, "USD", 2) is None
    assert table.convert_minor(7, "USD", 2, "USD", 2) == 7
    assert table.rate("EUR", "JPY") is None  # no triangulation


def test_converted_charges_round_against_the_budget_holder() -> None:
    assert ceil_fraction(Fraction(2, 3)) == 1
    assert ceil_fraction(Fraction(4, 2)) == 2
    assert ceil_fraction(Fraction(1, 10**9)) == 1
    assert ceil_fraction(Fraction(0)) == 0


# --- budget_ratio over a state snapshot -----------------------------------------------------

RATIO_POLICY = """\
currency: USD
rules:
  - id: halt
    effect: deny
    budget_ratio: {gt: 0.9}
  - id: restrict-daily
    effect: require_approval
    budget_ratio: {gte: 0.75, budget: daily}
  - id: all
    effect: allow
    actions: [payments.transfer]
budgets:
  - {id: daily, limit: 1000, window: day}
"""


@pytest.mark.parametrize(
    ("budgets", "outcome", "rule_ids"),
    [
        ((), "allow", ("all",)),
        ((_budget("daily", 1000, 700, 0, 49),), "allow", ("all",)),
        ((_budget("daily", 1000, 700, 0, 50),), "require_approval", ("restrict-daily",)),
        ((_budget("daily", 1000, 700, 150, 50),), "require_approval", ("restrict-daily",)),
        ((_budget("daily", 1000, 700, 150, 51),), "deny", ("halt",)),
        ((_budget("weekly", 1000, 800, 0, 50),), "allow", ("all",)),
        ((_budget("weekly", 1000, 900, 0, 1),), "deny", ("halt",)),
        ((_budget("daily", 3, 2, 0, 1), _budget("weekly", 10**6, 0, 0, 1)), "deny", ("halt",)),
    ],
)
def test_budget_ratio_counts_spent_held_and_this_amount_exactly(
    budgets: tuple[BudgetTrace, ...], outcome: str, rule_ids: tuple[str, ...]
) -> None:
    decision = evaluate(
        compile_policy(RATIO_POLICY), _intent(), StateSnapshot(budgets=budgets), now=NOW
    )
    assert (decision.outcome, decision.rule_ids) == (outcome, rule_ids)
    assert decision.trace.budgets == budgets


def test_budget_ratio_threshold_is_compared_as_a_fraction_not_a_float() -> None:
    policy = compile_policy(
        "currency: USD\nrules:\n"
        "  - id: r\n    effect: deny\n    budget_ratio: {gt: 0.3}\n"
        "  - id: all\n    effect: allow\n    actions: [payments.transfer]\n"
    )
    at = StateSnapshot(budgets=(_budget("d", 10, 1, 1, 1),))
    # 0.3 + 1e-18 is above 0.3, though as floats the two are the same number.
    above = StateSnapshot(budgets=(_budget("d", 10**18, 3 * 10**17, 0, 1),))
    assert (3 * 10**17 + 1) / 10**18 == 0.3
    assert evaluate(policy, _intent(), at, now=NOW).outcome == "allow"
    assert evaluate(policy, _intent(), above, now=NOW).outcome == "deny"


def test_budget_ratio_is_visible_to_cel_and_phase_is_upper_cased() -> None:
    policy = compile_policy(
        "currency: USD\nsessions:\n  payment_phases: [EXPLORE, COMMIT]\nrules:\n"
        "  - id: r\n    effect: deny\n"
        "    when: 'budgets.daily.remaining_minor < 100 && phase == \"COMMIT\"'\n"
        "  - id: all\n    effect: allow\n    actions: [payments.transfer]\n"
    )
    low = (_budget("daily", 1000, 950, 0, 10),)
    assert evaluate(policy, _intent(), StateSnapshot("commit", low), now=NOW).outcome == "deny"
    assert evaluate(policy, _intent(), StateSnapshot("explore", low), now=NOW).outcome == "allow"
    assert StateSnapshot(phase="commit").phase == "COMMIT"


# --- determinism ----------------------------------------------------------------------------


def test_the_same_inputs_give_equal_decisions() -> None:
    policy = compile_policy(TREASURY)
    decisions: list[Decision] = [evaluate(policy, _intent("600.00"), now=NOW) for _ in range(3)]
    assert decisions[0] == decisions[1] == decisions[2]
    again = evaluate(compile_policy(TREASURY), _intent("600.00"), now=NOW)
    assert again.to_dict() == decisions[0].to_dict()
