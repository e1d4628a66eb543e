"""paywarden.testing makes runs deterministic: the same inputs give the same ids and hashes."""

from __future__ import annotations

from paywarden import Warden
from paywarden.testing import FrozenClock, SequentialIds, example_intent

POLICY = """
currency: USD
rules:
  - {id: ok, effect: allow, actions: ["payments.*"]}
"""


def test_sequential_ids_count_across_prefixes() -> None:
    ids = SequentialIds()
    assert [ids("dec"), ids("hold"), ids("dec")] == ["dec_000001", "hold_000002", "dec_000003"]


def test_two_runs_with_frozen_clock_and_sequential_ids_give_identical_audit_heads() -> None:
    heads = []
    for _ in range(2):
        with Warden.open(POLICY, clock=FrozenClock(), ids=SequentialIds()) as warden:
            decision = warden.authorize(example_intent("12.00"))
            assert (decision.decision_id, decision.hold_id) == ("dec_000001", "hold_000002")
            heads.append(warden.verify_audit().head_hash)
    assert heads[0] == heads[1]


def test_example_intent_takes_overrides() -> None:
    intent = example_intent("1.50", agent="agent-b", currency="EUR")
    assert (intent.agent, intent.amount_minor, intent.currency) == ("agent-b", 150, "EUR")
