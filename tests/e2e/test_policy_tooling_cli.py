"""`paywarden policy test|lint|diff` on real files, with their documented exit statuses."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paywarden.entrypoints.cli.main import cli
from paywarden.entrypoints.cli.policy_tools_cli import decide_case
from paywarden.policy.compiler import compile_policy
from paywarden.policy.tooling.runner import run_cases
from paywarden.policy.tooling.space import Point, decide
from paywarden.policy.tooling.suite import DEFAULT_NOW, build_intent, load_suite

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "src" / "paywarden" / "examples"
DATA = REPO / "tests" / "data" / "policy_tooling"
BUDGET_POLICY = DATA / "budget_policy.yaml"


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)


# policy test ----------------------------------------------------------------------------------


def test_the_shipped_example_passes_its_own_tests_with_full_coverage() -> None:
    result = _run(
        "policy", "test", EXAMPLES / "fintech_policy.yaml", EXAMPLES / "fintech_policy.tests.yaml"
    )
    assert result.exit_code == 0, result.output
    assert "11/11 cases passed, 0 failed, 0 could not run" in result.output
    assert "rule coverage: 6/6 rules" in result.output


def test_budgets_history_phases_and_the_clock_go_through_the_real_engine() -> None:
    result = _run("policy", "test", "--json", BUDGET_POLICY, DATA / "budget_policy.tests.yaml")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["passed"] == 9 and report["failed"] == 0
    actual = {case["name"]: case["actual"] for case in report["cases"]}
    assert actual["spent-today-counts-against-the-budget"]["reason_code"] == "budget_exceeded"
    assert actual["past-the-restrict-gate-needs-approval"]["reason_code"] == "budget_restricted"
    assert actual["yesterday-does-not-count"]["outcome"] == "allow"
    assert report["coverage"]["uncovered"] == []


def test_failures_exit_1_with_the_file_line_and_the_difference() -> None:
    result = _run("policy", "test", BUDGET_POLICY, DATA / "failing.tests.yaml")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith(f"FAIL {DATA / 'failing.tests.yaml'}:8:5 wrong-outcome: ")
    assert "outcome deny, expected allow" in lines[0]
    assert "rule_ids ['allow-transfers'], expected ['allow-gifts']" in lines[1]
    assert "1/3 cases passed, 2 failed, 0 could not run" in result.output
    assert f"not covered: {BUDGET_POLICY}:10 rule `approve-at-night`" in result.output


def test_a_folder_of_tests_runs_every_yaml_file_in_it(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yml"):
        (tmp_path / name).write_text(
            "defaults: {agent: a, action: payments.gift, recipient: shop.example.com}\n"
            f"cases:\n  - {{name: {name}, amount: 1, expect: {{outcome: allow}}}}\n",
            encoding="utf-8",
        )
    result = _run("policy", "test", "--json", BUDGET_POLICY, tmp_path)
    assert result.exit_code == 0, result.output
    assert [case["name"] for case in json.loads(result.output)["cases"]] == ["a.yaml", "b.yml"]


def test_invalid_files_and_unrunnable_cases_exit_2(tmp_path: Path) -> None:
    malformed = _run("policy", "test", BUDGET_POLICY, DATA / "malformed.tests.yaml")
    assert malformed.exit_code == 2
    assert f"{DATA / 'malformed.tests.yaml'}:7:5: unknown case key `expcet`" in malformed.output
    bad_policy = tmp_path / "bad.yaml"
    bad_policy.write_text("rules: [{id: x, effect: maybe}]\n", encoding="utf-8")
    invalid = _run("policy", "test", bad_policy, DATA / "failing.tests.yaml")
    assert invalid.exit_code == 2
    assert "is not a valid policy" in invalid.output
    missing = _run("policy", "test", BUDGET_POLICY, tmp_path / "nothere.yaml")
    assert missing.exit_code == 2 and "cannot read" in missing.output
    refused = tmp_path / "refused.yaml"
    refused.write_text(
        "defaults: {agent: a, action: payments.transfer, recipient: shop.example.com}\n"
        "cases:\n"
        "  - name: the-past-payment-is-over-the-cap\n"
        "    history: [{amount: 5000, at: '2026-01-07T14:00:00+00:00'}]\n"
        "    amount: 1\n"
        "    expect: {outcome: allow}\n",
        encoding="utf-8",
    )
    unrunnable = _run("policy", "test", BUDGET_POLICY, refused)
    assert unrunnable.exit_code == 2
    assert "ERROR" in unrunnable.output and "past payment at line 4 was not allowed" in (
        unrunnable.output
    )


# policy lint ----------------------------------------------------------------------------------


def test_lint_prints_line_column_and_code_and_fails_only_when_strict() -> None:
    path = DATA / "lint_findings.yaml"
    relaxed = _run("policy", "lint", path)
    assert relaxed.exit_code == 0
    assert f"{path}:11:5: warning PW101 [rule `allow-big-transfers`]: shadowed" in relaxed.output
    assert f"{path}: 15 warnings" in relaxed.output
    strict = _run("policy", "lint", "--strict", path)
    assert strict.exit_code == 1
    clean = _run("policy", "lint", "--strict", DATA / "clean_policy.yaml")
    assert clean.exit_code == 0, clean.output
    assert clean.output.endswith(": 0 warnings\n")


def test_lint_json_lists_each_finding_with_its_code_and_position() -> None:
    result = _run("policy", "lint", "--json", EXAMPLES / "fintech_policy.yaml")
    assert result.exit_code == 0
    findings = json.loads(result.output)["findings"]
    assert [(f["code"], f["line"], f["column"], f["rule_id"]) for f in findings] == [
        ("PW100", 2, 1, None),
        ("PW104", 20, 5, "allow[0]"),
        ("PW103", 22, 5, "allow[1]"),
    ]


def test_lint_of_an_invalid_policy_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [{id: x, effect: maybe}]\n", encoding="utf-8")
    result = _run("policy", "lint", bad)
    assert result.exit_code == 2
    assert "`effect` must be deny, require_approval or allow" in result.output


# policy diff ----------------------------------------------------------------------------------


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_diff_of_the_example_against_itself_exits_0() -> None:
    example = EXAMPLES / "fintech_policy.yaml"
    result = _run("policy", "diff", example, example)
    assert result.exit_code == 0, result.output
    assert "no decision flips" in result.output
    assert result.output.splitlines()[-1].startswith("no new access")


def test_diff_flags_a_widening_with_exit_3_and_a_narrowing_with_exit_0(tmp_path: Path) -> None:
    text = (EXAMPLES / "fintech_policy.yaml").read_text(encoding="utf-8")
    old = _write(tmp_path, "old.yaml", text)
    new = _write(
        tmp_path,
        "new.yaml",
        text.replace("amount_gt: 500.0", "amount_gt: 750.0").replace(
            "amount_lte: 500.0", "amount_lte: 750.0"
        ),
    )
    wider = _run("policy", "diff", old, new)
    assert wider.exit_code == 3, wider.output
    assert "+ require_approval -> allow: payments.transfer 500.01 USD" in wider.output
    assert "+ require_approval -> allow: payments.transfer 750.00 USD" in wider.output
    assert "750.01" not in wider.output
    narrower = _run("policy", "diff", "--json", new, old)
    assert narrower.exit_code == 0
    report = json.loads(narrower.output)
    assert report["widens"] is False and report["exit_status"] == 0
    assert set(report["counts"]) == {"allow -> require_approval"}


def test_diff_reports_cel_as_undecided_with_exit_4(tmp_path: Path) -> None:
    old = _write(
        tmp_path,
        "old.yaml",
        "currency: USD\nrules:\n  - {id: a, effect: allow, when: 'amount_minor < 100'}\n",
    )
    result = _run("policy", "diff", old, old)
    assert result.exit_code == 4
    assert "undecided: rule `a` (line 3) has a CEL `when:` condition" in result.output


def test_diff_compares_sample_intents_and_rejects_bad_input(tmp_path: Path) -> None:
    old = _write(
        tmp_path,
        "old.yaml",
        "currency: USD\nrules:\n  - {id: a, effect: allow, recipients: [a.example.com]}\n",
    )
    new = _write(
        tmp_path,
        "new.yaml",
        "currency: USD\nrules:\n  - {id: a, effect: allow, recipients: ['*.example.com']}\n",
    )
    intents = _write(
        tmp_path,
        "intents.yaml",
        "defaults: {agent: a, action: payments.transfer, amount: 1}\n"
        "cases:\n  - {name: shop, recipient: shop.example.com}\n",
    )
    result = _run("policy", "diff", "--json", "--intents", intents, old, new)
    assert result.exit_code == 3, result.output
    flips = json.loads(result.output)["flips"]
    assert any(flip["sample"] == "shop" and flip["widening"] for flip in flips)
    bad = _write(tmp_path, "bad.yaml", "cases:\n  - {name: x, recipient: r, amount: 1}\n")
    invalid = _run("policy", "diff", "--intents", bad, old, new)
    assert invalid.exit_code == 2
    assert "the intent has no `action`" in invalid.output
    assert _run("policy", "diff", old, tmp_path / "missing.yaml").exit_code == 2


# Property: cases written from what the engine decides pass through `policy test`. -------------


@st.composite
def _policy_and_intents(draw: st.DrawFn) -> tuple[str, list[dict[str, str]]]:
    rules = []
    for index in range(draw(st.integers(1, 4))):
        effect = draw(st.sampled_from(["deny", "require_approval", "allow"]))
        action = draw(st.sampled_from(["payments.transfer", "payments.refund", "payments.*"]))
        cap = draw(st.integers(1, 900))
        op = draw(st.sampled_from(["gt", "lte"]))
        rules.append(
            f"  - {{id: r{index}, effect: {effect}, actions: ['{action}'], "
            f"amount: {{{op}: {cap}}}}}"
        )
    text = "currency: USD\nrules:\n" + "\n".join(rules) + "\n"
    if draw(st.booleans()):
        text += "budgets:\n  - {id: daily, limit: 500, window: day, gates: {restrict: 0.5}}\n"
    intents = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "action": st.sampled_from(["payments.transfer", "payments.refund"]),
                    "amount": st.integers(1, 1000).map(str),
                }
            ),
            min_size=1,
            max_size=4,
        )
    )
    return text, intents


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_policy_and_intents())
def test_cases_generated_from_the_engines_decisions_pass(
    generated: tuple[str, list[dict[str, str]]],
) -> None:
    text, intents = generated
    policy = compile_policy(text)
    lines = ["defaults: {agent: a, recipient: shop.example.com}", "cases:"]
    for index, fields in enumerate(intents):
        intent = build_intent(
            {"agent": "a", "recipient": "shop.example.com", **fields}, policy.currencies, "USD"
        )
        point = Point(intent, None, datetime.fromisoformat(DEFAULT_NOW), ())
        expected = decide(policy, point)
        lines.append(
            f"  - {{name: c{index}, action: {fields['action']}, amount: '{fields['amount']}', "
            f"expect: {{outcome: {expected.outcome}, reason_code: {expected.reason_code}, "
            f"rule_ids: {json.dumps(list(expected.rule_ids))}}}}}"
        )
    cases = load_suite("\n".join(lines) + "\n", "generated.yaml")
    report = run_cases(policy, cases, lambda case: decide_case(text, policy, case))
    assert report.exit_status == 0, report.lines("policy")
