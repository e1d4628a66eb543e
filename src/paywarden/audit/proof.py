"""A recorded decision's whole proof trace, from its compact audit record and its policy.

A decision's audit entry lists only the rules that matched or failed and counts the others
(`Trace.to_record`); the policy version it cites names every rule. The text of every version a
decision cites is kept in the store (`meta`, key `policy_text:<version>`: `actions.authorize.
record` makes sure of it before it writes a compact record), and a version is the hash of the
policy's canonical content, so the text is checked against the version before it is trusted:
an edited text compiles to another version and expands nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from paywarden.policy.compiler import CompiledPolicy
from paywarden.policy.decision import expand_rules
from paywarden.policy.loading import POLICY_TEXT_KEY, load_policy
from paywarden.ports import UnitOfWork

PolicyRules = tuple[tuple[str, str], ...]  # (rule_id, effect) of every rule, in policy order


def rules_of(policy: CompiledPolicy) -> PolicyRules:
    return tuple((rule.rule_id, rule.effect) for rule in policy.rules)


@lru_cache(maxsize=16)
def _compiled_rules(text: str) -> tuple[str, PolicyRules] | None:
    policy = load_policy(text).policy
    return None if policy is None else (policy.version, rules_of(policy))


def policy_rules(version: str, text: str | None) -> PolicyRules | None:
    """The rules of policy `version` from its stored text; None when there is no text or it
    is not that version."""
    if text is None:
        return None
    compiled = _compiled_rules(text)
    if compiled is None or compiled[0] != version:
        return None
    return compiled[1]


def stored_policy_rules(
    tx: UnitOfWork, version: str, current: CompiledPolicy | None = None
) -> PolicyRules | None:
    """The rules of policy `version`: the policy in force when it is that version, else the
    text the store keeps for it."""
    if current is not None and current.version == version:
        return rules_of(current)
    return policy_rules(version, tx.meta.get(POLICY_TEXT_KEY + version))


def expand_decision(decision: Mapping[str, Any], rules: PolicyRules | None) -> dict[str, Any]:
    """A recorded decision (the `decision` member of its audit body) with every rule of its
    policy in its trace, when `rules` are its policy's; otherwise unchanged."""
    trace = decision.get("trace")
    if rules is None or not isinstance(trace, Mapping):
        return dict(decision)
    expanded = expand_rules(trace, rules)
    if expanded is None:
        return dict(decision)
    full = {key: value for key, value in trace.items() if key != "rules_not_listed"}
    full["rules"] = expanded
    return {**decision, "trace": full}


def cited_version(decision: Mapping[str, Any]) -> str | None:
    """The policy version a recorded decision cites (None when the record has none)."""
    version = decision.get("policy_version")
    return version if isinstance(version, str) else None
