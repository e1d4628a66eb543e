"""The generated matcher and the per-rule closures are one check written twice: they agree.

`compile_policy` builds each rule's conditions as closures (`CompiledRule.matches`, used to find
which rule failed) and also one generated function that matches every rule in a single call
(`CompiledPolicy.match_all`, the hot path), with the simplest conditions written inline. Method:
Hypothesis generates policies from every kind of condition (exact and glob lists, negated lists,
amounts in the policy's and another currency, time windows, recipients, CEL) and intents and
instants, and checks both give the same answer, or both fail.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from paywarden import PaymentIntent
from paywarden.policy import compile_policy
from paywarden.policy.decision import BudgetTrace
from paywarden.policy.facts import Facts, StateSnapshot

ACTIONS = ["payments.transfer", "payments.refund", "x402.pay", "vendor.payout"]
AGENTS = ["agent-a", "agent-b", "research-01"]
CATEGORIES = ["travel", "saas", "gambling"]
RECIPIENTS = ["vendor.example.com", "api.evil.example", "acct_1AbC", "bob@acme.com", "10.0.0.7"]
CURRENCIES = ["USD", "EUR", "JPY"]
START = datetime(2026, 1, 5, tzinfo=UTC)

LIST_CONDITIONS = {
    "actions": st.lists(st.sampled_from([*ACTIONS, "payments.*", "*.pay"]), min_size=1, max_size=3),
    "actions_not": st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=2),
    "agents": st.lists(st.sampled_from([*AGENTS, "research-*"]), min_size=1, max_size=2),
    "agents_not": st.lists(st.sampled_from(AGENTS), min_size=1, max_size=2),
    "environments": st.lists(st.sampled_from(["production", "staging"]), min_size=1),
    "categories": st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=2),
    "categories_not": st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=2),
    "currencies": st.lists(st.sampled_from(CURRENCIES), min_size=1, max_size=2),
    "rails": st.lists(st.sampled_from(["sandbox", "stripe", "x4*"]), min_size=1),
    "recipients": st.lists(
        st.sampled_from([*RECIPIENTS, "*.evil.example", "10.0.0.0/8", "*@acme.com"]),
        min_size=1,
        max_size=3,
    ),
    "recipients_not": st.lists(st.sampled_from(RECIPIENTS), min_size=1, max_size=2),
}
AMOUNTS = st.builds(
    lambda op, limit, other: {op: limit, **({"currency": "EUR"} if other else {})},
    st.sampled_from(["gt", "gte", "lt", "lte"]),
    st.integers(0, 2000).map(str),
    st.booleans(),
)
WINDOWS = st.fixed_dictionaries(
    {
        "days": st.sampled_from(["mon-fri", "sat-sun", "tue"]),
        "hours": st.sampled_from(["09:00-17:00", "22:00-06:00", "00:00-24:00"]),
    }
)
CEL = st.sampled_from(
    [
        "amount_minor > 5000",
        'recipient.endsWith(".example.com")',
        'has(metadata.ticket) && metadata.ticket.startsWith("FIN-")',
        'payee_kind == "url" || local_hour < 12',
        "budget_ratio > 0.5",
    ]
)


@st.composite
def rules(draw: st.DrawFn, index: int) -> dict[str, object]:
    rule: dict[str, object] = {
        "id": f"r{index}",
        "effect": draw(st.sampled_from(["deny", "require_approval", "allow"])),
    }
    for key in draw(st.lists(st.sampled_from(sorted(LIST_CONDITIONS)), max_size=3, unique=True)):
        rule[key] = draw(LIST_CONDITIONS[key])
    if draw(st.booleans()):
        rule["amount"] = draw(AMOUNTS)
    if draw(st.integers(0, 4)) == 0:
        rule[draw(st.sampled_from(["during", "outside"]))] = draw(WINDOWS)
    if draw(st.integers(0, 4)) == 0:
        rule["when"] = draw(CEL)
    return rule


@st.composite
def policies(draw: st.DrawFn) -> str:
    count = draw(st.integers(1, 6))
    document = {
        "currency": "USD",
        "timezone": draw(st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"])),
        "fx": {"as_of": "2026-01-01", "rates": {"EUR/USD": "1.08"}},
        "rules": [draw(rules(index)) for index in range(count)],
    }
    return yaml.safe_dump(document, sort_keys=False)


@st.composite
def intents(draw: st.DrawFn) -> PaymentIntent:
    currency = draw(st.sampled_from(CURRENCIES))
    amount = draw(st.integers(1, 300_000))
    return PaymentIntent(
        agent=draw(st.sampled_from(AGENTS)),
        action=draw(st.sampled_from(ACTIONS)),
        amount=str(amount) if currency == "JPY" else f"{amount // 100}.{amount % 100:02d}",
        currency=currency,
        recipient=draw(st.sampled_from([*RECIPIENTS, "https://pay.evil.example/x"])),
        environment=draw(st.sampled_from(["production", "staging"])),
        category=draw(st.sampled_from([None, *CATEGORIES])),
        rail=draw(st.sampled_from([None, "sandbox", "stripe", "x402"])),
        metadata=draw(st.sampled_from([{}, {"ticket": "FIN-7"}, {"ticket": "OPS-1"}])),
    )


def _outcome(function: object) -> tuple[str, object]:
    try:
        return ("ok", function())  # type: ignore[operator]
    except Exception as error:
        return ("error", type(error).__name__)


@settings(max_examples=300, deadline=None)
@given(
    text=policies(),
    intent=intents(),
    minutes=st.integers(0, 7 * 24 * 60),
    ratio=st.sampled_from([(0, 100), (80, 100)]),
)
def test_the_generated_matcher_and_the_rule_closures_always_agree(
    text: str, intent: PaymentIntent, minutes: int, ratio: tuple[int, int]
) -> None:
    policy = compile_policy(text)
    budget = BudgetTrace("b", "USD", ratio[1], ratio[0], 0, 0, "none")
    facts = Facts(
        intent,
        StateSnapshot(budgets=(budget,)),
        START + timedelta(minutes=minutes),
        policy.timezone,
    )
    generated = _outcome(lambda: policy.match_all(facts))
    one_by_one = _outcome(lambda: [rule.matches(facts) for rule in policy.rules])
    assert generated == one_by_one, text
