"""Anomaly facts end to end on a SQLite file (issue 17): see `support.anomaly`; the same
scenario runs on PostgreSQL in tests/postgres/test_postgres_anomaly.py."""

from __future__ import annotations

from paywarden import FrozenClock
from paywarden.testing import example_intent
from support.anomaly import POLICY, run_scenario
from support.wardens import OpenWarden


def test_anomaly_facts_decide_trace_and_auto_halt(
    open_warden: OpenWarden, clock: FrozenClock
) -> None:
    run_scenario(open_warden(POLICY), clock)


def test_a_policy_without_anomaly_facts_reads_none(open_warden: OpenWarden) -> None:
    warden = open_warden("currency: USD\nrules:\n  - {id: ok, effect: allow}\n")
    decision = warden.authorize(example_intent("5.00"))
    assert decision.outcome == "allow" and decision.trace.anomaly is None
    assert "anomaly" not in decision.to_record()["trace"]  # type: ignore[operator]
