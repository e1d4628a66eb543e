"""`policy lint`: each finding where the policy has it, with its code, and none elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from paywarden.policy.compiler import compile_policy
from paywarden.policy.tooling.lint import CODES, Finding, lint_policy

DATA = Path(__file__).resolve().parents[1] / "data" / "policy_tooling"


def _lint(text: str) -> list[Finding]:
    return lint_policy(text, compile_policy(text))


def _found(text: str) -> set[tuple[str, int, str | None]]:
    return {
        (f.code, f.problem.mark.line if f.problem.mark else 0, f.problem.rule_id)
        for f in _lint(text)
    }


def test_every_code_is_found_where_the_policy_has_it() -> None:
    found = _found((DATA / "lint_findings.yaml").read_text(encoding="utf-8"))
    assert {
        ("PW103", 8, "allow-all-transfers"),
        ("PW104", 11, "allow-big-transfers"),
        ("PW101", 11, "allow-big-transfers"),
        ("PW102", 15, "impossible"),
        ("PW102", 19, "eur-cap"),
        ("PW107", 22, "eur-cap"),
        ("PW102", 27, "never-at-all"),
        ("PW108", 29, "never-at-all"),
        ("PW106", 32, "cel-fails"),
        ("PW105", 34, None),
        ("PW107", 34, None),
    } <= found
    assert {code for code, _, _ in found} == set(CODES) - {"PW100"}


def test_a_clean_policy_has_no_findings() -> None:
    assert _lint((DATA / "clean_policy.yaml").read_text(encoding="utf-8")) == []


BASE = "currency: USD\nrules:\n"


@pytest.mark.parametrize(
    ("rules", "code"),
    [
        # An allow under a deny that covers it entirely (different action spellings, one set).
        (
            "  - {id: d, effect: deny, actions: [payments.transfer, payments.payout]}\n"
            "  - {id: a, effect: allow, actions: [payments.payout], amount: {lte: 5}}\n",
            "PW101",
        ),
        # Same effect: the second approval adds nothing to the first.
        (
            "  - {id: r1, effect: require_approval, amount: {gt: 100}}\n"
            "  - {id: r2, effect: require_approval, amount: {gt: 200}}\n"
            "  - {id: a, effect: allow, amount: {lte: 1000}}\n",
            "PW101",
        ),
        ("  - {id: a, effect: allow, amount: {gte: 10, lt: 10}}\n", "PW102"),
        (
            "  - {id: a, effect: allow, actions: [payments.x], actions_not: [payments.x]}\n",
            "PW102",
        ),
        ("  - {id: a, effect: allow, agents: [bot]}\n", "PW103"),
        (
            "  - {id: d, effect: deny, environments: [staging], amount: {gt: 50}}\n"
            "  - {id: a, effect: allow, amount: {lte: 500}}\n",
            "PW104",
        ),
        (
            "  - {id: a, effect: allow, amount: {lte: 5}, "
            "outside: {days: [mon-sun], hours: '00:00-24:00'}}\n",
            "PW108",
        ),
    ],
)
def test_each_finding_alone(rules: str, code: str) -> None:
    codes = [f.code for f in _lint(BASE + rules)]
    assert code in codes, codes


def test_a_narrowing_deny_that_only_adds_a_restriction_is_not_an_overlap() -> None:
    codes = [
        f.code
        for f in _lint(
            BASE + "  - {id: d, effect: deny, actions: [payments.x], during: {days: [sun]}}\n"
            "  - {id: a, effect: allow, actions: [payments.x], amount: {lte: 5}}\n"
        )
    ]
    assert codes == []


def test_rules_with_cel_are_not_called_unreachable_on_samples() -> None:
    text = BASE + "  - {id: a, effect: allow, amount: {lte: 5}, when: 'metadata.size() > 3'}\n"
    assert [f.code for f in _lint(text)] == []


def test_findings_format_as_path_line_column_code_rule() -> None:
    finding = _lint(BASE + "  - {id: a, effect: allow, agents: [bot]}\n")[0]
    assert finding.format("p.yaml").startswith("p.yaml:3:5: warning PW103 [rule `a`]: allow rule")
    assert finding.to_dict()["code"] == "PW103"
    assert finding.to_dict()["line"] == 3
