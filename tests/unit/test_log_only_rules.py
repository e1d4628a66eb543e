"""`mode: log_only`: a rule is evaluated and traced, and never decides."""

from __future__ import annotations

from datetime import UTC, datetime

from paywarden.policy import compile_policy, evaluate
from paywarden.policy.compiler import check_policy
from paywarden.policy.tooling.lint import lint_policy
from support.intents import intent_builder

NOW = datetime(2026, 1, 7, 15, 0, tzinfo=UTC)
_intent = intent_builder("100.00")

POLICY = """\
currency: USD
rules:
  - {id: allow-transfers, effect: allow, actions: [payments.transfer]}
  - {id: watch-deny, effect: deny, mode: log_only, amount: {gt: 50}}
  - {id: watch-approval, effect: require_approval, mode: log_only, amount: {gt: 50}}
  - {id: watch-error, effect: allow, mode: log_only, when: 'metadata.missing == "x"'}
"""


def _traced(decision: object) -> dict[str, tuple[bool, str | None]]:
    trace = decision.trace  # type: ignore[attr-defined]
    return {rule.rule_id: (rule.matched, rule.error) for rule in trace.rules}


def test_matching_log_only_rules_are_traced_but_never_decide() -> None:
    decision = evaluate(compile_policy(POLICY), _intent(), now=NOW)
    assert decision.outcome == "allow"
    assert decision.reason_code == "allowed"
    assert decision.rule_ids == ("allow-transfers",)
    traced = _traced(decision)
    assert traced["watch-deny"] == (True, None)
    assert traced["watch-approval"] == (True, None)


def test_an_error_in_a_log_only_rule_does_not_deny_but_is_traced() -> None:
    decision = evaluate(compile_policy(POLICY), _intent(), now=NOW)
    matched, error = _traced(decision)["watch-error"]
    assert matched is False and error is not None
    enforced = compile_policy(POLICY.replace("mode: log_only, when", "when"))
    assert evaluate(enforced, _intent(), now=NOW).reason_code == "rule_error"


def test_a_log_only_allow_never_allows() -> None:
    text = "currency: USD\nrules:\n  - {id: watch, effect: allow, mode: log_only}\n"
    policy, report = check_policy(text, "p.yaml")
    assert policy is not None
    assert any("no allow rule" in problem.message for problem in report.problems)
    decision = evaluate(policy, _intent(), now=NOW)
    assert decision.outcome == "deny" and decision.reason_code == "no_rule_matched"
    assert _traced(decision)["watch"] == (True, None)


def test_mode_is_checked_and_changes_the_version() -> None:
    bad = "currency: USD\nrules:\n  - {id: a, effect: allow, mode: shadow}\n"
    policy, report = check_policy(bad, "p.yaml")
    assert policy is None
    assert [p.message for p in report.problems if p.severity == "error"] == [
        "`mode` must be enforce or log_only"
    ]
    enforced = compile_policy("currency: USD\nrules:\n  - {id: a, effect: allow}\n")
    explicit = compile_policy("currency: USD\nrules:\n  - {id: a, effect: allow, mode: enforce}\n")
    logged = compile_policy("currency: USD\nrules:\n  - {id: a, effect: allow, mode: log_only}\n")
    assert enforced.allow_rules == explicit.allow_rules == (0,)
    assert logged.allow_rules == () and logged.log_only_rules == (0,)
    assert logged.version != enforced.version


def test_lint_does_not_count_a_log_only_rule_as_deciding() -> None:
    text = (
        "currency: USD\nrules:\n"
        "  - {id: allow-transfers, effect: allow, actions: [payments.transfer], amount: {lte: 5}}\n"
        "  - {id: watch-deny, effect: deny, mode: log_only, actions: [payments.transfer]}\n"
        "  - {id: watch-allow, effect: allow, mode: log_only, actions: [payments.gift]}\n"
    )
    assert lint_policy(text, compile_policy(text)) == []
    enforced = text.replace("mode: log_only, ", "")
    codes = sorted(finding.code for finding in lint_policy(enforced, compile_policy(enforced)))
    assert codes == ["PW101", "PW103"]  # shadowed by the deny; an uncapped allow
