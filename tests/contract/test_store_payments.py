"""Store contract: payments, refunds and circuit breakers."""

from __future__ import annotations

from dataclasses import replace

import pytest
from contract_stores import T0, payment, refund

from paywarden.errors import StoreError
from paywarden.ports import BreakerRow, PaymentState, Store

# Payments ------------------------------------------------------------------------------------


def test_a_payment_round_trips_and_is_found_by_its_decision(store: Store) -> None:
    row = replace(payment(), rail_payment_id="rail-9", refunded_minor=40, error="timeout")
    with store.write() as tx:
        tx.payments.insert(row)
    with store.read() as tx:
        assert tx.payments.get("pay_1") == row
        assert tx.payments.get_by_decision("dec-of-pay_1") == row
        assert tx.payments.get("pay_2") is None
        assert tx.payments.get_by_decision("dec_x") is None


def test_one_payment_per_decision_and_per_rail_key(store: Store) -> None:
    with store.write() as tx:
        tx.payments.insert(payment())
    for duplicate in (
        replace(payment("pay_2"), decision_id="dec-of-pay_1"),
        replace(payment("pay_3"), rail_key="pw_pay_1"),
        replace(payment("pay_1"), decision_id="dec_new", rail_key="new"),
    ):
        with pytest.raises(StoreError), store.write() as tx:
            tx.payments.insert(duplicate)
    with store.read() as tx:
        assert [row.payment_id for row in tx.payments.list_recent(None, None, 10)] == ["pay_1"]


def test_a_payment_changes_state_only_from_the_expected_one(store: Store) -> None:
    with store.write() as tx:
        tx.payments.insert(payment(state="authorized"))
        assert tx.payments.transition("pay_1", "authorized", "submitted", T0 + 1, None, None)
        assert not tx.payments.transition("pay_1", "authorized", "failed", T0 + 2, None, "x")
        assert tx.payments.transition("pay_1", "submitted", "unknown", T0 + 3, "rail-1", "lost")
        # A later transition keeps the rail's id when it brings none, and sets the error.
        assert tx.payments.transition("pay_1", "unknown", "settled", T0 + 4, None, None)
        assert not tx.payments.transition("pay_9", "unknown", "settled", T0 + 4, None, None)
    with store.read() as tx:
        row = tx.payments.get("pay_1")
    assert row is not None
    assert (row.state, row.rail_payment_id, row.error, row.updated_us) == (
        "settled",
        "rail-1",
        None,
        T0 + 4,
    )


def test_refunds_count_against_a_settled_payment_up_to_its_amount(store: Store) -> None:
    with store.write() as tx:
        tx.payments.insert(payment(amount_minor=1000))
        tx.payments.insert(payment("pay_2", state="submitted"))
        assert tx.payments.add_refund("pay_1", 400, T0 + 1)
        assert not tx.payments.add_refund("pay_1", 601, T0 + 2)
        partly = tx.payments.get("pay_1")
        assert partly is not None and (partly.state, partly.refunded_minor) == ("settled", 400)
        assert tx.payments.add_refund("pay_1", 600, T0 + 3)
        assert not tx.payments.add_refund("pay_1", 1, T0 + 4)  # refunded in full
        assert not tx.payments.add_refund("pay_2", 1, T0 + 4)  # not settled
    with store.read() as tx:
        full = tx.payments.get("pay_1")
    assert full is not None
    assert (full.state, full.refunded_minor, full.updated_us) == ("refunded", 1000, T0 + 3)


def test_open_payments_are_listed_oldest_first(store: Store) -> None:
    states: list[PaymentState] = ["settled", "unknown", "authorized", "failed", "submitted"]
    with store.write() as tx:
        for number, state in enumerate(states):
            tx.payments.insert(payment(f"pay_{number}", state=state, created_us=T0 - number))
    with store.read() as tx:
        assert [r.payment_id for r in tx.payments.list_open(10)] == ["pay_4", "pay_2", "pay_1"]
        assert [r.payment_id for r in tx.payments.list_open(1)] == ["pay_4"]


def test_recent_payments_are_newest_first_ties_by_id_and_filtered(store: Store) -> None:
    with store.write() as tx:
        tx.payments.insert(payment("pay_b", "agent-1", "settled", T0 + 1))
        tx.payments.insert(payment("pay_a", "agent-2", "settled", T0 + 1))
        tx.payments.insert(payment("pay_c", "agent-1", "failed", T0 + 2))
        tx.payments.insert(payment("pay_d", "agent-1", "settled", T0))
    with store.read() as tx:
        recent = [r.payment_id for r in tx.payments.list_recent(None, None, 10)]
        assert recent == ["pay_c", "pay_a", "pay_b", "pay_d"]
        mine = [r.payment_id for r in tx.payments.list_recent("agent-1", "settled", 10)]
        assert mine == ["pay_b", "pay_d"]
        assert [r.payment_id for r in tx.payments.list_recent(None, "settled", 1)] == ["pay_a"]


# Refunds -------------------------------------------------------------------------------------


def test_a_refund_round_trips_and_changes_state_once(store: Store) -> None:
    row = replace(refund(), rail_refund_id="re_1", error="slow")
    with store.write() as tx:
        tx.refunds.insert(row)
    with pytest.raises(StoreError), store.write() as tx:
        tx.refunds.insert(replace(row, refund_id="rfd_2"))  # a rail key is used once
    with store.write() as tx:
        assert tx.refunds.get("rfd_1") == row
        assert tx.refunds.transition("rfd_1", "submitted", "unknown", T0 + 1, None, "timeout")
        assert not tx.refunds.transition("rfd_1", "submitted", "failed", T0 + 2, None, "x")
        assert tx.refunds.transition("rfd_1", "unknown", "settled", T0 + 3, "re_2", None)
        assert tx.refunds.get("rfd_2") is None
    with store.read() as tx:
        done = tx.refunds.get("rfd_1")
    assert done is not None
    assert (done.state, done.rail_refund_id, done.error, done.updated_us) == (
        "settled",
        "re_2",
        None,
        T0 + 3,
    )


def test_a_payments_refunds_are_listed_in_the_order_they_were_made(store: Store) -> None:
    with store.write() as tx:
        # Made in one microsecond: ordered by the number in the rail key, not as text.
        for number in (10, 2, 1):
            tx.refunds.insert(refund(f"rfd_{number}", rail_key=f"pw_pay_1_r{number}"))
        tx.refunds.insert(replace(refund("rfd_0", rail_key="pw_pay_1_r99"), created_us=T0 - 1))
        tx.refunds.insert(refund("rfd_other", payment_id="pay_2", rail_key="pw_pay_2_r1"))
    with store.read() as tx:
        ids = [r.refund_id for r in tx.refunds.list_by_payment("pay_1")]
        assert ids == ["rfd_0", "rfd_1", "rfd_2", "rfd_10"]
        assert tx.refunds.list_by_payment("pay_3") == []


def test_open_refunds_are_submitted_or_unknown_oldest_first(store: Store) -> None:
    with store.write() as tx:
        for number in range(4):
            row = replace(refund(f"rfd_{number}", rail_key=f"k{number}"), created_us=T0 - number)
            tx.refunds.insert(row)
        assert tx.refunds.transition("rfd_1", "submitted", "unknown", T0, None, None)
        assert tx.refunds.transition("rfd_2", "submitted", "settled", T0, None, None)
    with store.read() as tx:
        assert [r.refund_id for r in tx.refunds.list_open(10)] == ["rfd_3", "rfd_1", "rfd_0"]
        assert [r.refund_id for r in tx.refunds.list_open(1)] == ["rfd_3"]


# Breakers ------------------------------------------------------------------------------------


def test_a_breaker_is_closed_until_saved_and_saving_replaces_it(store: Store) -> None:
    with store.write() as tx:
        assert tx.breakers.get("stripe") == BreakerRow("stripe", "closed", 0, None)
        tx.breakers.save(BreakerRow("stripe", "open", 5, T0))
        tx.breakers.save(BreakerRow("sandbox", "closed", 2, None))
    with store.write() as tx:
        assert tx.breakers.get("stripe") == BreakerRow("stripe", "open", 5, T0)
        tx.breakers.save(BreakerRow("stripe", "half_open", 5, T0 + 9))
    with store.read() as tx:
        assert tx.breakers.get("stripe") == BreakerRow("stripe", "half_open", 5, T0 + 9)
        assert tx.breakers.get("sandbox") == BreakerRow("sandbox", "closed", 2, None)
