"""The `paywarden` command decides, validates and explains policies with documented exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from paywarden.entrypoints.cli.main import cli
from support.policies import write_policy

REPO = Path(__file__).resolve().parents[2]
FINTECH = REPO / "src" / "paywarden" / "examples" / "fintech_policy.yaml"
GOVERNANCE = REPO / "tests" / "fixtures" / "agent-governance-policy.yaml"
EXECUTABLE = Path(sys.executable).parent / "paywarden"


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)


def _check(*extra: str, policy: Path = FINTECH, amount: str = "120.00") -> Result:
    return _run(
        "check",
        "--policy",
        policy,
        "--agent",
        "treasury-agent",
        "--action",
        "payments.transfer",
        "--amount",
        amount,
        "--currency",
        "USD",
        "--recipient",
        "vendor-corp-123",
        *extra,
    )


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    return write_policy(
        tmp_path,
        "currency: USD\n"
        "rules:\n"
        "  - id: cap\n"
        "    effect: deny\n"
        "    amount: {gt: 500}\n"
        "  - id: transfers\n"
        "    effect: allow\n"
        "    actions: [payments.transfer]\n",
    )


# --- check ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "outcome", "reason_code", "rule_ids"),
    [
        ("120.00", "allow", "allowed", ["allow[0]"]),
        ("500.00", "allow", "allowed", ["allow[0]"]),
        ("500.01", "require_approval", "approval_required", ["require_approval[0]"]),
        ("15000", "deny", "denied_by_rule", ["deny[0]"]),
    ],
)
def test_check_json_prints_the_decision_and_exits_zero_whatever_it_is(
    amount: str, outcome: str, reason_code: str, rule_ids: list[str]
) -> None:
    result = _check("--json", amount=amount)
    assert result.exit_code == 0, result.output
    decision = json.loads(result.stdout)
    assert decision["outcome"] == outcome
    assert decision["reason_code"] == reason_code
    assert decision["rule_ids"] == rule_ids
    assert isinstance(decision["reason"], str) and rule_ids[0] in decision["reason"]
    assert decision["policy_version"].startswith("sha256:")


def test_check_prints_a_readable_decision() -> None:
    result = _check(amount="2500.00")
    assert result.exit_code == 0
    assert "outcome:     require_approval" in result.stdout
    assert "reason_code: approval_required" in result.stdout
    assert "rule_ids:    require_approval[0]" in result.stdout


def test_check_reads_environment_and_phase(policy_file: Path) -> None:
    staging = _check("--environment", "staging", "--json", amount="60.00")
    assert json.loads(staging.stdout)["rule_ids"] == ["deny[1]"]
    commit = _check("--phase", "commit", "--json", policy=GOVERNANCE, amount="0.30")
    explore = _check("--phase", "EXPLORE", "--json", policy=GOVERNANCE, amount="0.30")
    assert json.loads(commit.stdout)["outcome"] == "allow"
    assert json.loads(explore.stdout)["outcome"] == "deny"


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("12.345", "more decimal places than USD allows"),
        ("-5", "must not be negative"),
        ("0", "greater than zero"),
        ("NaN", "not a plain decimal number"),
        ("1e3", "not a plain decimal number"),
        ("１２３", "not a plain decimal number"),
    ],
)
def test_check_rejects_an_invalid_amount_with_exit_code_two(amount: str, message: str) -> None:
    result = _check(amount=amount)
    assert result.exit_code == 2
    assert "invalid intent" in result.stderr and message in result.stderr
    as_json = _check("--json", amount=amount)
    assert as_json.exit_code == 2
    error = json.loads(as_json.stdout)
    assert error["error"] == "invalid_amount"
    assert message in error["message"]


@pytest.mark.parametrize(
    ("option", "value", "code"),
    [
        ("--currency", "XTS", "invalid_currency"),
        ("--recipient", "paypal.com\u200b", "invalid_recipient"),
        ("--recipient", "https://api.example.com:99999/", "invalid_recipient"),
        ("--agent", "bad agent", "invalid_intent"),
    ],
)
def test_check_rejects_other_invalid_fields_with_exit_code_two(
    option: str, value: str, code: str
) -> None:
    args = ["--json", option, value]
    result = _check(*args)
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"] == code


def test_check_with_a_missing_policy_denies_and_says_why(tmp_path: Path) -> None:
    result = _check("--json", policy=tmp_path / "nope.yaml")
    assert result.exit_code == 0
    decision = json.loads(result.stdout)
    assert (decision["outcome"], decision["reason_code"]) == ("deny", "policy_missing")


def test_check_with_an_invalid_policy_denies_everything(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("currency: USD\nrulez: []\n", encoding="utf-8")
    decision = json.loads(_check("--json", policy=broken).stdout)
    assert (decision["outcome"], decision["reason_code"], decision["rule_ids"]) == (
        "deny",
        "policy_invalid",
        [],
    )


# --- policy validate / explain --------------------------------------------------------------


def test_validate_accepts_a_valid_policy_with_exit_zero(policy_file: Path) -> None:
    result = _run("policy", "validate", policy_file)
    assert result.exit_code == 0
    assert f"{policy_file}: valid (2 rules, version sha256:" in result.stdout


def test_validate_reports_warnings_without_failing() -> None:
    result = _run("policy", "validate", FINTECH)
    assert result.exit_code == 0
    assert "warning: no `currency:` declared" in result.stdout


def test_validate_reports_errors_with_line_and_rule_and_exits_one(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "currency: USD\nrules:\n  - id: r1\n    effect: deny\n    amout: {gt: 5}\n",
        encoding="utf-8",
    )
    result = _run("policy", "validate", path)
    assert result.exit_code == 1
    assert f"{path}:5:5: error [rule `r1`]: unknown key `amout`" in result.stdout
    assert "valid (" not in result.stdout


def test_validate_json_lists_problems_with_locations(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("currency: USD\ncurrency: EUR\nrules: []\n", encoding="utf-8")
    result = _run("policy", "validate", path, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False and report["version"] is None
    assert report["problems"] == [
        {
            "severity": "error",
            "message": "duplicate key `currency` (first defined at line 1)",
            "line": 2,
            "column": 1,
            "rule_id": None,
        }
    ]


def test_validate_of_an_unreadable_file_exits_two(tmp_path: Path) -> None:
    result = _run("policy", "validate", tmp_path / "missing.yaml")
    assert result.exit_code == 2
    assert "cannot read" in result.stderr


def test_explain_lists_rules_by_precedence_with_lines_and_conditions() -> None:
    result = _run("policy", "explain", FINTECH)
    assert result.exit_code == 0
    out = result.stdout
    assert "(capfence format)" in out
    assert "time zone UTC, default currency USD" in out
    assert "precedence: any deny wins, then require_approval, then allow" in out
    assert out.index("deny rules:") < out.index("require_approval rules:")
    assert out.index("require_approval rules:") < out.index("\nallow rules:")
    assert "  - deny[0] (line 7): action in [payments.transfer] and amount > 10000.0" in out
    assert "  - allow[1] (line 22): action in [payments.read]" in out


def test_explain_shows_the_governance_import_and_its_budget() -> None:
    result = _run("policy", "explain", GOVERNANCE)
    assert result.exit_code == 0
    assert "(governance format)" in result.stdout
    assert "governance.allow_within_budget" in result.stdout
    assert "budget session: 10.00 USD" in result.stdout


def test_explain_of_an_invalid_policy_exits_one(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("currency: USD\ntimezone: Mars/Base\nrules: []\n", encoding="utf-8")
    result = _run("policy", "explain", path)
    assert result.exit_code == 1
    assert "unknown time zone `Mars/Base`" in result.stdout


# --- demo and the installed executable ------------------------------------------------------


def test_demo_shows_allowed_blocked_and_approval_decisions() -> None:
    result = _run("demo")
    assert result.exit_code == 0
    for mark in ("ALLOWED", "BLOCKED", "APPROVAL"):
        assert mark in result.stdout
    assert "deny[0]" in result.stdout and "require_approval[0]" in result.stdout
    # The approval story: approved once, used once.
    assert "the agent sends the same intent again: ALLOWED [approved]" in result.stdout
    assert "and a third time: APPROVAL [approval_required]" in result.stdout


@pytest.mark.skipif(not EXECUTABLE.exists(), reason="paywarden is not installed in this venv")
def test_installed_executable_decides_and_exits_with_documented_codes(tmp_path: Path) -> None:
    common = [
        str(EXECUTABLE),
        "check",
        "--policy",
        str(FINTECH),
        "--agent",
        "treasury-agent",
        "--action",
        "payments.transfer",
        "--currency",
        "USD",
        "--recipient",
        "vendor-corp-123",
        "--json",
    ]
    ok = subprocess.run(
        [*common, "--amount", "15000.00"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert ok.returncode == 0, ok.stderr
    decision = json.loads(ok.stdout)
    assert (decision["outcome"], decision["reason_code"], decision["rule_ids"]) == (
        "deny",
        "denied_by_rule",
        ["deny[0]"],
    )
    bad = subprocess.run(
        [*common, "--amount", "1.005"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert bad.returncode == 2
    assert json.loads(bad.stdout)["error"] == "invalid_amount"
