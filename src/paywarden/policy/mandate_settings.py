"""The policy's `mandates:` section: which intents need a verified AP2 mandate.

```yaml
mandates:
  requires_mandate:
    - {id: purchases, actions: [purchase]}
    - {id: large, amount_gt: 100}
```

Each entry of `requires_mandate` takes the conditions a rule takes (`actions`, `agents`,
`recipients`, `amount_gt`, `amount`, `during`, `when`, ... but not `budget_ratio`) and no
effect: an intent that matches any entry is denied with `mandate_required` unless it comes with
a mandate that verifies. A condition that fails to evaluate counts as a match (fail closed).
docs/ap2.md explains the rest.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from paywarden.policy.document import LocList, LocMap, Mark
from paywarden.policy.facts import Facts, RuleEvaluationError
from paywarden.policy.rules import Check, RuleContext

ENTRIES_MAX = 100
SECTION_KEYS = frozenset({"requires_mandate"})
NOT_CONDITIONS = frozenset({"effect", "reason", "approval_ttl", "mode", "budget_ratio"})
_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.:\[\]-]{0,63}\Z")

# The compiler's condition builder (`compiler._rule_checks`), passed in: it imports this module.
BuildChecks = Callable[[LocMap, RuleContext, str], tuple[list[Check] | None, list[str]]]


@dataclass(frozen=True, slots=True)
class MandateRequirement:
    entry_id: str
    checks: tuple[Check, ...]

    def matches(self, facts: Facts) -> bool:
        try:
            return all(check(facts) for check in self.checks)
        except RuleEvaluationError:
            return True  # fail closed: a requirement that cannot be evaluated applies


@dataclass(frozen=True, slots=True)
class MandateSettings:
    required: tuple[MandateRequirement, ...] = ()

    def requirement(self, facts: Facts) -> str | None:
        """The id of the first `requires_mandate` entry the intent matches, or None."""
        for entry in self.required:
            if entry.matches(facts):
                return entry.entry_id
        return None


def compile_mandate_settings(
    value: object, ctx: RuleContext, mark: Mark, build: BuildChecks, rule_keys: frozenset[str]
) -> MandateSettings:
    """`mandates:` compiled with the rules' condition builder; `rule_keys` are the keys a rule
    may have (those of `NOT_CONDITIONS` are refused here)."""
    if value is None:
        return MandateSettings()
    if not isinstance(value, LocMap):
        ctx.report.error("`mandates` must be a mapping with `requires_mandate`", mark)
        return MandateSettings()
    for key in sorted(set(value) - SECTION_KEYS):
        ctx.report.error(f"unknown key `mandates.{key}`", value.mark_of(key))
    entries = value.get("requires_mandate", [])
    where = value.mark_of("requires_mandate")
    if not isinstance(entries, LocList) and entries != []:
        ctx.report.error("`mandates.requires_mandate` must be a list of conditions", where)
        return MandateSettings()
    if len(entries) > ENTRIES_MAX:
        ctx.report.error(f"`mandates.requires_mandate` has more than {ENTRIES_MAX} entries", where)
        return MandateSettings()
    required = []
    for index, entry in enumerate(entries):
        item_mark = entries.mark_of(index) if isinstance(entries, LocList) else where
        compiled = _entry(entry, index, ctx, item_mark, build, rule_keys)
        if compiled is not None:
            required.append(compiled)
    ctx.rule_id = ""
    return MandateSettings(tuple(required))


def _entry(
    entry: object,
    index: int,
    ctx: RuleContext,
    mark: Mark,
    build: BuildChecks,
    rule_keys: frozenset[str],
) -> MandateRequirement | None:
    name = f"mandates.requires_mandate[{index}]"
    if not isinstance(entry, LocMap):
        ctx.report.error(f"`{name}` must be a mapping of conditions", mark)
        return None
    entry_id = entry.get("id", name)
    if not isinstance(entry_id, str) or not _ID.match(entry_id):
        ctx.report.error(f"`{name}.id` must be letters, digits and . _ : -", entry.mark_of("id"))
        return None
    ctx.rule_id = entry_id
    refused = sorted((set(entry) - rule_keys) | (set(entry) & NOT_CONDITIONS))
    for key in refused:
        ctx.error(f"`{key}` is not a condition a mandate requirement can take", entry.mark_of(key))
    checks, _ = build(entry, ctx, "deny")  # unknown values match: a requirement is restrictive
    if checks is None or refused:
        return None
    return MandateRequirement(entry_id, tuple(checks))
