"""Store contract: decision facts (issue 17): analytics aggregates and one agent's history.

Every store answers the same: exact integer sums per currency, NULL categories grouped and
ordered alike, nearest-rank percentiles of approval turnaround.
"""

from __future__ import annotations

from dataclasses import replace

from contract_stores import HOUR_US, T0, approval, decision, entry, hold

from paywarden.ports import (
    AgentActivity,
    DenialRow,
    NewDecision,
    SpendRow,
    Store,
    TurnaroundRow,
    VoteRow,
)

MINUTE_US = 60_000_000
DAY_US = 24 * HOUR_US


def fact(
    decision_id: str,
    *,
    agent: str = "agent-1",
    amount_minor: int = 1000,
    currency: str = "USD",
    recipient: str = "vendor.example",
    outcome: str = "allow",
    reason_code: str = "allowed",
    category: str | None = "travel",
    action: str = "payments.transfer",
    created_us: int = T0,
    hold_id: str | None = None,
) -> NewDecision:
    return replace(
        decision(decision_id, agent=agent, idempotency_key=None),
        created_us=created_us,
        amount_minor=amount_minor,
        currency=currency,
        recipient=recipient,
        outcome=outcome,
        reason_code=reason_code,
        category=category,
        action=action,
        hold_id=hold_id,
    )


def _seed(store: Store) -> None:
    """Two agents, two currencies, a captured hold, a denial, a pending decision."""
    captured = replace(hold("hld_a", amount_minor=5000), decision_id="dec_a")
    with store.write() as tx:
        tx.audit.append(entry(1))
        tx.holds.insert(captured, [])
        tx.holds.transition("hld_a", "captured", T0 + 5, 4000)
        rows = [
            fact("dec_a", amount_minor=5000, hold_id="hld_a"),
            fact("dec_b", amount_minor=700, recipient="other.example", category=None),
            fact("dec_c", amount_minor=900, outcome="deny", reason_code="budget_exceeded"),
            fact(
                "dec_d", agent="agent-2", amount_minor=300, currency="EUR", created_us=T0 + DAY_US
            ),
            fact("dec_e", agent="agent-2", outcome="require_approval", reason_code="x"),
            fact("dec_f", agent="agent-2", outcome="deny", reason_code="recipient_denied"),
            fact("dec_g", agent="agent-2", outcome="deny", reason_code="budget_exceeded"),
            fact("dec_old", created_us=T0 - 1),  # before the range
        ]
        for row in rows:
            tx.decisions.insert(row)


def test_spend_by_agent_is_exact_per_currency_with_captured_amounts(store: Store) -> None:
    _seed(store)
    with store.read() as tx:
        rows = tx.facts.list_spend("agent", T0, T0 + 2 * DAY_US, None, HOUR_US, None)
    assert rows == [
        SpendRow("agent-2", "EUR", 1, 1, 0, 0, 300, 0),
        SpendRow("agent-1", "USD", 3, 2, 1, 0, 5700, 4000),
        SpendRow("agent-2", "USD", 3, 0, 2, 1, 0, 0),
    ]


def test_spend_by_category_groups_decisions_without_one_last(store: Store) -> None:
    _seed(store)
    with store.read() as tx:
        rows = tx.facts.list_spend("category", T0, T0 + HOUR_US, "agent-1", HOUR_US, None)
    assert rows == [
        SpendRow("travel", "USD", 2, 1, 1, 0, 5000, 4000),
        SpendRow(None, "USD", 1, 1, 0, 0, 700, 0),
    ]


def test_spend_by_day_bucket_keys_each_bucket_by_its_start(store: Store) -> None:
    _seed(store)
    with store.read() as tx:
        rows = tx.facts.list_spend("bucket", T0, T0 + 2 * DAY_US, None, DAY_US, None)
    assert [(row.key, row.currency, row.decisions) for row in rows] == [
        (T0 + DAY_US, "EUR", 1),
        (T0, "USD", 6),
    ]


def test_top_recipients_are_ranked_per_currency(store: Store) -> None:
    _seed(store)
    with store.read() as tx:
        top = tx.facts.list_spend("recipient", T0, T0 + 2 * DAY_US, None, HOUR_US, 1)
        every = tx.facts.list_spend("recipient", T0, T0 + 2 * DAY_US, None, HOUR_US, None)
    assert [(row.key, row.currency, row.allowed_minor) for row in top] == [
        ("vendor.example", "EUR", 300),
        ("vendor.example", "USD", 5000),
    ]
    assert [(row.key, row.currency) for row in every] == [
        ("vendor.example", "EUR"),
        ("vendor.example", "USD"),
        ("other.example", "USD"),
    ]


def test_denials_are_counted_by_reason_code_most_first(store: Store) -> None:
    _seed(store)
    with store.read() as tx:
        everyone = tx.facts.list_denials(T0, T0 + DAY_US, None)
        one = tx.facts.list_denials(T0, T0 + DAY_US, "agent-1")
    assert everyone == [DenialRow("budget_exceeded", 2), DenialRow("recipient_denied", 1)]
    assert one == [DenialRow("budget_exceeded", 1)]


def test_approval_turnaround_uses_the_deciding_vote_and_nearest_rank_percentiles(
    store: Store,
) -> None:
    waits = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]  # minutes
    with store.write() as tx:
        for number, minutes in enumerate(waits):
            approval_id = f"apr_{number}"
            tx.approvals.insert(approval(approval_id, created_us=T0 + number))
            voted = T0 + number + minutes * MINUTE_US
            tx.approvals.insert_vote_if_absent(VoteRow(approval_id, "op-1", "approve", "ok", voted))
            tx.approvals.transition(approval_id, "pending", "approved", voted, None)
            if number % 2:  # consumed much later: the wait is still to the vote
                tx.approvals.transition(approval_id, "approved", "consumed", voted + DAY_US, None)
        tx.approvals.insert(approval("apr_r", created_us=T0 + 50))
        tx.approvals.transition("apr_r", "pending", "rejected", T0 + 50 + 5 * MINUTE_US, None)
        tx.approvals.insert(approval("apr_p", created_us=T0 + 60))
        tx.approvals.insert(approval("apr_x", created_us=T0 + 70, status="expired"))
    with store.read() as tx:
        row = tx.facts.get_turnaround(T0, T0 + DAY_US, None)
        nobody = tx.facts.get_turnaround(T0, T0 + DAY_US, "agent-9")
    # 11 decided waits: 5, 10, 20, ..., 100 minutes; median rank 6 (50), p90 rank 10 (90).
    assert row == TurnaroundRow(13, 10, 1, 1, 1, 50 * MINUTE_US, 90 * MINUTE_US)
    assert nobody == TurnaroundRow(0, 0, 0, 0, 0, None, None)


def test_an_agents_history_for_anomaly_facts(store: Store) -> None:
    with store.write() as tx:
        tx.audit.append(entry(1))
        for number in range(5):
            tx.decisions.insert(
                fact(f"dec_{number}", amount_minor=100 + number, created_us=T0 + number * MINUTE_US)
            )
        tx.decisions.insert(fact("dec_eur", currency="EUR", created_us=T0 + 9 * MINUTE_US))
        tx.decisions.insert(
            fact("dec_no", outcome="deny", recipient="new.example", created_us=T0 + 9 * MINUTE_US)
        )
    with store.read() as tx:
        assert tx.facts.list_amounts("agent-1", "USD", 3) == [104, 103, 102]
        assert tx.facts.list_amounts("agent-2", "USD", 3) == []
        assert tx.facts.get_recipient_paid("agent-1", "vendor.example")
        assert not tx.facts.get_recipient_paid("agent-1", "new.example")  # denied only
        assert not tx.facts.get_recipient_paid("agent-2", "vendor.example")
        activity = tx.facts.get_activity("agent-1", T0 + 4 * MINUTE_US, T0 + MINUTE_US)
        assert activity == AgentActivity(recent=3, baseline=6)
        assert tx.facts.get_activity("agent-3", T0, T0) == AgentActivity(0, 0)
