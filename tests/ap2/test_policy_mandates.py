"""The policy's `mandates.requires_mandate`: what compiles, what is refused, what it matches."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from paywarden import PaymentIntent
from paywarden.policy import check_policy
from paywarden.policy.facts import Facts, StateSnapshot

HEAD = "currency: USD\nrules:\n  - {id: all, effect: allow}\n"
NOON = datetime(2026, 1, 5, 12, tzinfo=UTC)


def requirement(section: str, amount: str = "10.00", action: str = "purchase") -> str | None:
    policy, report = check_policy(HEAD + section)
    assert policy is not None, report.lines()
    intent = PaymentIntent(
        agent="a", action=action, amount=amount, currency="USD", recipient="shop.example.com"
    )
    facts = Facts(intent, StateSnapshot(), NOON, policy.timezone)
    return policy.mandates.requirement(facts)


def test_entries_take_rule_conditions() -> None:
    section = (
        "mandates:\n  requires_mandate:\n"
        "    - {id: buys, actions: [purchase]}\n"
        "    - {amount_gt: 100}\n"
        "    - {id: cel, when: 'amount_minor == 4242'}\n"
    )
    assert requirement(section) == "buys"
    assert requirement(section, "150.00", "pay") == "mandates.requires_mandate[1]"
    assert requirement(section, "42.42", "pay") == "cel"
    assert requirement(section, "99.00", "pay") is None
    assert requirement("") is None  # no section: nothing required


@pytest.mark.parametrize(
    ("section", "words"),
    [
        ("mandates: [x]\n", "must be a mapping"),
        ("mandates: {required: []}\n", "unknown key `mandates.required`"),
        ("mandates: {requires_mandate: {actions: [x]}}\n", "must be a list"),
        ("mandates: {requires_mandate: [{effect: deny}]}\n", "`effect` is not a condition"),
        ("mandates: {requires_mandate: [{budget_ratio: {gt: 1}}]}\n", "`budget_ratio`"),
        ("mandates: {requires_mandate: [{actoins: [x]}]}\n", "`actoins` is not a condition"),
        ("mandates: {requires_mandate: [{amount_gt: ten}]}\n", "amount"),
        ("mandates: {requires_mandate: [{id: 'a b', actions: [x]}]}\n", "].id` must be"),
        ("mandates: {requires_mandate: [{when: 'nope('}]}\n", "CEL"),
    ],
)
def test_mistakes_are_compile_errors(section: str, words: str) -> None:
    policy, report = check_policy(HEAD + section)
    assert policy is None
    assert any(words in line for line in report.lines()), report.lines()
