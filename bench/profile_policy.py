"""Where paywarden's per-decision time goes, on the 20-rule benchmark policy.

`.venv/bin/python bench/run.py profile` (or `bench/profile_policy.py`). Not a benchmark: it
times the pieces of `evaluate` one by one (with `timeit`, best of several repeats, so the
numbers are lower than the benchmark's medians) and prints a cProfile of the whole call.
It reaches into paywarden's internals (Facts, RuleTrace, Trace, Decision, the compiled
checks); a piece whose internals changed is reported as `n/a` instead of failing.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import timeit
from collections.abc import Callable, Sequence
from typing import Any

from paywarden.policy import StateSnapshot, compile_policy, evaluate
from policy_eval import CASES, NATIVE_POLICY, NATIVE_POLICY_NO_CEL, NOW

NUMBER = 20_000
REPEAT = 5


def best_us(fn: Callable[[], Any], number: int = NUMBER) -> float:
    return min(timeit.repeat(fn, number=number, repeat=REPEAT)) / number * 1e6


def row(label: str, measure: Callable[[], float]) -> None:
    try:
        print(f"  {label:<58} {measure():8.2f} us")
    except Exception as error:  # internals moved: say so, keep going
        print(f"  {label:<58}      n/a ({type(error).__name__}: {error})")


def components(title: str, text: str) -> None:
    from paywarden.policy.decision import Decision, RuleTrace, Trace
    from paywarden.policy.facts import Facts

    policy = compile_policy(text)
    state = StateSnapshot()
    intent = CASES[0].intent()
    zone = policy.timezone
    rules = policy.rules
    facts = Facts(intent, state, NOW, zone)
    matched = [rule.matches(facts) for rule in rules]
    checks = sum(len(rule.checks) for rule in rules)
    print(f"\n{title}: {len(rules)} rules, {checks} compiled checks, intent `{CASES[0].name}`")
    row("evaluate() total", lambda: best_us(lambda: evaluate(policy, intent, state, NOW)))
    row("  Facts(...)", lambda: best_us(lambda: Facts(intent, state, NOW, zone)))
    row(
        "  rule matching: [rule.matches(facts) for rule in rules]",
        lambda: (
            best_us(lambda: [r.matches(Facts(intent, state, NOW, zone)) for r in rules])
            - len(rules) * best_us(lambda: Facts(intent, state, NOW, zone))
        ),
    )
    for rule in rules:
        if any(_is_cel(check) for check in rule.checks):
            row(
                f"    of which CEL rule `{rule.rule_id}` (+ its variables)",
                lambda rule=rule: (
                    best_us(lambda: rule.matches(Facts(intent, state, NOW, zone)))
                    - best_us(lambda: Facts(intent, state, NOW, zone))
                ),
            )
    row(
        f"  {len(rules)} x RuleTrace(...) for the trace",
        lambda: best_us(
            lambda: tuple(
                RuleTrace(r.rule_id, r.effect, matched[i], None) for i, r in enumerate(rules)
            )
        ),
    )
    trace = Trace(policy_version=policy.version, evaluated_at=NOW, rules=())
    row(
        "  Trace(...)",
        lambda: best_us(lambda: Trace(policy_version=policy.version, evaluated_at=NOW, rules=())),
    )
    row(
        "  _decide(...) incl. Decision(...)",
        lambda: best_us(lambda: _decide()(policy, intent, matched, {}, trace)),
    )
    row(
        "    of which Decision(...)",
        lambda: best_us(lambda: Decision("allow", "allowed", "r", ("a",), trace)),
    )


def _is_cel(check: Callable[..., Any]) -> bool:
    cells = getattr(check, "__closure__", None) or ()
    return any(type(cell.cell_contents).__name__ == "Program" for cell in cells)


def _decide() -> Callable[..., Any]:
    from paywarden.policy import evaluator

    decide: Callable[..., Any] = evaluator._decide
    return decide


def what_if() -> None:
    """Prototypes of the suggested changes, measured here (nothing under src/ is changed)."""
    import cel

    from paywarden.policy.decision import RuleTrace
    from paywarden.policy.facts import Facts

    print("\nwhat-if prototypes (same machine, same method):")
    policy = compile_policy(NATIVE_POLICY_NO_CEL)
    rules = policy.rules
    intent = CASES[0].intent()
    facts = Facts(intent, StateSnapshot(), NOW, policy.timezone)
    matched = [rule.matches(facts) for rule in rules]
    prebuilt = [
        (RuleTrace(r.rule_id, r.effect, False), RuleTrace(r.rule_id, r.effect, True)) for r in rules
    ]
    row(
        "20 RuleTraces picked from ones pre-built at compile time",
        lambda: best_us(lambda: tuple([prebuilt[i][m] for i, m in enumerate(matched)])),
    )
    program = cel.compile('rail == "crypto" && amount_minor > 100000')
    variables = facts.cel_variables()
    used = {name: variables[name] for name in program.variables()}
    row(
        f"CEL execute with all {len(variables)} variables (today)",
        lambda: best_us(lambda: program.execute(variables)),
    )
    row(
        f"CEL execute with only the {len(used)} it reads",
        lambda: best_us(lambda: program.execute(used)),
    )
    row("Facts.cel_variables() (all 18, built once per decision)", lambda: _cel_vars_us(intent))
    floor = _hand_written()
    row("the 20 rules hand-written as one Python function (floor)", lambda: floor(intent))


def _cel_vars_us(intent: Any) -> float:
    from paywarden.policy.facts import Facts

    zone = compile_policy(NATIVE_POLICY).timezone
    state = StateSnapshot()
    return best_us(lambda: Facts(intent, state, NOW, zone).cel_variables())


def _hand_written() -> Callable[[Any], float]:
    sets = {
        "KNOWN": frozenset(["a1", "a2", "a3", "treasury-bot", "procurement-bot", "support-bot"]),
        "SANCTIONED": frozenset(["sanctioned-co.example", "evil-vendor"]),
        "NONPROD": frozenset(["staging", "dev"]),
        "RESTRICTED": frozenset(["gambling", "crypto-exchange"]),
        "MOVE": frozenset(["payments.transfer", "payments.payout"]),
        "OK_RECIPIENTS": frozenset(["vendor-1", "vendor-2", "payroll.example.com"]),
        "SOFTWARE": frozenset(["software", "saas"]),
        "SOFTWARE_CLOUD": frozenset(["software", "saas", "cloud"]),
        "TREASURY": frozenset(["treasury-bot", "a1"]),
        "REFUNDERS": frozenset(["support-bot", "a2"]),
        "READS": frozenset(["payments.read", "payments.balance"]),
        "PAYROLL": frozenset(["a3", "treasury-bot"]),
    }

    def match(i: Any) -> tuple[bool, ...]:
        a, act, env, rec, cat = i.agent, i.action, i.environment, i.recipient, i.category
        amount = i.amount.amount_minor
        pay = act.startswith("payments.")
        return (
            pay and (rec in sets["SANCTIONED"] or rec.endswith(".blocked.example")),
            pay and amount > 1_000_000,
            env in sets["NONPROD"] and amount > 5_000,
            a not in sets["KNOWN"],
            cat in sets["RESTRICTED"],
            a == "support-bot" and act in sets["MOVE"],
            i.rail == "crypto" and amount > 100_000,
            act in sets["MOVE"] and amount > 50_000,
            act == "payments.refund" and amount > 10_000,
            act == "payments.transfer"
            and not (rec in sets["OK_RECIPIENTS"] or rec.endswith(".stripe.com")),
            a == "procurement-bot" and cat in sets["SOFTWARE"] and amount > 20_000,
            cat == "travel" and amount > 30_000,
            rec.startswith("acct_") and amount > 25_000,
            a in sets["TREASURY"]
            and act in sets["MOVE"]
            and env == "production"
            and amount <= 1_000_000,
            pay and amount <= 5_000,
            a in sets["REFUNDERS"] and act == "payments.refund",
            a == "procurement-bot" and cat in sets["SOFTWARE_CLOUD"] and amount <= 200_000,
            act in sets["READS"],
            env in sets["NONPROD"],
            a in sets["PAYROLL"] and act == "payments.payout" and rec == "payroll.example.com",
        )

    return lambda intent: best_us(lambda: match(intent))


def profile(title: str, text: str, calls: int = 24_000) -> None:
    policy = compile_policy(text)
    state = StateSnapshot()
    intents = [case.intent() for case in CASES]
    profiler = cProfile.Profile()
    profiler.enable()
    for index in range(calls):
        evaluate(policy, intents[index % len(intents)], state, NOW)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    print(f"\ncProfile, {title}, {calls} decisions, by own time (cProfile inflates small calls):")
    for line in lines[3:]:
        print("  " + _short(line))


def _short(line: str) -> str:
    marker = "/src/paywarden/"
    head, found, tail = line.partition(marker)
    if not found:
        return line
    return head[: head.rfind(" ") + 1] + "paywarden/" + tail


def main(argv: Sequence[str] | None = None) -> int:
    del argv
    components("no CEL", NATIVE_POLICY_NO_CEL)
    components("2 CEL rules", NATIVE_POLICY)
    what_if()
    profile("no CEL", NATIVE_POLICY_NO_CEL)
    profile("2 CEL rules", NATIVE_POLICY)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
