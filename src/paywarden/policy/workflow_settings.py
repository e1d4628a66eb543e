"""The policy's workflow settings: agent session phases, refunds and compensation.

```yaml
sessions:
  payment_phases: [COMMIT]  # phases in which a tracked session may pay (default: COMMIT only)
  required: true            # every payment must come from a tracked session (default: false)
refunds:
  budget_effect: restore    # a refund gives its amount back to the budgets (default: keep)
compensation:
  enabled: true             # transaction scopes compensate failed workflows (default: true)
  default_action: refund    # refund | record_loss (governance: REFUND_REQUEST | RECORD_LOSS)
```
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from paywarden.policy.document import LocMap, Mark
from paywarden.policy.report import CompileReport

PHASES = ("EXPLORE", "DECIDE", "COMMIT")
# The only transitions: EXPLORE -> DECIDE -> COMMIT (the governance article's phase guard).
TRANSITIONS = {"EXPLORE": ("DECIDE",), "DECIDE": ("COMMIT",), "COMMIT": ()}
CompensationAction = Literal["refund", "record_loss"]
_ACTIONS: dict[str, CompensationAction] = {
    "refund": "refund",
    "refund_request": "refund",
    "record_loss": "record_loss",
}


@dataclass(frozen=True, slots=True)
class SessionSettings:
    payment_phases: frozenset[str] = frozenset({"COMMIT"})
    required: bool = False


@dataclass(frozen=True, slots=True)
class RefundSettings:
    restore_budget: bool = False


@dataclass(frozen=True, slots=True)
class CompensationSettings:
    enabled: bool = True
    default_action: CompensationAction = "refund"


def _mapping(
    value: object, name: str, keys: set[str], report: CompileReport, mark: Mark
) -> LocMap | None:
    if value is None:
        return None
    if not isinstance(value, LocMap) or set(value) - keys:
        allowed = ", ".join(f"`{key}`" for key in sorted(keys))
        report.error(f"`{name}` must be a mapping with {allowed}", mark)
        return None
    return value


def _flag(section: LocMap, key: str, default: bool, report: CompileReport) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        report.error(f"`{key}` must be true or false", section.mark_of(key))
        return default
    return value


def compile_sessions(value: object, report: CompileReport, mark: Mark) -> SessionSettings:
    section = _mapping(value, "sessions", {"payment_phases", "required"}, report, mark)
    if section is None:
        return SessionSettings()
    phases = SessionSettings().payment_phases
    if "payment_phases" in section:
        raw = section["payment_phases"]
        names = [raw] if isinstance(raw, str) else raw
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            report.error(
                "`payment_phases` must be a list of phases", section.mark_of("payment_phases")
            )
        else:
            unknown = [n for n in names if n.upper() not in PHASES]
            if unknown:
                report.error(
                    f"unknown phase `{unknown[0]}` (phases: EXPLORE, DECIDE, COMMIT)",
                    section.mark_of("payment_phases"),
                )
            phases = frozenset(n.upper() for n in names)
    return SessionSettings(phases, _flag(section, "required", False, report))


def compile_refunds(value: object, report: CompileReport, mark: Mark) -> RefundSettings:
    section = _mapping(value, "refunds", {"budget_effect"}, report, mark)
    if section is None:
        return RefundSettings()
    effect = section.get("budget_effect", "keep")
    if effect not in ("keep", "restore"):
        report.error(
            "`budget_effect` must be `keep` (a refund does not give budget back) or `restore`",
            section.mark_of("budget_effect"),
        )
        return RefundSettings()
    return RefundSettings(restore_budget=effect == "restore")


def compile_compensation(value: object, report: CompileReport, mark: Mark) -> CompensationSettings:
    section = _mapping(value, "compensation", {"enabled", "default_action"}, report, mark)
    if section is None:
        return CompensationSettings()
    action = section.get("default_action", "refund")
    resolved = _ACTIONS.get(str(action).lower())
    if resolved is None:
        report.error(
            "`default_action` must be `refund` (REFUND_REQUEST) or `record_loss` (RECORD_LOSS)",
            section.mark_of("default_action"),
        )
        resolved = "refund"
    return CompensationSettings(_flag(section, "enabled", True, report), resolved)
