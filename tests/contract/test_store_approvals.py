"""Store contract: approval requests and votes, operators, grants and halts."""

from __future__ import annotations

from dataclasses import replace

import pytest
from contract_stores import HOUR_US, T0, approval, grant, hold

from paywarden.errors import StoreError
from paywarden.ports import ApprovalStatus, HaltRow, OperatorRow, PendingTotal, Store, VoteRow

# Approval requests ---------------------------------------------------------------------------


def test_an_approval_round_trips_and_is_found_by_its_hold(store: Store) -> None:
    row = replace(approval(), decided_us=T0 + 7, note="looks fine")
    with store.write() as tx:
        tx.approvals.insert(row)
    with pytest.raises(StoreError), store.write() as tx:
        tx.approvals.insert(replace(row, hold_id="hld_other"))  # the id is taken
    with store.read() as tx:
        assert tx.approvals.get("apr_1") == row
        assert tx.approvals.get_by_hold("hld-of-apr_1") == row
        assert tx.approvals.get("apr_2") is None
        assert tx.approvals.get_by_hold("hld_other") is None


def test_an_approval_changes_status_only_from_the_expected_one(store: Store) -> None:
    with store.write() as tx:
        tx.approvals.insert(approval())
        assert tx.approvals.transition("apr_1", "pending", "approved", T0 + 5, "ok by two")
        assert not tx.approvals.transition("apr_1", "pending", "rejected", T0 + 6, "late")
        assert tx.approvals.transition("apr_1", "approved", "consumed", T0 + 8, None)
        assert not tx.approvals.transition("apr_9", "pending", "approved", T0 + 8, None)
    with store.read() as tx:
        row = tx.approvals.get("apr_1")
    assert row is not None
    assert (row.status, row.decided_us, row.note) == ("consumed", T0 + 8, "ok by two")


def test_the_open_approval_is_the_oldest_pending_or_approved_unexpired_one(store: Store) -> None:
    rows = [
        approval("apr_rejected", status="rejected", created_us=T0),
        approval("apr_new", status="pending", created_us=T0 + 20),
        approval("apr_old", status="approved", created_us=T0 + 10),
        approval("apr_other", status="pending", created_us=T0, binding="binding-2"),
        approval("apr_agent2", agent="agent-2", status="pending", created_us=T0),
    ]
    with store.write() as tx:
        for row in rows:
            tx.approvals.insert(row)
    with store.read() as tx:
        found = tx.approvals.get_open("agent-1", "binding-1", T0 + 11)
        assert found is not None and found.approval_id == "apr_old"
        # apr_old expires at T0 + 10 + 1h: from then on only apr_new is open.
        later = tx.approvals.get_open("agent-1", "binding-1", T0 + 10 + HOUR_US)
        assert later is not None and later.approval_id == "apr_new"
        assert tx.approvals.get_open("agent-1", "binding-1", T0 + 20 + HOUR_US) is None
        assert tx.approvals.get_open("agent-3", "binding-1", T0) is None


def test_recent_approvals_are_newest_first_and_filtered(store: Store) -> None:
    statuses: list[ApprovalStatus] = ["pending", "rejected", "pending", "approved"]
    with store.write() as tx:
        for number, status in enumerate(statuses):
            agent = "agent-1" if number % 2 == 0 else "agent-2"
            tx.approvals.insert(approval(f"apr_{number}", agent, status, T0 + number))
    with store.read() as tx:
        assert [r.approval_id for r in tx.approvals.list_recent(None, None, 10)] == [
            "apr_3",
            "apr_2",
            "apr_1",
            "apr_0",
        ]
        assert [r.approval_id for r in tx.approvals.list_recent(None, None, 2)] == [
            "apr_3",
            "apr_2",
        ]
        assert [r.approval_id for r in tx.approvals.list_recent("pending", None, 10)] == [
            "apr_2",
            "apr_0",
        ]
        assert [r.approval_id for r in tx.approvals.list_recent(None, "agent-2", 10)] == [
            "apr_3",
            "apr_1",
        ]
        assert tx.approvals.list_recent("pending", "agent-2", 10) == []
        assert tx.approvals.list_recent("no-such-status", None, 10) == []


def test_the_fair_page_puts_pending_first_and_lets_agents_take_turns(store: Store) -> None:
    rows = [
        # A busy agent's three pending requests, oldest first, and a quiet agent's one.
        approval("apr_b1", "busy", "pending", T0 + 1),
        approval("apr_b2", "busy", "pending", T0 + 2),
        approval("apr_b3", "busy", "pending", T0 + 3),
        approval("apr_q1", "quiet", "pending", T0 + 9),
        # Closed requests: each agent's newest first, taking turns too.
        approval("apr_bx", "busy", "rejected", T0 + 4),
        approval("apr_by", "busy", "approved", T0 + 8),
        approval("apr_qx", "quiet", "expired", T0 + 5),
        # Ties at the same time are ordered by id.
        approval("apr_t2", "tied", "pending", T0 + 1),
        approval("apr_t1", "tied", "pending", T0 + 1),
    ]
    with store.write() as tx:
        for row in rows:
            tx.approvals.insert(row)
    with store.read() as tx:
        page = [r.approval_id for r in tx.approvals.list_fair_page(None, None, 100, 0)]
        assert page == [
            # First turn of each agent: by age, then id.
            "apr_b1",
            "apr_t1",
            "apr_q1",
            # Second turn, by age again; the busy agent's third request waits a turn more.
            "apr_t2",
            "apr_b2",
            "apr_b3",
            # Closed: first turn by newest, then the second turn.
            "apr_by",
            "apr_qx",
            "apr_bx",
        ]
        assert [r.approval_id for r in tx.approvals.list_fair_page(None, None, 3, 2)] == page[2:5]
        pending_busy = tx.approvals.list_fair_page("pending", "busy", 10, 0)
        assert [r.approval_id for r in pending_busy] == ["apr_b1", "apr_b2", "apr_b3"]


def test_pending_totals_count_live_pending_requests_per_currency(store: Store) -> None:
    requests: list[tuple[str, ApprovalStatus, str, int, int]] = [
        ("apr_1", "pending", "USD", 1000, T0),
        ("apr_2", "pending", "USD", 250, T0 + 1),
        ("apr_3", "pending", "EUR", 700, T0 + 2),
        ("apr_4", "approved", "USD", 5000, T0 + 3),  # no longer waiting
        ("apr_5", "pending", "USD", 9000, T0 - HOUR_US),  # expired at T0
    ]
    with store.write() as tx:
        for approval_id, status, currency, amount, created_us in requests:
            hold_id = f"hld_{approval_id}"
            tx.holds.insert(hold(hold_id, amount, currency, created_us, created_us + HOUR_US), [])
            tx.approvals.insert(approval(approval_id, "agent-1", status, created_us, hold_id))
        tx.holds.insert(hold("hld_x", 1, "USD"), [])
        tx.approvals.insert(approval("apr_x", "agent-2", "pending", T0, "hld_x"))
    with store.read() as tx:
        assert tx.approvals.list_pending_totals("agent-1", T0) == [
            PendingTotal("EUR", 1, 700),
            PendingTotal("USD", 2, 1250),
        ]
        assert tx.approvals.list_pending_totals("agent-1", T0 + 1 + HOUR_US) == [
            PendingTotal("EUR", 1, 700)
        ]
        assert tx.approvals.list_pending_totals("agent-3", T0) == []


def test_each_operator_votes_once_per_approval(store: Store) -> None:
    with store.write() as tx:
        assert tx.approvals.insert_vote_if_absent(VoteRow("apr_1", "op-b", "approve", "ok", T0))
        assert tx.approvals.insert_vote_if_absent(VoteRow("apr_1", "op-a", "reject", "no", T0))
        assert tx.approvals.insert_vote_if_absent(VoteRow("apr_1", "op-c", "approve", "", T0 - 1))
        assert not tx.approvals.insert_vote_if_absent(
            VoteRow("apr_1", "op-a", "approve", "changed my mind", T0 + 1)
        )
        assert tx.approvals.insert_vote_if_absent(VoteRow("apr_2", "op-a", "approve", "", T0))
    with store.read() as tx:
        assert tx.approvals.list_votes("apr_1") == [
            VoteRow("apr_1", "op-c", "approve", "", T0 - 1),
            VoteRow("apr_1", "op-a", "reject", "no", T0),
            VoteRow("apr_1", "op-b", "approve", "ok", T0),
        ]
        assert tx.approvals.list_votes("apr_3") == []


# Operators -----------------------------------------------------------------------------------


def test_operators_are_inserted_once_and_listed_by_id(store: Store) -> None:
    with store.write() as tx:
        assert tx.operators.insert_if_absent(OperatorRow("op-b", "Bea", T0))
        assert tx.operators.insert_if_absent(OperatorRow("op-a", "Ann", T0 + 1))
        assert not tx.operators.insert_if_absent(OperatorRow("op-a", "Someone else", T0 + 2))
    with store.read() as tx:
        assert tx.operators.get("op-a") == OperatorRow("op-a", "Ann", T0 + 1)
        assert tx.operators.get("op-z") is None
        assert tx.operators.list_all() == [
            OperatorRow("op-a", "Ann", T0 + 1),
            OperatorRow("op-b", "Bea", T0),
        ]


# Grants --------------------------------------------------------------------------------------


def test_a_grant_round_trips(store: Store) -> None:
    row = replace(grant(), used_minor=100, uses=1, revoked_us=T0 + 30)
    with store.write() as tx:
        tx.grants.insert(row)
    with store.read() as tx:
        assert tx.grants.get("grt_1") == row
        assert tx.grants.get("grt_2") is None


def test_a_grant_is_consumed_within_its_ceilings_and_uses(store: Store) -> None:
    with store.write() as tx:
        tx.grants.insert(grant())  # 5.00 per payment, 12.00 in all, 3 uses
        assert not tx.grants.consume("grt_1", 501, T0 + 1)  # above the per-payment ceiling
        assert tx.grants.consume("grt_1", 500, T0 + 1)
        assert tx.grants.consume("grt_1", 500, T0 + 2)
        assert not tx.grants.consume("grt_1", 201, T0 + 3)  # would pass the total
        assert tx.grants.consume("grt_1", 200, T0 + 3)  # exactly the total, third use
        used = tx.grants.get("grt_1")
        assert used is not None and (used.used_minor, used.uses) == (1200, 3)
        tx.grants.insert(grant("grt_2", uses_max=2))
        assert tx.grants.consume("grt_2", 1, T0)
        assert tx.grants.consume("grt_2", 1, T0)
        assert not tx.grants.consume("grt_2", 1, T0)  # out of uses
        tx.grants.insert(grant("grt_3", uses_max=None))
        assert all(tx.grants.consume("grt_3", 100, T0) for _ in range(12))
        assert not tx.grants.consume("grt_3", 1, T0)
        assert not tx.grants.consume("grt_9", 1, T0)


def test_an_expired_or_revoked_grant_is_not_consumed(store: Store) -> None:
    with store.write() as tx:
        tx.grants.insert(grant("grt_1"))
        tx.grants.insert(grant("grt_2"))
        assert not tx.grants.consume("grt_1", 1, T0 + HOUR_US)  # expires_us is exclusive
        assert tx.grants.revoke("grt_2", T0 + 1)
        assert not tx.grants.revoke("grt_2", T0 + 2)
        assert not tx.grants.revoke("grt_9", T0 + 2)
        assert not tx.grants.consume("grt_2", 1, T0 + 3)
        revoked = tx.grants.get("grt_2")
    assert revoked is not None and (revoked.revoked_us, revoked.used_minor) == (T0 + 1, 0)


def test_grants_are_listed_oldest_first_by_agent_and_activity(store: Store) -> None:
    with store.write() as tx:
        tx.grants.insert(grant("grt_c", "agent-1", T0 + 2))
        tx.grants.insert(grant("grt_a", "agent-1", T0))
        tx.grants.insert(grant("grt_b", "agent-2", T0 + 1))
        tx.grants.insert(grant("grt_d", "agent-1", T0 + 3))
        assert tx.grants.revoke("grt_d", T0 + 4)
    with store.read() as tx:
        ids = [r.grant_id for r in tx.grants.list_by_agent(None, None)]
        assert ids == ["grt_a", "grt_b", "grt_c", "grt_d"]
        ids = [r.grant_id for r in tx.grants.list_by_agent("agent-1", None)]
        assert ids == ["grt_a", "grt_c", "grt_d"]
        ids = [r.grant_id for r in tx.grants.list_by_agent("agent-1", T0 + 5)]
        assert ids == ["grt_a", "grt_c"]
        # grt_a expires at T0 + 1h exactly: no longer active then.
        ids = [r.grant_id for r in tx.grants.list_by_agent(None, T0 + HOUR_US)]
        assert ids == ["grt_b", "grt_c"]


# Halts ---------------------------------------------------------------------------------------


def test_halts_stop_everything_first_then_one_agent(store: Store) -> None:
    agent_halt = HaltRow("agent-1", "runaway loop", "op-a", T0)
    global_halt = HaltRow("*", "incident", "op-b", T0 + 1)
    with store.write() as tx:
        assert tx.halts.get_for_agent("agent-1") is None
        assert tx.halts.insert_if_absent(agent_halt)
        assert not tx.halts.insert_if_absent(HaltRow("agent-1", "again", "op-c", T0 + 2))
        assert tx.halts.get_for_agent("agent-1") == agent_halt
        assert tx.halts.get_for_agent("agent-2") is None
        assert tx.halts.insert_if_absent(global_halt)
        assert tx.halts.get_for_agent("agent-1") == global_halt
        assert tx.halts.get_for_agent("agent-2") == global_halt
        assert tx.halts.list_all() == [global_halt, agent_halt]
        assert tx.halts.delete("*")
        assert not tx.halts.delete("*")
    with store.read() as tx:
        assert tx.halts.get_for_agent("agent-1") == agent_halt
        assert tx.halts.list_all() == [agent_halt]
