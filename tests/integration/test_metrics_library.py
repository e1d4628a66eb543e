"""Metrics outside the gateway: a library process serving its Warden's metrics on its own port
(`paywarden.metrics.serve_metrics`), and decisions asked for over MCP counted like REST ones.

Method: real decisions through a Warden on a SQLite file, then a real HTTP scrape on loopback
parsed with Prometheus' text parser; the counts must be exact, and a detached registry must
stop counting.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from paywarden import Warden
from paywarden.metrics import WardenMetrics, serve_metrics
from paywarden.testing import example_intent
from support.intents import intent_body
from support.mcp import mcp_call

POLICY = """
currency: USD
rules:
  - {id: small-payments, effect: allow, actions: ["payments.*"], amount: {lte: 100}}
budgets:
  - {id: daily, limit: 2000, window: day}
"""


def _decisions(text: str) -> dict[tuple[str, str, str], float]:
    return {
        (s.labels["outcome"], s.labels["reason_code"], s.labels["action"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "paywarden_decisions_total"
    }


def test_a_library_process_serves_its_metrics(tmp_path: Path) -> None:
    with (
        Warden.open(POLICY, database=tmp_path / "pw.db") as warden,
        serve_metrics(warden, port=0) as server,
    ):
        warden.authorize(example_intent("10.00", idempotency_key="k-1"))
        warden.authorize(example_intent("10.00", idempotency_key="k-1"))  # a replay
        warden.authorize(example_intent("500.00"))
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as got:
            text = got.read().decode()
    assert _decisions(text) == {
        ("allow", "allowed", "payments"): 1.0,
        ("deny", "no_rule_matched", "payments"): 1.0,
    }
    assert "paywarden_holds_open 1.0" in text
    assert 'paywarden_budget_use_ratio{budget_id="daily",scope="global"} 0.005' in text


def test_mcp_decisions_are_counted_and_detach_stops_counting(tmp_path: Path) -> None:
    with Warden.open(POLICY, database=tmp_path / "pw.db") as warden:
        metrics = WardenMetrics(lambda: warden)
        detach = metrics.attach(warden)
        secret, _ = warden.create_key(role="agent", agent="agent-a", actor="test")
        result = mcp_call(warden, secret, "request_payment", intent_body(amount="10.00"))
        assert not result.is_error
        detach()
        warden.authorize(example_intent("10.00"))  # not counted any more
        text = generate_latest(metrics.registry).decode()
    assert _decisions(text) == {("allow", "allowed", "payments"): 1.0}
