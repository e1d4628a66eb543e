"""`policy diff`: which decisions flip between two policies, and does the new one widen access?

Both policies are evaluated, by the real evaluator and the ledger's budget gates, on one
intent per cell of the partition their structured conditions define together (`space`): each
amount threshold and the unit either side of it (through each policy's FX rates), each listed
value and "anything else", each run of the week between window edges, each budget gate. Within
a cell both policies answer alike, so a widening on structured conditions is found if it
exists ("no new access" is sound for them). What the partition cannot capture is reported as
undecided: CEL conditions, overlapping glob patterns, budgets or velocity limits whose window,
scope or filters changed, a partition too large to enumerate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from paywarden.policy.budgets import BudgetSpec, VelocitySpec
from paywarden.policy.compiler import CompiledPolicy
from paywarden.policy.decision import Decision
from paywarden.policy.recipients import PatternSet
from paywarden.policy.tooling.shapes import rule_shapes
from paywarden.policy.tooling.space import Point, build_space, decide

EXIT_SAME = 0
EXIT_WIDENING = 3
EXIT_UNDECIDED = 4
_RANK = {"deny": 0, "require_approval": 1, "allow": 2}


@dataclass(frozen=True, slots=True)
class Flip:
    """One intent whose outcome differs; `sample` names it when it came from --intents."""

    point: Point
    old: Decision
    new: Decision
    sample: str | None = None

    @property
    def widening(self) -> bool:
        return _RANK[self.new.outcome] > _RANK[self.old.outcome]

    @property
    def kind(self) -> str:
        return f"{self.old.outcome} -> {self.new.outcome}"

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "widening": self.widening,
            "sample": self.sample,
            "intent": self.point.describe(),
            "old": _decision(self.old),
            "new": _decision(self.new),
        }


def _similar(flips: Sequence[Flip]) -> list[tuple[Flip, int]]:
    """Flips grouped when they differ only in the phase, the instant or an optional field and
    both decisions are the same: the first of each group, and how many more it has."""
    groups: dict[tuple[object, ...], list[Flip]] = {}
    for flip in flips:
        intent = flip.point.intent
        key = (
            flip.sample,
            flip.kind,
            intent.action,
            intent.amount,
            intent.agent,
            intent.recipient,
            flip.old.reason_code,
            flip.old.rule_ids,
            flip.new.reason_code,
            flip.new.rule_ids,
        )
        groups.setdefault(key, []).append(flip)
    return [(group[0], len(group) - 1) for group in groups.values()]


def _decision(decision: Decision) -> dict[str, object]:
    return {
        "outcome": decision.outcome,
        "reason_code": decision.reason_code,
        "rule_ids": list(decision.rule_ids),
    }


@dataclass(slots=True)
class DiffReport:
    cells: int
    flips: list[Flip] = field(default_factory=list)
    widenings: list[str] = field(default_factory=list)  # found without a flip (velocity)
    undecided: list[str] = field(default_factory=list)

    @property
    def widens(self) -> bool:
        return bool(self.widenings) or any(flip.widening for flip in self.flips)

    @property
    def exit_status(self) -> int:
        """3 when the new policy allows something the old did not, else 4 when part of the
        comparison is undecided, else 0."""
        if self.widens:
            return EXIT_WIDENING
        return EXIT_UNDECIDED if self.undecided else EXIT_SAME

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(flip.kind for flip in self.flips).items()))

    def verdict(self) -> str:
        if self.widens:
            return "WIDENING: the new policy allows intents the old one did not"
        if self.undecided:
            return "UNDECIDED: no widening found, but part of the input space was not decided"
        return "no new access: the new policy allows nothing the old one did not"

    def lines(self, shown_max: int = 50) -> list[str]:
        lines = [f"compared {self.cells} cells of the input space"]
        for kind, count in self.counts().items():
            lines.append(f"  {kind}: {count}")
        if not self.flips:
            lines.append("no decision flips")
        groups = _similar(self.flips)
        for flip, similar in groups[:shown_max]:
            mark = "+" if flip.widening else "-"
            origin = f" [{flip.sample}]" if flip.sample else ""
            more = f" (and {similar} similar cells)" if similar else ""
            lines.append(
                f"{mark} {flip.kind}{origin}: {flip.point.describe()} "
                f"(old {flip.old.reason_code} {list(flip.old.rule_ids)}, "
                f"new {flip.new.reason_code} {list(flip.new.rule_ids)}){more}"
            )
        if len(groups) > shown_max:
            lines.append(f"... and {len(groups) - shown_max} more (--json lists every flip)")
        lines.extend(f"widening: {item}" for item in self.widenings)
        lines.extend(f"undecided: {item}" for item in self.undecided)
        lines.append(self.verdict())
        return lines

    def to_dict(self) -> dict[str, object]:
        return {
            "cells": self.cells,
            "counts": self.counts(),
            "flips": [flip.to_dict() for flip in self.flips],
            "widenings": self.widenings,
            "undecided": self.undecided,
            "widens": self.widens,
            "verdict": self.verdict(),
            "exit_status": self.exit_status,
        }


def diff_policies(
    old_text: str,
    old: CompiledPolicy,
    new_text: str,
    new: CompiledPolicy,
    samples: Sequence[tuple[str, Point]] = (),
) -> DiffReport:
    """Compare `old` and `new` on every cell of their joint partition, then on `samples`."""
    space = build_space([(old, rule_shapes(old_text, old)), (new, rule_shapes(new_text, new))])
    report = DiffReport(len(space.points), undecided=list(space.undecided))
    for point in space.points:
        before, after = decide(old, point), decide(new, point)
        if before.outcome != after.outcome:
            report.flips.append(Flip(point, before, after))
    for name, point in samples:
        before, after = decide(old, point), decide(new, point)
        if before.outcome != after.outcome:
            report.flips.append(Flip(point, before, after, name))
    report.undecided.extend(_budget_changes(old.budgets, new.budgets))
    widenings, undecided = _velocity_changes(old.velocity, new.velocity)
    report.widenings.extend(widenings)
    report.undecided.extend(undecided)
    return report


def _patterns(patterns: PatternSet | None) -> object:
    if patterns is None:
        return None
    return (patterns.exact, patterns.regex.pattern if patterns.regex else None)


def _budget_changes(old: Sequence[BudgetSpec], new: Sequence[BudgetSpec]) -> list[str]:
    """Budgets kept under one id but counted differently cannot share one ledger state."""
    found = []
    after = {budget.budget_id: budget for budget in new}
    for budget in old:
        other = after.get(budget.budget_id)
        if other is None:
            continue  # a removed budget shows as flips: the partition has its gates
        changed = [
            name
            for name, before, now in (
                ("window", budget.window, other.window),
                ("scope", budget.scope, other.scope),
                ("currency", budget.limit.currency, other.limit.currency),
                ("agents", _patterns(budget.agents), _patterns(other.agents)),
                ("actions", _patterns(budget.actions), _patterns(other.actions)),
            )
            if before != now
        ]
        if changed:
            found.append(
                f"budget `{budget.budget_id}` changed its {', '.join(changed)}: what it has "
                "counted so far is not comparable"
            )
    return found


def _velocity_changes(
    old: Sequence[VelocitySpec], new: Sequence[VelocitySpec]
) -> tuple[list[str], list[str]]:
    widenings, undecided = [], []
    after = {limit.velocity_id: limit for limit in new}
    for limit in old:
        other = after.get(limit.velocity_id)
        if other is None:
            widenings.append(f"velocity limit `{limit.velocity_id}` removed")
            continue
        if (limit.scope, _patterns(limit.agents), _patterns(limit.actions)) != (
            other.scope,
            _patterns(other.agents),
            _patterns(other.actions),
        ):
            undecided.append(f"velocity limit `{limit.velocity_id}` changed its scope or filters")
            continue
        looser = []
        if limit.max_count is not None and (
            other.max_count is None
            or other.max_count > limit.max_count
            or other.window_seconds < limit.window_seconds
        ):
            looser.append("count per window")
        if other.cooldown_seconds < limit.cooldown_seconds:
            looser.append("cooldown")
        if looser:
            widenings.append(f"velocity limit `{limit.velocity_id}` loosened: {', '.join(looser)}")
    return widenings, undecided
