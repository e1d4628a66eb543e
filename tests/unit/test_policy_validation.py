"""Policy errors are reported precisely (line, column, rule id); a policy that fails denies all."""

from __future__ import annotations

from pathlib import Path

import pytest

from paywarden import FrozenClock, PolicyCompileError, Warden
from paywarden.policy import CompileReport, check_policy, compile_policy
from paywarden.policy.report import Problem
from paywarden.testing import example_intent
from support.intents import TREASURY_TRANSFER


def _errors(text: str) -> list[Problem]:
    policy, report = check_policy(text, "p.yaml")
    assert policy is None, "the policy should not compile"
    assert report.errors
    return report.errors


def _only_error(text: str) -> Problem:
    [error] = _errors(text)
    return error


def _at(problem: Problem) -> tuple[int, int] | None:
    return (problem.mark.line, problem.mark.column) if problem.mark else None


RULE = "currency: USD\nrules:\n  - id: r1\n    effect: deny\n"


# --- structure ------------------------------------------------------------------------------


def test_reports_an_unknown_top_level_key_at_its_line() -> None:
    error = _only_error("currency: USD\nrulez: []\nrules:\n  - id: a\n    effect: allow\n")
    assert error.message == "unknown top-level key `rulez`"
    assert (_at(error), error.rule_id) == ((2, 1), None)


def test_reports_an_unknown_top_level_key_in_a_capfence_policy() -> None:
    error = _only_error("deny:\n  - capability: payments.transfer\nallowed:\n  - capability: x\n")
    assert error.message == "unknown top-level key `allowed`"
    assert _at(error) == (3, 1)


def test_reports_an_unknown_key_in_a_rule_with_the_rule_id() -> None:
    error = _only_error(RULE + "    amout: {gt: 5}\n")
    assert error.message == "unknown key `amout`"
    assert (_at(error), error.rule_id) == ((5, 5), "r1")


def test_reports_an_unknown_key_in_a_capfence_entry_with_its_generated_id() -> None:
    error = _only_error(
        "currency: USD\ndeny:\n  - capability: payments.transfer\n    amount_gtt: 5\n"
    )
    assert error.message == "unknown key `amount_gtt`"
    assert (_at(error), error.rule_id) == ((4, 5), "deny[0]")


def test_reports_an_unknown_key_in_a_governance_rule() -> None:
    errors = _errors(
        "rules:\n  - id: g1\n    condition: 'cost > 1'\n    action: DENY\n    severity: high\n"
    )
    assert [(e.message, _at(e), e.rule_id) for e in errors] == [
        ("unknown key `severity` in a governance rule", (5, 5), "g1")
    ]


def test_reports_an_unknown_key_inside_an_amount_condition() -> None:
    error = _only_error(RULE + "    amount: {gt: 5, max: 9}\n")
    assert error.message == "unknown key `max` in `amount`"
    assert (_at(error), error.rule_id) == ((5, 21), "r1")


def test_reports_a_duplicate_rule_id_pointing_at_both_definitions() -> None:
    error = _only_error(RULE + "    actions: [a]\n  - id: r1\n    effect: allow\n")
    assert error.message == "duplicate rule id (first defined at line 3)"
    assert (_at(error), error.rule_id) == ((6, 5), "r1")


def test_reports_duplicate_yaml_keys_instead_of_keeping_the_last() -> None:
    error = _only_error("currency: USD\ncurrency: EUR\nrules: []\n")
    assert error.message == "duplicate key `currency` (first defined at line 1)"
    assert _at(error) == (2, 1)


def test_reports_a_duplicate_key_inside_a_rule() -> None:
    error = _only_error(RULE + "    effect: allow\n")
    assert error.message == "duplicate key `effect` (first defined at line 4)"
    assert _at(error) == (5, 5)


@pytest.mark.parametrize("effect", ["permit", "DENY", "block", "[deny]", "null"])
def test_reports_an_effect_that_is_not_deny_require_approval_or_allow(effect: str) -> None:
    error = _only_error(f"currency: USD\nrules:\n  - id: r1\n    effect: {effect}\n")
    assert error.message == "`effect` must be deny, require_approval or allow"
    assert (_at(error), error.rule_id) == ((4, 5), "r1")


def test_reports_a_governance_action_that_is_not_known() -> None:
    error = _only_error("rules:\n  - id: g1\n    condition: 'cost > 1'\n    action: MAYBE\n")
    assert error.message == "`action` must be DENY, PENDING_APPROVAL or ALLOW"
    assert (_at(error), error.rule_id) == ((4, 5), "g1")


def test_reports_an_unsupported_governance_condition() -> None:
    error = _only_error("rules:\n  - id: g1\n    condition: 'cost >> 1'\n    action: DENY\n")
    assert "unsupported condition `cost >> 1`" in error.message
    assert (_at(error), error.rule_id) == ((3, 5), "g1")


@pytest.mark.parametrize("rule_id", ["", "has space", "-leading", "x" * 129])
def test_reports_a_missing_or_malformed_rule_id(rule_id: str) -> None:
    error = _only_error(f"currency: USD\nrules:\n  - id: '{rule_id}'\n    effect: deny\n")
    assert "`rules[0]` needs an `id`" in error.message
    assert _at(error) == (3, 5)


def test_reports_invalid_yaml_at_its_position() -> None:
    error = _only_error("currency: USD\nrules:\n  - id: a\n   effect: allow\n")
    assert error.message.startswith("invalid YAML")
    assert _at(error) == (4, 4)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"])
def test_reports_a_document_that_is_not_a_mapping(text: str) -> None:
    assert "must be a YAML mapping" in _only_error(text).message


def test_reports_yaml_merge_keys_as_errors() -> None:
    error = _only_error("base: &b {effect: allow}\nrules:\n  - <<: *b\n    id: a\n")
    assert error.message == "mapping keys must be plain names"


# --- values ---------------------------------------------------------------------------------


def test_reports_invalid_cel_with_the_rule_id_and_line() -> None:
    error = _only_error(RULE + "    when: 'amount_minor >'\n")
    assert error.message.startswith("`when` is not valid CEL")
    assert (_at(error), error.rule_id) == ((5, 5), "r1")


def test_reports_an_unknown_cel_variable_by_name() -> None:
    error = _only_error(RULE + "    when: 'amont_minor > 5'\n")
    assert error.message == "`when` uses unknown variable `amont_minor`"
    assert (_at(error), error.rule_id) == ((5, 5), "r1")


def test_reports_an_unknown_time_zone() -> None:
    error = _only_error(
        "currency: USD\ntimezone: America/New_Yrok\nrules:\n  - id: a\n    effect: allow\n"
    )
    assert error.message == "unknown time zone `America/New_Yrok`"
    assert _at(error) == (2, 1)


@pytest.mark.parametrize("code", ["XTS", "XAU", "ABC", "UЅD"])
def test_reports_a_bad_policy_currency(code: str) -> None:
    error = _only_error(f"currency: {code}\nrules:\n  - id: a\n    effect: allow\n")
    assert code in error.message
    assert _at(error) == (1, 1)


def test_reports_a_bad_currency_in_an_amount_condition_at_its_column() -> None:
    error = _only_error(RULE + "    amount: {gt: 5, currency: XXX}\n")
    assert error.message == "unknown currency `XXX`"
    assert (_at(error), error.rule_id) == ((5, 21), "r1")


@pytest.mark.parametrize(
    ("condition", "currency", "message", "column"),
    [
        ("amount: {gt: 500.001}", "USD", "`500.001` has more decimal places than USD", 14),
        ("amount_gt: 1.5", "JPY", "`1.5` has more decimal places than JPY", 5),
        ("amount: {lte: '0.0001', currency: KWD}", "USD", "more decimal places than KWD", 14),
        ("amount: {gt: 0.0000001, currency: USDC}", "USD", "more decimal places than USDC", 14),
    ],
)
def test_reports_too_many_decimals_in_a_threshold(
    condition: str, currency: str, message: str, column: int
) -> None:
    error = _only_error(
        f"currency: {currency}\nrules:\n  - id: r1\n    effect: deny\n    {condition}\n"
    )
    assert message in error.message
    assert (_at(error), error.rule_id) == ((5, column), "r1")


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("amount: {gt: -5}", "must not be negative"),
        ("amount: {gt: true}", "boolean"),
        ("amount: {gt: .nan}", "invalid number `.nan`"),
        ("amount: {gt: 'NaN'}", "not a plain decimal number"),
        ("amount: {gt: 1_000.5.5}", "not a plain decimal number"),
        ("amount_gt: 017", "integer `017` must be plain decimal digits"),
        ("amount: 500", "`amount` must be a mapping"),
        ("amount: {currency: USD}", "`amount` needs at least one of gt, gte, lt, lte"),
        ("budget_ratio: {budget: daily}", "`budget_ratio` needs at least one of"),
        ("budget_ratio: {gt: -0.5}", "`budget_ratio.gt` must be a non-negative number"),
        ("during: {hours: '9-17'}", "`hours` must look like `09:00-17:00`"),
        ("during: {hours: '09:00-24:30'}", "`hours` cannot end after 24:00"),
        ("during: {hours: '09:00-09:00'}", "`hours` is an empty window"),
        ("during: {days: [funday]}", "`funday` is not a day"),
        ("during: {days: []}", "`days` needs at least one day"),
        ("outside: {weeks: [1]}", "`outside` must be a mapping with `days` and/or `hours`"),
        ("recipients: []", "`recipients` needs 1 to"),
        ("actions: [payments.transfer, 7]", "`actions` must be a non-empty string"),
        ("recipients: ['pay\u200bpal.com']", "invisible or control character U+200B"),
        ("currencies: [XTS]", "unknown currency `XTS`"),
        ("when: ''", "`when` must be a CEL expression string"),
    ],
)
def test_reports_a_malformed_condition_with_its_rule(condition: str, message: str) -> None:
    errors = _errors(RULE + f"    {condition}\n")
    assert any(message in e.message for e in errors), [e.message for e in errors]
    assert all(e.mark is not None and e.mark.line == 5 for e in errors)


def test_reports_every_error_in_one_pass() -> None:
    errors = _errors(
        "currency: USD\n"
        "timezone: Mars/Olympus\n"
        "rules:\n"
        "  - id: a\n"
        "    effect: deny\n"
        "    amount: {gt: 1.001}\n"
        "  - id: b\n"
        "    effect: allowed\n"
        "  - id: c\n"
        "    effect: allow\n"
        "    when: 'nope > 1'\n"
    )
    assert [(_at(e)[0] if _at(e) else None, e.rule_id) for e in errors] == [
        (2, None),
        (6, "a"),
        (8, "b"),
        (11, "c"),
    ]


def test_fx_rates_must_be_dated_positive_and_between_known_currencies() -> None:
    errors = _errors(
        "currency: USD\n"
        "fx:\n"
        "  rates:\n"
        "    EUR/USD: 0\n"
        "    XTS/USD: '1.1'\n"
        "    GBP/USD: -1.2\n"
        "    CHF/USD: abc\n"
        "rules:\n  - id: a\n    effect: allow\n"
    )
    messages = [e.message for e in errors]
    assert messages[0] == "`fx.as_of` is required: rates must declare their date"
    assert "fx rate for `EUR/USD` must be a positive number" in messages
    assert any("fx pair `XTS/USD`" in m for m in messages)
    assert "fx rate for `GBP/USD` must be a positive number" in messages
    assert "fx rate for `CHF/USD` must be a positive number" in messages


# --- warnings -------------------------------------------------------------------------------


def test_warnings_never_block_loading() -> None:
    policy, report = check_policy("rules:\n  - id: a\n    effect: allow\n")
    assert policy is not None
    assert report.ok and not report.errors
    messages = [w.message for w in report.warnings]
    assert "no `currency:` declared; amounts without a currency are read as USD" in messages
    assert "rule has no conditions and matches every intent" in messages
    assert policy.currency == "USD"


def test_warns_when_no_rule_can_allow() -> None:
    policy, report = check_policy("currency: USD\nrules:\n  - id: a\n    effect: deny\n")
    assert policy is not None
    assert any("can never allow" in w.message for w in report.warnings)


def test_compile_policy_raises_with_the_full_report() -> None:
    with pytest.raises(PolicyCompileError, match=r"p\.yaml:2:1: error: unknown top-level") as exc:
        compile_policy("currency: USD\nrulez: []\n", "p.yaml")
    assert isinstance(exc.value.report, CompileReport)
    assert exc.value.code == "policy_invalid"


def test_problem_formats_and_serialises_its_location() -> None:
    error = _only_error(RULE + "    amout: {gt: 5}\n")
    assert error.format("p.yaml") == "p.yaml:5:5: error [rule `r1`]: unknown key `amout`"
    assert error.to_dict() == {
        "severity": "error",
        "message": "unknown key `amout`",
        "line": 5,
        "column": 5,
        "rule_id": "r1",
    }


def test_policy_version_ignores_comments_and_layout_but_not_content() -> None:
    base = compile_policy("currency: USD\nrules:\n  - {id: a, effect: deny, amount_gt: 500}\n")
    laid_out = compile_policy(
        "# treasury\ncurrency: USD\nrules:\n  - id: a   # the limit\n"
        "    effect: deny\n    amount_gt: 500\n"
    )
    changed = compile_policy("currency: USD\nrules:\n  - {id: a, effect: deny, amount_gt: 501}\n")
    assert base.version == laid_out.version
    assert base.version != changed.version
    assert base.version.startswith("sha256:")


def test_rejects_a_policy_larger_than_the_limit() -> None:
    text = "currency: USD\n" + "# padding\n" * 120_000
    assert "larger than" in _only_error(text).message


# --- a policy that cannot be used denies everything -----------------------------------------

ALLOWED_ANYWHERE = example_intent("1.00", **TREASURY_TRANSFER)


def _decide(policy: str | Path | None) -> tuple[str, str, tuple[str, ...]]:
    with Warden.open(policy, clock=FrozenClock()) as warden:
        assert warden.policy is None
        decision = warden.authorize(ALLOWED_ANYWHERE)
    return decision.outcome, decision.reason_code, decision.rule_ids


def test_denies_everything_when_no_policy_is_given() -> None:
    assert _decide(None) == ("deny", "policy_missing", ())


def test_denies_everything_when_the_policy_file_is_missing(tmp_path: Path) -> None:
    assert _decide(tmp_path / "missing.yaml") == ("deny", "policy_missing", ())
    assert _decide(str(tmp_path / "missing.yaml")) == ("deny", "policy_missing", ())


@pytest.mark.parametrize("content", ["", "   \n\n", "\n"])
def test_denies_everything_when_the_policy_file_is_empty(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text(content, encoding="utf-8")
    assert _decide(path) == ("deny", "policy_missing", ())


@pytest.mark.parametrize(
    "text",
    [
        "currency: USD\nrules:\n  - id: a\n   effect: allow\n",  # bad YAML
        "currency: USD\nrules:\n  - id: a\n    effect: allow\n    amout: {gt: 5}\n",
        "currency: XTS\nrules:\n  - id: a\n    effect: allow\n",
        "- just\n- a list\n",
        "# only a comment\n",
    ],
)
def test_denies_everything_when_the_policy_is_invalid(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    assert _decide(path) == ("deny", "policy_invalid", ())
    assert _decide(text) == ("deny", "policy_invalid", ())


def test_a_policy_with_only_warnings_decides_normally() -> None:
    with Warden.open("rules:\n  - id: a\n    effect: allow\n", clock=FrozenClock()) as warden:
        assert warden.policy is not None
        assert warden.authorize(ALLOWED_ANYWHERE).outcome == "allow"
