"""Anomaly facts on PostgreSQL (issue 17): the scenario of `support.anomaly`, read from
`decision_facts` inside each decision's transaction, as on SQLite."""

from __future__ import annotations

from paywarden import FrozenClock, Warden
from support.anomaly import POLICY, run_scenario


def test_anomaly_facts_decide_trace_and_auto_halt(pg_database: str, key_secret: str) -> None:
    clock = FrozenClock()
    with Warden.open(POLICY, database=pg_database, clock=clock) as warden:
        run_scenario(warden, clock)
