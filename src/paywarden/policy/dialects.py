"""The two foreign policy formats paywarden loads directly, rewritten into the native form.

* **CapFence**: top-level `deny`, `require_approval` and `allow` lists whose entries hold flat
  conditions (`capability`, `amount_gt`, `amount_lte`, `environment`, ...). Each entry becomes a
  native rule with that effect; its id is the entry's `id` or `deny[0]`-style.
* **Governance** (the "agent-governance-policy.yaml" style): `rules` with `condition`, `action:
  DENY | PENDING_APPROVAL | ALLOW` and `message`, plus `phases`, `budget` and `compensation`.
  Conditions are a conjunction of comparisons (`cost > 0.50 && phase != COMMIT`).

The rewrite keeps source positions, so errors still point into the original file.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Literal

from paywarden.policy.document import LocList, LocMap, Mark
from paywarden.policy.report import CompileReport

Dialect = Literal["native", "capfence", "governance"]

CAPFENCE_SECTIONS = ("deny", "require_approval", "allow")
CAPFENCE_TOP_KEYS = frozenset(
    {
        "policy_name",
        "name",
        "version",
        "description",
        "timezone",
        "currency",
        "tokens",
        "fx",
        "budgets",
        "velocity",
        *CAPFENCE_SECTIONS,
    }
)
GOVERNANCE_TOP_KEYS = frozenset(
    {
        "phases",
        "budget",
        "rules",
        "compensation",
        "name",
        "version",
        "description",
        "timezone",
        "currency",
    }
)
_GOVERNANCE_EFFECTS = {
    "DENY": "deny",
    "BLOCK": "deny",
    "PENDING_APPROVAL": "require_approval",
    "REQUIRE_APPROVAL": "require_approval",
    "ALLOW": "allow",
}
_ATOM = re.compile(
    r"\A\s*(cost|amount|phase|budget_ratio|anomaly\.(?:amount_score|new_recipient|rate_spike))"
    r"\s*(>=|<=|==|!=|>|<)\s*"
    r"(\"[^\"]*\"|'[^']*'|[A-Za-z_][A-Za-z0-9_]*|[0-9]+(?:\.[0-9]+)?)\s*\Z"
)
_OPS = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}


def detect(document: LocMap) -> Dialect:
    """Which format a document is in; native unless it clearly is one of the other two."""
    if "rules" not in document and any(section in document for section in CAPFENCE_SECTIONS):
        return "capfence"
    rules = document.get("rules")
    entries = (
        [rule for rule in rules if isinstance(rule, LocMap)] if isinstance(rules, list) else []
    )
    if any("condition" in rule for rule in entries) or "budget" in document:
        return "governance"
    native_rules = any("effect" in rule for rule in entries)
    governance_keys = any(key in document for key in ("phases", "compensation"))
    return "governance" if governance_keys and not native_rules else "native"


def from_capfence(document: LocMap, report: CompileReport) -> LocMap:
    native = LocMap(document.mark)
    for key in document:
        if key not in CAPFENCE_TOP_KEYS:
            report.error(f"unknown top-level key `{key}`", document.mark_of(key))
    _copy(
        document,
        native,
        {
            "policy_name": "name",
            "name": "name",
            "version": "version",
            "description": "description",
            "timezone": "timezone",
            "currency": "currency",
            "tokens": "tokens",
            "fx": "fx",
            "budgets": "budgets",
            "velocity": "velocity",
        },
    )
    rules = LocList(document.mark)
    for section in CAPFENCE_SECTIONS:
        entries = document.get(section)
        if entries is None:
            continue
        if not isinstance(entries, LocList):
            report.error(f"`{section}` must be a list of rules", document.mark_of(section))
            continue
        for index, entry in enumerate(entries):
            mark = entries.mark_of(index)
            if not isinstance(entry, LocMap):
                report.error(f"`{section}[{index}]` must be a mapping", mark)
                continue
            if "effect" in entry:
                report.error(
                    f"`{section}[{index}]` must not set `effect`: the section it is in "
                    "is its effect",
                    entry.mark_of("effect"),
                )
                continue
            rule = LocMap(entry.mark)
            rule["id"] = entry.get("id", f"{section}[{index}]")
            rule["effect"] = section
            rule.key_marks["effect"] = mark
            for key, value in entry.items():
                if key != "id":
                    rule[key] = value
                rule.key_marks[key] = entry.mark_of(key)
            rules.append(rule)
            rules.item_marks.append(mark)
    native["rules"] = rules
    native.key_marks["rules"] = document.mark
    return native


def from_governance(document: LocMap, report: CompileReport) -> LocMap:
    native = LocMap(document.mark)
    for key in document:
        if key not in GOVERNANCE_TOP_KEYS:
            report.error(f"unknown top-level key `{key}`", document.mark_of(key))
    _copy(
        document,
        native,
        {
            "name": "name",
            "version": "version",
            "description": "description",
            "timezone": "timezone",
            "currency": "currency",
        },
    )
    _governance_compensation(document, native, report)
    rules = LocList(document.mark)
    _governance_phases(document, native, rules, report)
    _governance_rules(document, rules, report)
    _governance_budget(document, native, rules, report)
    native["rules"] = rules
    native.key_marks["rules"] = document.mark_of("rules")
    return native


def _governance_compensation(document: LocMap, native: LocMap, report: CompileReport) -> None:
    section = document.get("compensation")
    if not isinstance(section, LocMap) or "timeout" not in section:
        _copy(document, native, {"compensation": "compensation"})
        return
    report.warning(
        "`compensation.timeout` is not used: compensating refunds use the rail's own timeout",
        section.mark_of("timeout"),
    )
    trimmed = LocMap(section.mark)
    for key in section:
        if key != "timeout":
            trimmed[key] = section[key]
            trimmed.key_marks[key] = section.mark_of(key)
    native["compensation"] = trimmed
    native.key_marks["compensation"] = document.mark_of("compensation")


def _copy(source: LocMap, target: LocMap, names: dict[str, str]) -> None:
    for key, new_key in names.items():
        if key in source:
            target[new_key] = source[key]
            target.key_marks[new_key] = source.mark_of(key)


def _rule(mark: Mark, **fields: object) -> LocMap:
    rule = LocMap(mark)
    for key, value in fields.items():
        rule[key] = value
        rule.key_marks[key] = mark
    return rule


def _append(rules: LocList, rule: LocMap) -> None:
    rules.append(rule)
    rules.item_marks.append(rule.mark)


def _governance_phases(
    document: LocMap, native: LocMap, rules: LocList, report: CompileReport
) -> None:
    """`phases` becomes native `sessions` (payments only in the allowed phase, from a tracked
    session) plus the deny rule `phases.allowed_payment_phase`, so traces name the phase rule."""
    phases = document.get("phases")
    if phases is None:
        return
    if not isinstance(phases, LocMap) or set(phases) - {
        "allowed_payment_phase",
        "transition_rules",
    }:
        report.error(
            "`phases` must be a mapping with `allowed_payment_phase` and `transition_rules`",
            document.mark_of("phases"),
        )
        return
    _check_transitions(phases, report)
    allowed = phases.get("allowed_payment_phase")
    if allowed is None:
        return
    if not isinstance(allowed, str):
        report.error("`allowed_payment_phase` must be a phase name", phases.mark_of("phases"))
        return
    mark = phases.mark_of("allowed_payment_phase")
    native["sessions"] = _rule(mark, payment_phases=[allowed.upper()], required=True)
    native.key_marks["sessions"] = mark
    _append(
        rules,
        _rule(
            mark,
            id="phases.allowed_payment_phase",
            effect="deny",
            reason=f"payments are allowed only in phase {allowed.upper()}",
            phases_not=[allowed.upper()],
        ),
    )


def _check_transitions(phases: LocMap, report: CompileReport) -> None:
    transitions = phases.get("transition_rules")
    if transitions is None:
        return
    standard = {"EXPLORE": ["DECIDE"], "DECIDE": ["COMMIT"], "COMMIT": []}
    given = (
        {
            str(k).upper(): [str(v).upper() for v in vs]
            for k, vs in transitions.items()
            if isinstance(vs, list)
        }
        if isinstance(transitions, LocMap)
        and all(isinstance(vs, list) for vs in transitions.values())
        else None
    )
    if given != standard:
        report.error(
            "`transition_rules` must be EXPLORE: [DECIDE], DECIDE: [COMMIT], COMMIT: [] "
            "(paywarden enforces exactly these transitions)",
            phases.mark_of("transition_rules"),
        )


def _governance_rules(document: LocMap, rules: LocList, report: CompileReport) -> None:
    entries = document.get("rules")
    if entries is None:
        return
    if not isinstance(entries, LocList):
        report.error("`rules` must be a list", document.mark_of("rules"))
        return
    for index, entry in enumerate(entries):
        mark = entries.mark_of(index)
        if not isinstance(entry, LocMap):
            report.error(f"`rules[{index}]` must be a mapping", mark)
            continue
        rule_id = entry.get("id", f"rules[{index}]")
        unknown = set(entry) - {"id", "condition", "action", "message"}
        for key in sorted(unknown):
            report.error(
                f"unknown key `{key}` in a governance rule", entry.mark_of(key), str(rule_id)
            )
        effect = _GOVERNANCE_EFFECTS.get(str(entry.get("action", "")).upper())
        if effect is None:
            report.error(
                "`action` must be DENY, PENDING_APPROVAL or ALLOW",
                entry.mark_of("action"),
                str(rule_id),
            )
            continue
        rule = _rule(
            mark,
            id=rule_id,
            effect=effect,
            reason=entry.get("message", f"rule `{rule_id}` matched"),
        )
        if "condition" in entry and not _governance_condition(
            entry["condition"], rule, report, entry.mark_of("condition"), str(rule_id)
        ):
            continue
        _append(rules, rule)


def _governance_condition(
    condition: object, rule: LocMap, report: CompileReport, mark: Mark, rule_id: str
) -> bool:
    if not isinstance(condition, str):
        report.error("`condition` must be a string", mark, rule_id)
        return False
    seen: set[tuple[str, str]] = set()
    for atom in re.split(r"&&|\band\b", condition):
        match = _ATOM.match(atom)
        if match is None:
            report.error(
                f"unsupported condition `{atom.strip()}`: use `cost|amount|budget_ratio|"
                "anomaly.amount_score <op> number`, `phase ==|!= NAME` or "
                "`anomaly.new_recipient|anomaly.rate_spike ==|!= true|false`, joined with &&",
                mark,
                rule_id,
            )
            return False
        name, op, raw = match.groups()
        value = raw.strip("\"'")
        if (name, op) in seen or (name == "phase" and "phase" in {n for n, _ in seen}):
            # A repeated comparison would overwrite the first one (`cost < 10 && cost < 100`
            # would become `cost < 100`); refuse rather than loosen the rule.
            report.error(
                f"condition compares `{name}` more than once; write it once", mark, rule_id
            )
            return False
        seen.add((name, op))
        if name.startswith("anomaly.") and not _anomaly_atom(rule, name[8:], op, value, mark):
            report.error(f"`{name}`: compare a number with <op>, a flag with == true|false",
                         mark, rule_id)  # fmt: skip
            return False
        if name.startswith("anomaly."):
            continue
        if name == "phase":
            if op not in ("==", "!="):
                report.error("`phase` supports only == and !=", mark, rule_id)
                return False
            _merge_list(rule, "phases" if op == "==" else "phases_not", value.upper(), mark)
            continue
        if op not in _OPS:
            report.error(f"`{name}` supports only > >= < <=", mark, rule_id)
            return False
        try:
            number = Decimal(value)
        except InvalidOperation:
            report.error(f"`{value}` is not a number", mark, rule_id)
            return False
        spec = _child(rule, "budget_ratio" if name == "budget_ratio" else "amount", mark)
        spec[_OPS[op]] = number
        spec.key_marks[_OPS[op]] = mark
    return True


def _child(parent: LocMap, key: str, mark: Mark) -> LocMap:
    """The mapping under `key`, added (at `mark`) when there is none yet."""
    child = parent.get(key)
    if not isinstance(child, LocMap):
        child = LocMap(mark)
        parent[key] = child
        parent.key_marks[key] = mark
    return child


def _anomaly_atom(rule: LocMap, fact: str, op: str, value: str, mark: Mark) -> bool:
    """`anomaly.amount_score > 3.5` or `anomaly.new_recipient == true` as the native rule's
    `anomaly:` condition (`paywarden.policy.anomaly`); False when the comparison does not fit
    the fact."""
    condition = _child(rule, "anomaly", mark)
    if fact == "amount_score":
        try:
            number = Decimal(value)
        except InvalidOperation:
            return False
        if op not in _OPS:
            return False
        spec = _child(condition, fact, mark)
        spec[_OPS[op]] = number
        spec.key_marks[_OPS[op]] = mark
        return True
    if op not in ("==", "!=") or value not in ("true", "false"):
        return False
    condition[fact] = (value == "true") == (op == "==")
    condition.key_marks[fact] = mark
    return True


def _merge_list(rule: LocMap, key: str, value: str, mark: Mark) -> None:
    existing = rule.get(key)
    items = LocList(mark)
    if isinstance(existing, list):
        items.extend(existing)
    items.append(value)
    rule[key] = items
    rule.key_marks[key] = mark


def _governance_budget(
    document: LocMap, native: LocMap, rules: LocList, report: CompileReport
) -> None:
    budget = document.get("budget")
    mark = document.mark_of("budget")
    if budget is not None and not isinstance(budget, LocMap):
        report.error("`budget` must be a mapping", mark)
        return
    if isinstance(budget, LocMap):
        unknown = set(budget) - {"session_limit", "single_call_threshold", "graduated_gates"}
        for key in sorted(unknown):
            report.error(f"unknown key `{key}` in `budget`", budget.mark_of(key))
        if "session_limit" in budget:
            native["budgets"] = _session_budget(budget)
            native.key_marks["budgets"] = mark
        if "single_call_threshold" in budget:
            amount = LocMap(mark)
            amount["gt"] = budget["single_call_threshold"]
            _append(
                rules,
                _rule(
                    budget.mark_of("single_call_threshold"),
                    id="budget.single_call_threshold",
                    effect="require_approval",
                    reason="cost exceeds the single-call threshold; approval required",
                    amount=amount,
                ),
            )
    # The governance format allows whatever its rules do not stop. paywarden denies by
    # default, so the import states that allow explicitly, as a rule that shows in traces.
    report.warning(
        "governance policies allow what no rule stops; the import adds the explicit "
        "rule `governance.allow_within_budget`",
        document.mark,
    )
    _append(
        rules,
        _rule(
            document.mark,
            id="governance.allow_within_budget",
            effect="allow",
            reason="allowed: within phase, approval and budget rules",
        ),
    )


def _session_budget(budget: LocMap) -> LocList:
    entry = LocMap(budget.mark)
    entry["id"] = "session"
    entry["limit"] = budget["session_limit"]
    entry["window"] = "lifetime"
    entry["scope"] = "session"
    gates = budget.get("graduated_gates")
    if isinstance(gates, LocMap):
        entry["gates"] = LocMap(gates.mark)
        for old, new in (("warning", "warn"), ("restrict", "restrict"), ("halt", "halt")):
            if old in gates:
                entry["gates"][new] = gates[old]  # type: ignore[index]
    entry.key_marks.update(dict.fromkeys(entry, budget.mark))
    budgets = LocList(budget.mark)
    budgets.append(entry)
    budgets.item_marks.append(budget.mark)
    return budgets
