"""Anomaly facts read from the agent's stored history, inside the decision's transaction.

The scoring is `paywarden.policy.anomaly`; this reads what it needs from `decision_facts`
(`tx.facts`): the agent's last allowed amounts in the intent's currency, whether it was ever
allowed to pay this recipient, and its decisions in the rate windows. The decision being made
is not stored yet: it counts once in each rate window (`+ 1`). Only the facts the policy reads
are read.
"""

from __future__ import annotations

from dataclasses import replace

from paywarden.intent import PaymentIntent
from paywarden.policy.anomaly import AnomalySettings, amount_score, is_anomalous, rate_spike
from paywarden.policy.decision import AnomalyFacts
from paywarden.ports import UnitOfWork

_SECOND_US = 1_000_000


def read_facts(
    tx: UnitOfWork, settings: AnomalySettings, intent: PaymentIntent, now_us: int
) -> AnomalyFacts:
    """The facts the policy reads (`settings.reads`); the others stay 0.0 / false / 0."""
    agent, reads = intent.agent, settings.reads
    history: list[int] = []
    if "amount_score" in reads:
        history = tx.facts.list_amounts(agent, intent.currency, settings.history)
    recent = baseline = 0
    if "rate_spike" in reads:
        activity = tx.facts.get_activity(
            agent,
            now_us - settings.rate_window_seconds * _SECOND_US,
            now_us - settings.rate_baseline_seconds * _SECOND_US,
        )
        recent, baseline = activity.recent + 1, activity.baseline + 1
    new_recipient = "new_recipient" in reads and not tx.facts.get_recipient_paid(
        agent, intent.recipient
    )
    facts = AnomalyFacts(
        amount_score=amount_score(intent.amount_minor, history, settings),
        new_recipient=new_recipient,
        rate_spike=bool(recent) and rate_spike(recent, baseline, settings),
        history=len(history),
        recent=recent,
        baseline=baseline,
    )
    return replace(facts, flagged=is_anomalous(facts, settings))


def anomalies_reached(
    tx: UnitOfWork, settings: AnomalySettings, agent: str, now_us: int
) -> int | None:
    """With `auto_halt`, the agent's anomalies in its window counting this flagged one, when
    they reach `after`; None otherwise."""
    halt = settings.auto_halt
    if halt is None:
        return None
    count = tx.facts.get_anomaly_count(agent, now_us - halt.within_seconds * _SECOND_US) + 1
    return count if count >= halt.after else None
