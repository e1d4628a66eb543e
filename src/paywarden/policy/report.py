"""CompileReport: every error and warning found while compiling a policy, with locations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from paywarden.policy.document import Mark

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: `severity`, a one-line `message`, where it is, and which rule it concerns."""

    severity: Severity
    message: str
    mark: Mark | None = None
    rule_id: str | None = None

    def format(self, source: str = "policy") -> str:
        where = f"{source}:{self.mark}" if self.mark else source
        rule = f" [rule `{self.rule_id}`]" if self.rule_id else ""
        return f"{where}: {self.severity}{rule}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        return {
            "severity": self.severity,
            "message": self.message,
            "line": self.mark.line if self.mark else None,
            "column": self.mark.column if self.mark else None,
            "rule_id": self.rule_id,
        }


@dataclass(slots=True)
class CompileReport:
    """Findings of one compilation. Errors block loading; warnings never do."""

    source: str = "policy"
    problems: list[Problem] = field(default_factory=list)

    def error(self, message: str, mark: Mark | None = None, rule_id: str | None = None) -> None:
        self.problems.append(Problem("error", message, mark, rule_id))

    def warning(self, message: str, mark: Mark | None = None, rule_id: str | None = None) -> None:
        self.problems.append(Problem("warning", message, mark, rule_id))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        errors = self.errors
        if not errors:
            return f"{self.source}: ok ({len(self.warnings)} warnings)"
        first = errors[0].format(self.source)
        more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
        return first + more

    def lines(self) -> list[str]:
        return [p.format(self.source) for p in self.problems]
