"""Store contract: sessions, compensation scopes and their steps, disputes."""

from __future__ import annotations

from dataclasses import replace

import pytest
from contract_stores import T0, dispute, scope, step

from paywarden.errors import StoreError
from paywarden.ports import SessionRow, Store

# Sessions ------------------------------------------------------------------------------------


def test_a_session_is_inserted_once_and_moves_phase_by_compare_and_set(store: Store) -> None:
    row = SessionRow("agent-1", "s-1", "EXPLORE", T0, T0 + 1)
    with store.write() as tx:
        assert tx.sessions.insert_if_absent(row)
        assert not tx.sessions.insert_if_absent(replace(row, phase="COMMIT"))
        assert tx.sessions.insert_if_absent(replace(row, agent="agent-2"))  # ids are per agent
        assert tx.sessions.transition("agent-1", "s-1", "EXPLORE", "DECIDE", T0 + 5)
        assert not tx.sessions.transition("agent-1", "s-1", "EXPLORE", "COMMIT", T0 + 6)
        assert not tx.sessions.transition("agent-1", "s-9", "EXPLORE", "DECIDE", T0 + 6)
    with store.read() as tx:
        assert tx.sessions.get("agent-1", "s-1") == replace(row, phase="DECIDE", updated_us=T0 + 5)
        assert tx.sessions.get("agent-2", "s-1") == replace(row, agent="agent-2")
        assert tx.sessions.get("agent-3", "s-1") is None


# Compensation scopes -------------------------------------------------------------------------


def test_a_scope_round_trips_and_changes_status_once(store: Store) -> None:
    with store.write() as tx:
        tx.scopes.insert(scope())
        assert tx.scopes.get("scp_1") == scope()
        assert tx.scopes.transition("scp_1", "open", "compensated", T0 + 4)
        assert not tx.scopes.transition("scp_1", "open", "committed", T0 + 5)
        assert not tx.scopes.transition("scp_9", "open", "committed", T0 + 5)
    with pytest.raises(StoreError), store.write() as tx:
        tx.scopes.insert(scope())
    with store.read() as tx:
        assert tx.scopes.get("scp_1") == replace(scope(), status="compensated", updated_us=T0 + 4)
        assert tx.scopes.get("scp_2") is None


def test_recent_scopes_are_newest_first_ties_by_id_and_filtered(store: Store) -> None:
    with store.write() as tx:
        tx.scopes.insert(scope("scp_b", T0 + 1))
        tx.scopes.insert(scope("scp_a", T0 + 1))
        tx.scopes.insert(scope("scp_c", T0))
        assert tx.scopes.transition("scp_a", "open", "committed", T0 + 2)
    with store.read() as tx:
        assert [r.scope_id for r in tx.scopes.list_recent(None, 10)] == ["scp_a", "scp_b", "scp_c"]
        assert [r.scope_id for r in tx.scopes.list_recent("open", 10)] == ["scp_b", "scp_c"]
        assert [r.scope_id for r in tx.scopes.list_recent(None, 1)] == ["scp_a"]


def test_steps_are_listed_by_number_and_each_is_settled_once(store: Store) -> None:
    with store.write() as tx:
        tx.scopes.insert(scope())
        for number in (2, 0, 1):
            tx.scopes.insert_step(step(number=number))
        assert tx.scopes.transition_step("scp_1", 1, "failed", "rail down", T0 + 5)
        assert not tx.scopes.transition_step("scp_1", 1, "compensated", None, T0 + 6)
        assert tx.scopes.transition_step("scp_1", 2, "compensated", None, T0 + 7)
        assert not tx.scopes.transition_step("scp_1", 7, "compensated", None, T0 + 7)
    with pytest.raises(StoreError), store.write() as tx:
        tx.scopes.insert_step(step(number=0))
    with store.read() as tx:
        assert tx.scopes.list_steps("scp_1") == [
            step(number=0),
            replace(step(number=1), state="failed", error="rail down", updated_us=T0 + 5),
            replace(step(number=2), state="compensated", updated_us=T0 + 7),
        ]
        assert tx.scopes.list_steps("scp_2") == []


# Disputes ------------------------------------------------------------------------------------


def test_a_dispute_round_trips_and_changes_status_once(store: Store) -> None:
    with store.write() as tx:
        tx.disputes.insert(dispute())
        assert tx.disputes.get("dsp_1") == dispute()
        assert tx.disputes.transition("dsp_1", "open", "under_review", T0 + 1, None, "rfd_1")
        assert not tx.disputes.transition("dsp_1", "open", "rejected", T0 + 2, "no", None)
        # None keeps what was recorded; a value replaces it.
        assert tx.disputes.transition("dsp_1", "under_review", "refunded", T0 + 3, "paid", None)
        assert not tx.disputes.transition("dsp_9", "open", "rejected", T0 + 3, None, None)
    with store.read() as tx:
        row = tx.disputes.get("dsp_1")
        assert tx.disputes.get("dsp_2") is None
    assert row == replace(
        dispute(), status="refunded", resolution="paid", refund_id="rfd_1", updated_us=T0 + 3
    )


def test_recent_disputes_are_newest_first_ties_by_id_and_filtered(store: Store) -> None:
    with store.write() as tx:
        tx.disputes.insert(dispute("dsp_b", "pay_1", T0 + 1))
        tx.disputes.insert(dispute("dsp_a", "pay_2", T0 + 1))
        tx.disputes.insert(dispute("dsp_c", "pay_1", T0))
        assert tx.disputes.transition("dsp_c", "open", "withdrawn", T0 + 2, None, None)
    with store.read() as tx:
        ids = [r.dispute_id for r in tx.disputes.list_recent(None, None, 10)]
        assert ids == ["dsp_a", "dsp_b", "dsp_c"]
        ids = [r.dispute_id for r in tx.disputes.list_recent("pay_1", None, 10)]
        assert ids == ["dsp_b", "dsp_c"]
        ids = [r.dispute_id for r in tx.disputes.list_recent("pay_1", "open", 10)]
        assert ids == ["dsp_b"]
        assert [r.dispute_id for r in tx.disputes.list_recent(None, None, 1)] == ["dsp_a"]
