"""Run policy test cases through a decider and report results and rule coverage.

The runner never decides anything itself: `decide` is the real engine (the CLI passes one that
runs each case through an in-memory Warden, so budgets, sessions and the clock are the ones a
deployment has). A rule is covered when it matched in at least one case.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from paywarden.errors import PaywardenError
from paywarden.policy.compiler import CompiledPolicy
from paywarden.policy.decision import Decision
from paywarden.policy.tooling.suite import Expectation, TestCase

Status = Literal["pass", "fail", "error"]
Decide = Callable[[TestCase], Decision]


class CaseSetupError(Exception):
    """A case could not be run as written (an invalid intent, a past payment not allowed)."""


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: TestCase
    status: Status
    message: str = ""
    decision: Decision | None = None

    def to_dict(self) -> dict[str, object]:
        decision = self.decision
        return {
            "file": self.case.source,
            "name": self.case.name,
            "line": self.case.mark.line,
            "status": self.status,
            "message": self.message,
            "expected": self.case.expect.to_dict(),
            "actual": None
            if decision is None
            else {
                "outcome": decision.outcome,
                "reason_code": decision.reason_code,
                "rule_ids": list(decision.rule_ids),
                "reason": decision.reason,
            },
        }


@dataclass(frozen=True, slots=True)
class SuiteReport:
    """Every case's result and which rules of the policy no case made match."""

    results: tuple[CaseResult, ...]
    rules: tuple[tuple[str, int], ...]  # (rule id, line) in policy order
    covered: frozenset[str]

    @property
    def uncovered(self) -> list[tuple[str, int]]:
        return [(rule_id, line) for rule_id, line in self.rules if rule_id not in self.covered]

    def count(self, status: Status) -> int:
        return sum(1 for result in self.results if result.status == status)

    @property
    def exit_status(self) -> int:
        """0 every case passed, 1 a case failed, 2 a case could not be run."""
        if self.count("error"):
            return 2
        return 1 if self.count("fail") else 0

    def lines(self, policy_source: str) -> list[str]:
        lines = []
        for result in self.results:
            case = result.case
            if result.status != "pass":
                where = f"{case.source}:{case.mark}"
                lines.append(f"{result.status.upper()} {where} {case.name}: {result.message}")
        total = len(self.results)
        lines.append(
            f"{total - self.count('fail') - self.count('error')}/{total} cases passed, "
            f"{self.count('fail')} failed, {self.count('error')} could not run"
        )
        covered = len(self.rules) - len(self.uncovered)
        lines.append(f"rule coverage: {covered}/{len(self.rules)} rules matched by some case")
        for rule_id, line in self.uncovered:
            lines.append(f"  not covered: {policy_source}:{line} rule `{rule_id}`")
        return lines

    def to_dict(self) -> dict[str, object]:
        return {
            "passed": self.count("pass"),
            "failed": self.count("fail"),
            "errors": self.count("error"),
            "cases": [result.to_dict() for result in self.results],
            "coverage": {
                "rules": len(self.rules),
                "covered": sorted(self.covered),
                "uncovered": [{"rule_id": r, "line": line} for r, line in self.uncovered],
            },
        }


def run_cases(policy: CompiledPolicy, cases: Iterable[TestCase], decide: Decide) -> SuiteReport:
    """Decide every case with `decide` and compare with what it expects."""
    results = []
    covered: set[str] = set()
    for case in cases:
        try:
            decision = decide(case)
        except (CaseSetupError, PaywardenError) as error:
            results.append(CaseResult(case, "error", str(error)))
            continue
        covered.update(rule.rule_id for rule in decision.trace.rules if rule.matched)
        mismatch = compare(case.expect, decision)
        status: Status = "fail" if mismatch else "pass"
        results.append(CaseResult(case, status, mismatch, decision))
    rules = tuple((rule.rule_id, rule.mark.line) for rule in policy.rules)
    return SuiteReport(tuple(results), rules, frozenset(covered))


def compare(expect: Expectation, decision: Decision) -> str:
    """'' when the decision is as expected, else what differs, in one line."""
    differences = []
    if decision.outcome != expect.outcome:
        differences.append(f"outcome {decision.outcome}, expected {expect.outcome}")
    if expect.reason_code is not None and decision.reason_code != expect.reason_code:
        differences.append(f"reason_code {decision.reason_code}, expected {expect.reason_code}")
    if expect.rule_ids is not None and tuple(decision.rule_ids) != expect.rule_ids:
        differences.append(f"rule_ids {list(decision.rule_ids)}, expected {list(expect.rule_ids)}")
    if not differences:
        return ""
    return "; ".join(differences) + f" ({decision.reason})"
