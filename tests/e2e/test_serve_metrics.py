"""`GET /metrics` and `--log-format json` on a real `paywarden serve` (a uvicorn subprocess).

Method: create an agent key and an admin key with the CLI, start the gateway on a free loopback
port, make known decisions over HTTP (allowed, denied, an odd action, an idempotent replay),
then scrape `/metrics` with the admin key and parse it with Prometheus' own text parser: the
counts must be exact. The JSON log test reads the process's output line by line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.policies import write_policy
from support.servers import serve_process

PAYWARDEN = str(Path(sys.executable).with_name("paywarden"))
POLICY = """
currency: USD
rules:
  - {id: small, effect: allow, actions: ["payments.*"], amount: {lte: 100}}
budgets:
  - {id: daily, limit: 1000, window: day}
"""
BODY = {
    "action": "payments.transfer",
    "amount": "25.00",
    "currency": "USD",
    "recipient": "vendor.example.com",
}


def _key(database: Path, *args: str) -> str:
    command = [PAYWARDEN, "keys", "create", "--database", str(database), "--json", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    key: str = json.loads(done.stdout)["key"]
    return key


@contextmanager
def _serve(tmp_path: Path, *extra: str) -> Iterator[tuple[str, list[str]]]:
    """The gateway on a free port; yields its URL and a list holding its output once stopped."""
    policy = write_policy(tmp_path, POLICY)
    with serve_process(tmp_path, policy, *extra) as served:
        yield served


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_each_decision_once_with_bounded_labels(tmp_path: Path) -> None:
    agent = _key(tmp_path / "pw.db", "--role", "agent", "--agent", "agent-a")
    admin = _key(tmp_path / "pw.db", "--role", "admin")
    quiet = ("--no-access-log", "--log-level", "warning")
    with _serve(tmp_path, *quiet) as (url, _), httpx.Client(base_url=url, timeout=10) as client:
        as_agent = {"Authorization": f"Bearer {agent}"}
        for number in range(2):
            headers = {**as_agent, "Idempotency-Key": f"auth-{number}"}
            allowed = client.post("/v1/authorizations", json=BODY, headers=headers)
            assert allowed.json()["outcome"] == "allow", allowed.text
        big = client.post("/v1/authorizations", json={**BODY, "amount": "500"}, headers=as_agent)
        odd = client.post(
            "/v1/authorizations", json={**BODY, "action": "Odd.Thing"}, headers=as_agent
        )
        assert big.json()["outcome"] == odd.json()["outcome"] == "deny"
        pay_headers = {**as_agent, "Idempotency-Key": "pay-1"}
        for _ in range(2):  # the second is a replay: no second decision
            paid = client.post("/v1/payments", json=BODY, headers=pay_headers)
            assert paid.json()["state"] == "settled", paid.text
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=as_agent).status_code == 403
        scraped = client.get("/metrics", headers={"Authorization": f"Bearer {admin}"})
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    samples = _samples(scraped.text)
    decisions = {
        labels: value
        for (name, labels), value in samples.items()
        if name == "paywarden_decisions_total"
    }
    allow = (("action", "payments"), ("outcome", "allow"), ("reason_code", "allowed"))
    assert decisions[allow] == 3.0
    big_key = (
        ("action", "payments"),
        ("outcome", "deny"),
        ("reason_code", big.json()["reason_code"]),
    )
    # Labelled by the intent's action as recorded (lower case): `Odd.Thing` counts as `odd`.
    odd_key = (("action", "odd"), ("outcome", "deny"), ("reason_code", odd.json()["reason_code"]))
    assert decisions[big_key] == 1.0 and decisions[odd_key] == 1.0
    assert sum(decisions.values()) == 5.0
    assert samples[("paywarden_decision_seconds_count", ())] == 5.0
    assert samples[("paywarden_decision_seconds_bucket", (("le", "+Inf"),))] == 5.0
    # Two holds of 25.00 (the authorizations) and one payment of 25.00 against 1000.00.
    ratios = {
        labels: v for (name, labels), v in samples.items() if name == "paywarden_budget_use_ratio"
    }
    assert ratios == {(("budget_id", "daily"), ("scope", "global")): pytest.approx(0.075)}
    assert "agent-a" not in scraped.text and "vendor.example.com" not in scraped.text


def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    admin = _key(tmp_path / "pw.db", "--role", "admin")
    quiet = ("--no-access-log", "--log-level", "warning", "--no-metrics")
    with _serve(tmp_path, *quiet) as (url, _), httpx.Client(base_url=url, timeout=10) as client:
        scraped = client.get("/metrics", headers={"Authorization": f"Bearer {admin}"})
    assert scraped.status_code == 404


def test_json_log_lines_have_the_fields_and_no_query_string(tmp_path: Path) -> None:
    options = ("--log-format", "json", "--log-level", "info")
    with _serve(tmp_path, *options) as (url, output), httpx.Client(base_url=url) as client:
        client.get("/healthz", params={"token": "s3cret-value"})
        client.get("/readyz")
    lines = [line for line in output[0].splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    assert records, output[0]
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record)
        assert record["time"].endswith("Z")
    access = [record for record in records if record["logger"] == "uvicorn.access"]
    paths = {(record["method"], record["path"], record["status"]) for record in access}
    assert ("GET", "/readyz", 200) in paths
    assert ("GET", "/healthz", 400) in paths or ("GET", "/healthz", 200) in paths
    assert any(record["logger"].startswith("paywarden") for record in records)
    assert any(record["logger"] == "uvicorn.error" for record in records)
    assert "s3cret-value" not in output[0]


GAUGE_POLICY = """
currency: USD
rules:
  - {id: review, effect: require_approval, actions: ["payments.*"], amount: {gt: 100}}
  - {id: small, effect: allow, actions: ["payments.*"]}
budgets:
  - {id: daily, limit: 1000, window: day}
alerts:
  - {id: big, kind: large_transaction, amount: 20}
  - {id: budget-50, kind: budget_threshold, percent: [50]}
"""


def test_store_gauges_alerts_and_request_ids(tmp_path: Path) -> None:
    agent = _key(tmp_path / "pw.db", "--role", "agent", "--agent", "agent-a")
    admin = _key(tmp_path / "pw.db", "--role", "admin")
    policy = write_policy(tmp_path, GAUGE_POLICY)
    options = ("--log-format", "json", "--log-level", "info")
    with (
        serve_process(tmp_path, policy, *options) as (url, output),
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        as_agent = {"Authorization": f"Bearer {agent}", "X-Request-Id": "trace-abc.1"}
        as_admin = {"Authorization": f"Bearer {admin}"}
        held = client.post("/v1/authorizations", json=BODY, headers=as_agent)
        assert held.headers["x-request-id"] == "trace-abc.1"
        waiting = client.post(
            "/v1/authorizations", json={**BODY, "amount": "500"}, headers=as_agent
        )
        assert waiting.json()["outcome"] == "require_approval", waiting.text
        paid = client.post(
            "/v1/payments", json=BODY, headers={**as_agent, "Idempotency-Key": "pay-1"}
        )
        assert paid.json()["state"] == "settled", paid.text
        odd = client.get("/healthz", headers={"X-Request-Id": "no spaces allowed"})
        assert odd.headers["x-request-id"].startswith("req_")
        listed = client.get("/v1/alerts", headers=as_admin)
        assert client.get("/v1/alerts", headers=as_agent).status_code == 403
        scraped = client.get("/metrics", headers=as_admin)
    samples = _samples(scraped.text)
    assert samples[("paywarden_approvals_pending", ())] == 1.0
    assert samples[("paywarden_approval_oldest_age_seconds", ())] >= 0.0
    assert samples[("paywarden_holds_open", ())] == 2.0  # the allowed hold and the waiting one
    settled = (("rail", "sandbox"), ("state", "settled"))
    assert samples[("paywarden_payments", settled)] == 1.0
    assert samples[("paywarden_webhook_delivery_failures_total", ())] == 0.0
    # 25.00 allowed, 500.00 waiting and 25.00 paid are each at least 20.00; 550 / 1000 > 50 %.
    assert samples[("paywarden_alerts_total", (("kind", "large_transaction"),))] == 3.0
    assert samples[("paywarden_alerts_total", (("kind", "budget_threshold"),))] == 1.0
    assert listed.status_code == 200
    assert [alert["kind"] for alert in listed.json()].count("large_transaction") == 3
    records = [json.loads(line) for line in output[0].splitlines() if line.startswith("{")]
    traced = [r for r in records if r.get("request_id") == "trace-abc.1"]
    access = [r for r in traced if r["logger"] == "uvicorn.access"]
    decided = {r.get("decision_id") for r in access if r["path"] == "/v1/authorizations"}
    assert held.json()["decision_id"] in decided, access
    deciding = [r for r in access if r["path"] in ("/v1/authorizations", "/v1/payments")]
    assert len(deciding) == 3 and {r.get("agent") for r in deciding} == {"agent-a"}
    assert agent not in output[0] and admin not in output[0]
