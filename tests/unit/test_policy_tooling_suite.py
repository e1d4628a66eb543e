"""Policy test files: parsed with line:column errors, compared exactly, coverage counted."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from paywarden.policy import evaluate
from paywarden.policy.compiler import compile_policy
from paywarden.policy.tooling.runner import CaseSetupError, compare, run_cases
from paywarden.policy.tooling.suite import (
    Expectation,
    SuiteError,
    TestCase,
    build_intent,
    load_suite,
)

POLICY = compile_policy(
    "currency: USD\n"
    "rules:\n"
    "  - {id: deny-big, effect: deny, amount: {gt: 1000}}\n"
    "  - {id: allow-transfers, effect: allow, actions: [payments.transfer]}\n"
    "  - {id: allow-reads, effect: allow, actions: [payments.read]}\n"
)
SUITE = """\
defaults:
  agent: a
  action: payments.transfer
  recipient: vendor.example.com
cases:
  - name: small
    amount: 10.50
    expect: {outcome: allow, reason_code: allowed, rule_ids: [allow-transfers]}
  - name: big
    amount: "1000.01"
    now: "2026-03-01T12:00:00+01:00"
    expect: {outcome: deny}
"""


def _pure(case: TestCase):  # type: ignore[no-untyped-def]
    return evaluate(
        POLICY, build_intent(case.fields, POLICY.currencies, POLICY.currency), now=case.now
    )


def test_a_suite_reads_defaults_exact_amounts_and_instants() -> None:
    small, big = load_suite(SUITE, "t.yaml")
    assert small.fields["amount"] == "10.50"  # the exact text, never a float
    assert small.fields["agent"] == "a"
    assert small.expect == Expectation("allow", "allowed", ("allow-transfers",))
    assert big.now == datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
    assert big.expect == Expectation("deny")
    assert (small.mark.line, big.mark.line) == (6, 9)


@pytest.mark.parametrize(
    ("text", "message", "where"),
    [
        ("cases: []\n", "`cases` must be a non-empty list", "t.yaml:1:1"),
        ("cases:\n  - {name: x, expcet: {}}\n", "unknown case key `expcet`", "t.yaml:2:15"),
        ("cases:\n  - {expect: {outcome: allow}}\n", "every case needs a `name`", "t.yaml:2:5"),
        (
            "cases:\n  - {name: x, expect: {outcome: maybe}}\n",
            "`expect.outcome` must be one of",
            "t.yaml:2:24",
        ),
        (
            "cases:\n  - {name: x, now: '2026-01-01T00:00', expect: {outcome: allow}}\n",
            "needs a UTC offset",
            "t.yaml:2:15",
        ),
        (
            "cases:\n  - {name: x, expect: {outcome: allow}}\n"
            "  - {name: x, expect: {outcome: deny}}\n",
            "duplicate case name `x` (line 2)",
            "t.yaml:3:5",
        ),
        ("cases:\n  - {name: x, phase: LATER, expect: {outcome: allow}}\n", "`phase`", "t.yaml:2:"),
        ("cases:\n  - {name: x, history: [{amount: 1}], expect: {outcome: allow}}\n", "`at`", ""),
        ("cases: [\n", "invalid YAML", "t.yaml:2:1"),
    ],
)
def test_a_malformed_suite_names_the_line_and_column(text: str, message: str, where: str) -> None:
    with pytest.raises(SuiteError) as caught:
        load_suite(text, "t.yaml")
    assert message in str(caught.value)
    assert str(caught.value).startswith(where)


def test_the_runner_passes_fails_and_counts_coverage_with_the_real_evaluator() -> None:
    cases = load_suite(SUITE, "t.yaml")
    report = run_cases(POLICY, cases, _pure)
    assert [r.status for r in report.results] == ["pass", "pass"]
    assert report.covered == {"allow-transfers", "deny-big"}
    assert report.uncovered == [("allow-reads", 5)]
    assert report.exit_status == 0
    wrong = load_suite(SUITE.replace("{outcome: deny}", "{outcome: allow}"), "t.yaml")
    failed = run_cases(POLICY, wrong, _pure)
    assert failed.exit_status == 1
    assert failed.results[1].message.startswith("outcome deny, expected allow")
    assert failed.to_dict()["failed"] == 1


def test_a_case_that_cannot_run_is_an_error_not_a_pass() -> None:
    cases = load_suite(SUITE.replace("agent: a", "agent: 'not an id'"), "t.yaml")
    report = run_cases(POLICY, cases, _pure)
    assert {r.status for r in report.results} == {"error"}
    assert report.exit_status == 2

    def refuse(case: TestCase):  # type: ignore[no-untyped-def]
        raise CaseSetupError("past payment not allowed")

    assert run_cases(POLICY, cases[:1], refuse).results[0].message == "past payment not allowed"


def test_compare_checks_only_what_the_case_names() -> None:
    decision = _pure(load_suite(SUITE, "t.yaml")[0])
    assert compare(Expectation("allow"), decision) == ""
    assert compare(Expectation("allow", "allowed", ()), decision).startswith("rule_ids")
    assert "reason_code allowed, expected denied_by_rule" in compare(
        Expectation("allow", "denied_by_rule"), decision
    )
