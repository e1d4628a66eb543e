"""Store contract: alerts claimed once by their dedup key, and the gauges metrics read."""

from __future__ import annotations

from contract_stores import T0

from paywarden.ports import AlertRow, BreakerRow, StateCount, Store


def _alert(alert_id: str, dedup_key: str, kind: str = "halt", created_us: int = T0) -> AlertRow:
    return AlertRow(alert_id, dedup_key, "rule", kind, "ref", "text", '{"n":1}', created_us)


def test_an_alert_is_claimed_once_by_its_dedup_key(store: Store) -> None:
    with store.write() as tx:
        assert tx.alerts.insert_if_absent(_alert("alr_1", "rule|halt|seq:3"))
        assert not tx.alerts.insert_if_absent(_alert("alr_2", "rule|halt|seq:3"))
        assert tx.alerts.insert_if_absent(_alert("alr_3", "rule|halt|seq:4", created_us=T0 + 5))
        assert tx.alerts.insert_if_absent(
            _alert("alr_4", "b|x", kind="budget_threshold", created_us=T0 + 9)
        )
    with store.read() as tx:
        assert [row.alert_id for row in tx.alerts.list_recent(None, 10)] == [
            "alr_4",
            "alr_3",
            "alr_1",
        ]
        assert [row.alert_id for row in tx.alerts.list_recent("halt", 1)] == ["alr_3"]
        assert tx.alerts.list_recent("rate_spike", 10) == []
        assert tx.alerts.list_recent(None, 10)[-1] == _alert("alr_1", "rule|halt|seq:3")


def test_gauges_of_an_empty_store_and_after_changes(store: Store) -> None:
    with store.read() as tx:
        empty = tx.gauges.get_snapshot()
    assert (empty.approvals_pending, empty.approval_oldest_us, empty.holds_open) == (0, None, 0)
    assert (empty.payments, empty.breakers, empty.alerts) == ((), (), ())
    assert (empty.webhook_failures, empty.webhook_undelivered) == (0, 0)
    with store.write() as tx:
        tx.breakers.save(BreakerRow("stripe", "open", 5, T0))
        tx.alerts.insert_if_absent(_alert("alr_1", "a"))
        tx.alerts.insert_if_absent(_alert("alr_2", "b"))
        for _ in range(3):
            tx.outbox.insert("alert.raised", "{}", T0)
    with store.write() as tx:
        first, second, _third = tx.outbox.list_due(T0, 10)
        tx.outbox.mark(first.event_id, None, T0 + 1, "HTTP 500")  # failed once
        tx.outbox.mark(first.event_id, T0 + 2, T0 + 2, None)  # then delivered
        tx.outbox.mark(second.event_id, None, T0 + 1, "HTTP 500")  # failed, still waiting
    with store.read() as tx:
        gauges = tx.gauges.get_snapshot()
    assert gauges.breakers == (StateCount("stripe", "open", 1),)
    assert gauges.alerts == (StateCount("halt", "raised", 2),)
    assert (gauges.webhook_failures, gauges.webhook_undelivered) == (2, 2)
