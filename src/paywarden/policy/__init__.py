"""The policy engine: compile a policy document once, evaluate intents against it purely."""

from paywarden.policy.compiler import CompiledPolicy, CompiledRule, check_policy, compile_policy
from paywarden.policy.decision import REASON_CODES, BudgetTrace, Decision, RuleTrace, Trace
from paywarden.policy.evaluator import evaluate
from paywarden.policy.facts import StateSnapshot
from paywarden.policy.report import CompileReport, Problem

__all__ = [
    "REASON_CODES",
    "BudgetTrace",
    "CompileReport",
    "CompiledPolicy",
    "CompiledRule",
    "Decision",
    "Problem",
    "RuleTrace",
    "StateSnapshot",
    "Trace",
    "check_policy",
    "compile_policy",
    "evaluate",
]
