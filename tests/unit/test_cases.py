"""Every scenario table in tests/cases decides as written: outcome, reason code and rule ids."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from paywarden.intent import PaymentIntent
from paywarden.policy import REASON_CODES, BudgetTrace, CompiledPolicy, StateSnapshot, evaluate
from paywarden.policy.compiler import check_policy

TESTS_DIR = Path(__file__).resolve().parents[1]
CASES_DIR = TESTS_DIR / "cases"

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
CASE_KEYS = INTENT_FIELDS | {"name", "phase", "now", "budgets", "expect"}
FILE_KEYS = frozenset({"description", "policy", "policy_file", "defaults", "cases"})
EXPECT_KEYS = frozenset({"outcome", "reason_code", "rule_ids"})
DEFAULT_NOW = "2026-01-07T15:00:00+00:00"  # a Wednesday, 10:00 in New York


@dataclass(frozen=True)
class Case:
    file: Path
    name: str
    fields: dict[str, Any]

    @property
    def expect(self) -> dict[str, Any]:
        expect: dict[str, Any] = self.fields["expect"]
        return expect


def _read_table(path: Path) -> dict[str, Any]:
    table = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(table, dict), f"{path.name}: a case table is a mapping"
    unknown = set(table) - FILE_KEYS
    assert not unknown, f"{path.name}: unknown keys {sorted(unknown)}"
    assert ("policy" in table) != ("policy_file" in table), f"{path.name}: one policy source"
    return table


def _policy_text(path: Path) -> str:
    table = _read_table(path)
    if "policy_file" in table:
        return (TESTS_DIR / table["policy_file"]).read_text(encoding="utf-8")
    text: str = table["policy"]
    return text


def _load_cases() -> list[Any]:
    params = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        table = _read_table(path)
        defaults = table.get("defaults") or {}
        for index, raw in enumerate(table["cases"]):
            fields = {**defaults, **raw}
            name = str(fields.get("name", f"case-{index}"))
            case = Case(path, name, fields)
            params.append(pytest.param(case, id=f"{path.stem}/{name}"))
    return params


CASES = _load_cases()


@functools.cache
def _compiled(path: Path) -> CompiledPolicy:
    policy, report = check_policy(_policy_text(path), path.name)
    assert policy is not None, "\n".join(report.lines())
    return policy


def _intent(fields: dict[str, Any]) -> PaymentIntent:
    amount = fields["amount"]
    # YAML would read 500.00 as a float; case tables write amounts as text or integers.
    assert isinstance(amount, str | int) and not isinstance(amount, bool), amount
    return PaymentIntent(**{k: v for k, v in fields.items() if k in INTENT_FIELDS})


def _state(fields: dict[str, Any]) -> StateSnapshot:
    budgets = tuple(
        BudgetTrace(
            budget_id=b["id"],
            currency=b.get("currency", "USD"),
            limit_minor=b["limit_minor"],
            spent_minor=b.get("spent_minor", 0),
            held_minor=b.get("held_minor", 0),
            amount_minor=b["amount_minor"],
            gate=b.get("gate", "ok"),
        )
        for b in fields.get("budgets", [])
    )
    return StateSnapshot(phase=fields.get("phase"), budgets=budgets)


@pytest.mark.parametrize("case", CASES)
def test_case_decides_as_expected(case: Case) -> None:
    unknown = set(case.fields) - CASE_KEYS
    assert not unknown, f"unknown case keys {sorted(unknown)}"
    assert set(case.expect) == EXPECT_KEYS, "expect needs outcome, reason_code and rule_ids"
    policy = _compiled(case.file)
    now = datetime.fromisoformat(case.fields.get("now", DEFAULT_NOW))

    decision = evaluate(policy, _intent(case.fields), _state(case.fields), now)

    assert {
        "outcome": decision.outcome,
        "reason_code": decision.reason_code,
        "rule_ids": list(decision.rule_ids),
    } == case.expect, decision.reason
    traced = {rule.rule_id: rule for rule in decision.trace.rules}
    for rule_id in decision.rule_ids:
        rule = traced[rule_id]
        if decision.reason_code == "rule_error":
            assert rule.error, f"`{rule_id}` is named as failed but its trace has no error"
        else:
            assert rule.matched and rule.effect == decision.outcome


def test_case_tables_are_well_formed() -> None:
    files = sorted(CASES_DIR.glob("*.yaml"))
    assert len(files) >= 8
    for path in files:
        table = _read_table(path)
        names = [case.get("name") for case in table["cases"]]
        assert all(names), f"{path.name}: every case needs a name"
        assert len(names) == len(set(names)), f"{path.name}: case names must be unique"


def test_case_tables_cover_every_outcome_and_the_policy_reason_codes() -> None:
    outcomes = {case.values[0].expect["outcome"] for case in CASES}
    codes = {case.values[0].expect["reason_code"] for case in CASES}
    assert outcomes == {"allow", "deny", "require_approval"}
    assert codes <= set(REASON_CODES)
    assert {
        "allowed",
        "approval_required",
        "denied_by_rule",
        "no_rule_matched",
        "rule_error",
    } <= codes
