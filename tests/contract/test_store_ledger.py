"""Store contract: decisions, budget counters, velocity and holds (the money path)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from contract_stores import HOUR_US, STORES, T0, charge, decision, entry, fresh_store, hold
from hypothesis import given, settings
from hypothesis import strategies as st

from paywarden.errors import StoreError
from paywarden.ports import CounterRow, Store

# Decisions -----------------------------------------------------------------------------------


def test_a_decision_is_found_by_its_agent_and_idempotency_key_with_its_audit_body(
    store: Store,
) -> None:
    with store.write() as tx:
        tx.audit.append(entry(1, ref_id="dec_1", body='{"decision": {"id": "dec_1"}}'))
        tx.audit.append(entry(2, ref_id="dec_2", body='{"decision": {"id": "dec_2"}}'))
        tx.decisions.insert(decision("dec_1", idempotency_key="order-1", audit_seq=1))
        tx.decisions.insert(decision("dec_2", idempotency_key="order-2", audit_seq=2))
    with store.read() as tx:
        found = tx.decisions.get_by_key("agent-1", "order-2")
        assert found is not None
        assert (found.decision_id, found.fingerprint) == ("dec_2", "fp-dec_2")
        assert found.body == '{"decision": {"id": "dec_2"}}'
        assert tx.decisions.get_body("dec_1") == '{"decision": {"id": "dec_1"}}'
        assert tx.decisions.get_by_key("agent-2", "order-2") is None  # keys are per agent
        assert tx.decisions.get_by_key("agent-1", "order-3") is None
        assert tx.decisions.get_body("dec_3") is None


def test_an_idempotency_key_names_one_decision_per_agent(store: Store) -> None:
    with store.write() as tx:
        tx.audit.append(entry(1))
        tx.decisions.insert(decision("dec_1", agent="agent-1", idempotency_key="k"))
        tx.decisions.insert(decision("dec_2", agent="agent-2", idempotency_key="k"))
        tx.decisions.insert(decision("dec_3", idempotency_key=None))
        tx.decisions.insert(decision("dec_4", idempotency_key=None))  # no key: no limit
    with pytest.raises(StoreError), store.write() as tx:
        tx.decisions.insert(decision("dec_5", agent="agent-1", idempotency_key="k"))
    with pytest.raises(StoreError), store.write() as tx:
        tx.decisions.insert(decision("dec_1", idempotency_key="other"))
    with store.read() as tx:
        found = tx.decisions.get_by_key("agent-1", "k")
        assert found is not None and found.decision_id == "dec_1"
        assert tx.decisions.get_by_key("agent-1", "other") is None


# Budget counters -----------------------------------------------------------------------------


def test_lock_counter_creates_an_empty_counter_once_and_keeps_its_currency(store: Store) -> None:
    with store.write() as tx:
        first = tx.budgets.lock_counter("daily", "agent-1", T0, "USD")
        assert first == CounterRow("daily", "agent-1", T0, "USD", 0, 0)
        assert tx.budgets.reserve("daily", "agent-1", T0, 700, 1000)
    with store.write() as tx:
        again = tx.budgets.lock_counter("daily", "agent-1", T0, "EUR")
    assert again == CounterRow("daily", "agent-1", T0, "USD", 0, 700)


def test_reserve_fits_up_to_the_limit_and_refuses_past_it_changing_nothing(store: Store) -> None:
    with store.write() as tx:
        tx.budgets.lock_counter("daily", "agent-1", T0, "USD")
        assert tx.budgets.reserve("daily", "agent-1", T0, 600, 1000)
        assert not tx.budgets.reserve("daily", "agent-1", T0, 401, 1000)
        assert tx.budgets.reserve("daily", "agent-1", T0, 400, 1000)  # exactly the limit
        assert not tx.budgets.reserve("daily", "agent-1", T0, 1, 1000)
        assert not tx.budgets.reserve("daily", "agent-2", T0, 1, 1000)  # no counter row
    with store.read() as tx:
        assert tx.budgets.list_counters() == [CounterRow("daily", "agent-1", T0, "USD", 0, 1000)]


def test_a_lowered_limit_refuses_everything_but_keeps_what_was_spent(store: Store) -> None:
    with store.write() as tx:
        tx.budgets.lock_counter("daily", "agent-1", T0, "USD")
        assert tx.budgets.reserve("daily", "agent-1", T0, 800, 1000)
        assert not tx.budgets.reserve("daily", "agent-1", T0, 1, 500)
        assert tx.budgets.lock_counter("daily", "agent-1", T0, "USD").held_minor == 800


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(sorted(STORES)),
    limit=st.integers(1, 10_000),
    amounts=st.lists(st.integers(1, 4_000), max_size=12),
)
def test_reservations_never_pass_the_limit(name: str, limit: int, amounts: list[int]) -> None:
    """Whatever the sequence of amounts, exactly those that still fit are reserved."""
    with fresh_store(name) as store, store.write() as tx:
        tx.budgets.lock_counter("b", "s", 0, "USD")
        expected = 0
        for amount in amounts:
            fits = expected + amount <= limit
            assert tx.budgets.reserve("b", "s", 0, amount, limit) is fits
            expected += amount if fits else 0
        assert tx.budgets.lock_counter("b", "s", 0, "USD").held_minor == expected


def test_release_turns_held_into_spent_and_frees_the_rest(store: Store) -> None:
    with store.write() as tx:
        tx.budgets.lock_counter("daily", "agent-1", 0, "USD")
        assert tx.budgets.reserve("daily", "agent-1", 0, 1000, 5000)
        assert tx.budgets.reserve("daily", "agent-1", 0, 300, 5000)
        tx.budgets.release(charge(amount_minor=1000), 600)
        assert tx.budgets.lock_counter("daily", "agent-1", 0, "USD").spent_minor == 600
        tx.budgets.release(charge("hld_2", amount_minor=300), 0)
        counter = tx.budgets.lock_counter("daily", "agent-1", 0, "USD")
    assert (counter.spent_minor, counter.held_minor) == (600, 0)


def test_releasing_more_than_is_held_is_an_error_and_rolls_back(store: Store) -> None:
    with store.write() as tx:
        tx.budgets.lock_counter("daily", "agent-1", 0, "USD")
        assert tx.budgets.reserve("daily", "agent-1", 0, 100, 5000)
    with pytest.raises(StoreError), store.write() as tx:
        tx.budgets.release(charge(amount_minor=100), 100)
        tx.budgets.release(charge("hld_2", amount_minor=100), 100)  # not held: inconsistent
    with pytest.raises(StoreError), store.write() as tx:
        tx.budgets.release(charge(scope_key="agent-9", amount_minor=1), 0)  # no counter
    with store.read() as tx:
        assert tx.budgets.list_counters() == [CounterRow("daily", "agent-1", 0, "USD", 0, 100)]


def test_restore_gives_a_captured_charge_back_up_to_what_it_captured(store: Store) -> None:
    with store.write() as tx:
        tx.budgets.lock_counter("daily", "agent-1", 0, "USD")
        assert tx.budgets.reserve("daily", "agent-1", 0, 1000, 5000)
        tx.holds.insert(hold(), [charge(amount_minor=1000)])
        assert tx.holds.transition("hld_1", "captured", T0 + 1, 1000)
        tx.budgets.release(charge(amount_minor=1000), 1000)
        tx.budgets.restore(charge(amount_minor=1000), 400)
        tx.budgets.restore(charge(amount_minor=1000), 600)
    with pytest.raises(StoreError), store.write() as tx:
        tx.budgets.restore(charge(amount_minor=1000), 1)  # all of it was given back already
    with store.read() as tx:
        assert tx.budgets.lock_counter("daily", "agent-1", 0, "USD").spent_minor == 0
        assert [c.restored_minor for c in tx.holds.list_charges("hld_1")] == [1000]


def test_restore_needs_a_captured_charge(store: Store) -> None:
    with store.write() as tx:
        tx.budgets.lock_counter("daily", "agent-1", 0, "USD")
        assert tx.budgets.reserve("daily", "agent-1", 0, 1000, 5000)
        tx.holds.insert(hold(), [charge(amount_minor=1000)])
    with pytest.raises(StoreError), store.write() as tx:
        tx.budgets.restore(charge(amount_minor=1000), 1)  # still held
    with store.read() as tx:
        assert [c.restored_minor for c in tx.holds.list_charges("hld_1")] == [0]


def test_rolling_usage_sums_the_live_charges_created_after_the_window_start(store: Store) -> None:
    rolling = -1
    with store.write() as tx:
        for number, created_us in enumerate((T0, T0 + 10, T0 + 20, T0 + 30), start=1):
            amount = 100 * number
            tx.holds.insert(
                hold(f"hld_{number}", amount_minor=amount, created_us=created_us),
                [charge(f"hld_{number}", "week", amount, window_start_us=rolling)],
            )
        tx.holds.insert(hold("hld_other"), [charge("hld_other", "week", 999, rolling, "agent-2")])
        assert tx.holds.transition("hld_2", "captured", T0 + 40, 200)
        assert tx.holds.transition("hld_3", "voided", T0 + 40, None)
        tx.budgets.restore(charge("hld_2", "week", 200, rolling), 50)
        # hld_1 (T0) is at the window start: outside; hld_2 captured less restored; hld_3
        # voided counts nothing; hld_4 held.
        assert tx.budgets.get_rolling_usage("week", "agent-1", T0) == (150, 400)
        usage = tx.budgets.get_rolling_usage("week", "agent-1", T0 - 1)
        assert (usage.spent_minor, usage.held_minor) == (150, 500)
        assert tx.budgets.get_rolling_usage("week", "agent-1", T0 + 30) == (0, 0)
        assert tx.budgets.get_rolling_usage("other", "agent-1", 0) == (0, 0)
        # Rolling charges never touch a counter row.
        tx.budgets.release(charge("hld_4", "week", 400, rolling), 400)
        assert tx.budgets.list_counters() == []


def test_velocity_counts_events_after_the_window_start_and_keeps_the_last(store: Store) -> None:
    with store.write() as tx:
        assert tx.budgets.get_velocity_usage("per-minute", "agent-1", 0) == (0, None)
        for created_us in (T0, T0 + 5, T0 + 5, T0 + 9):
            tx.budgets.insert_velocity_event("per-minute", "agent-1", created_us, None)
        tx.budgets.insert_velocity_event("per-minute", "agent-2", T0 + 50, "hld_x")
        tx.budgets.insert_velocity_event("other", "agent-1", T0 + 60, "hld_y")
    with store.read() as tx:
        usage = tx.budgets.get_velocity_usage("per-minute", "agent-1", T0)
        assert (usage.event_count, usage.last_us) == (3, T0 + 9)
        assert tx.budgets.get_velocity_usage("per-minute", "agent-1", T0 + 9) == (0, T0 + 9)
        assert tx.budgets.get_velocity_usage("per-minute", "agent-1", T0 - 1) == (4, T0 + 9)


def test_counters_are_listed_by_budget_scope_and_window(store: Store) -> None:
    keys = [("weekly", "b", 5), ("daily", "b", 0), ("daily", "a", 9), ("daily", "a", 1)]
    with store.write() as tx:
        for budget_id, scope_key, window in keys:
            tx.budgets.lock_counter(budget_id, scope_key, window, "USD")
    with store.read() as tx:
        listed = [(c.budget_id, c.scope_key, c.window_start_us) for c in tx.budgets.list_counters()]
    assert listed == sorted(keys)


# Holds ---------------------------------------------------------------------------------------


def test_a_hold_and_its_charges_round_trip(store: Store) -> None:
    row = hold(amount_minor=1234, currency="EUR", created_us=T0 + 3, expires_us=T0 + 99)
    charges = [charge(budget_id="weekly", amount_minor=77), charge(budget_id="daily")]
    with store.write() as tx:
        tx.holds.insert(replace(row, state="captured"), charges)  # stored as held regardless
    with store.read() as tx:
        assert tx.holds.get("hld_1") == row
        assert tx.holds.get("hld_2") is None
        assert tx.holds.list_charges("hld_1") == sorted(charges, key=lambda c: c.budget_id)
        assert tx.holds.list_charges("hld_2") == []


def test_a_hold_is_resolved_once(store: Store) -> None:
    with store.write() as tx:
        tx.holds.insert(hold(), [charge()])
        assert tx.holds.transition("hld_1", "captured", T0 + 5, 600)
        assert not tx.holds.transition("hld_1", "voided", T0 + 6, None)
        assert not tx.holds.transition("hld_9", "voided", T0 + 6, None)
    with store.read() as tx:
        resolved = tx.holds.get("hld_1")
    assert resolved == replace(hold(), state="captured", resolved_us=T0 + 5, captured_minor=600)


def test_a_resolved_charge_leaves_rolling_usage_held(store: Store) -> None:
    with store.write() as tx:
        tx.holds.insert(hold(created_us=T0 + 1), [charge(window_start_us=-1)])
        assert tx.budgets.get_rolling_usage("daily", "agent-1", T0) == (0, 1000)
        assert tx.holds.transition("hld_1", "expired", T0 + 5, None)
        assert tx.budgets.get_rolling_usage("daily", "agent-1", T0) == (0, 0)


def test_set_expiry_moves_only_a_held_hold(store: Store) -> None:
    with store.write() as tx:
        tx.holds.insert(hold("hld_1"), [])
        tx.holds.insert(hold("hld_2"), [])
        assert tx.holds.transition("hld_2", "voided", T0 + 1, None)
        tx.holds.set_expiry("hld_1", T0 + 5 * HOUR_US)
        tx.holds.set_expiry("hld_2", T0 + 5 * HOUR_US)
    with store.read() as tx:
        first, second = tx.holds.get("hld_1"), tx.holds.get("hld_2")
    assert first is not None and first.expires_us == T0 + 5 * HOUR_US
    assert second is not None and second.expires_us == T0 + HOUR_US


def test_due_holds_are_the_held_ones_past_their_deadline_earliest_first(store: Store) -> None:
    deadlines = {"hld_a": T0 + 30, "hld_b": T0 + 10, "hld_c": T0 + 20, "hld_d": T0 + 40}
    with store.write() as tx:
        for hold_id, expires_us in deadlines.items():
            tx.holds.insert(hold(hold_id, expires_us=expires_us), [])
        assert tx.holds.transition("hld_c", "captured", T0 + 1, 1000)
    with store.read() as tx:
        assert tx.holds.list_due(T0 + 30, 10) == ["hld_b", "hld_a"]  # at the deadline is due
        assert tx.holds.list_due(T0 + 99, 2) == ["hld_b", "hld_a"]
        assert tx.holds.list_due(T0 + 9, 10) == []


def test_set_charge_amount_changes_one_charge(store: Store) -> None:
    with store.write() as tx:
        tx.holds.insert(hold(), [charge(budget_id="a"), charge(budget_id="b")])
        tx.holds.set_charge_amount("hld_1", "b", 250)
    with store.read() as tx:
        amounts = [(c.budget_id, c.amount_minor) for c in tx.holds.list_charges("hld_1")]
    assert amounts == [("a", 1000), ("b", 250)]
