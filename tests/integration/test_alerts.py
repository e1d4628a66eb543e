"""Alerts from the policy's `alerts:` rules (issue 17), on a real SQLite file.

Method: a Warden with a frozen clock on a file; payments cross budget thresholds, a large
payment, a halt, a breaker opening (its audit entry), an approval left waiting, a tampered audit
log. Each alert must be raised exactly once per crossing (per budget, scope value, window and
threshold), audited as `alert.raised`, listed newest first, and queued in the outbox when webhooks
are on; a new window raises it again. The race test runs several processes, each with its own
Warden on the same file, crossing one budget together: one alert per threshold, whoever won.
"""

from __future__ import annotations

import json
import multiprocessing
import traceback
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from paywarden import FrozenClock, Warden
from paywarden.actions import alerts
from paywarden.audit import records
from paywarden.clock import to_us
from paywarden.errors import InvalidInputError
from paywarden.policy.compiler import check_policy
from paywarden.testing import example_intent
from paywarden.webhooks import WebhookOptions, verify_signature
from support.audit import bodies
from support.ledger_file import rows
from support.servers import LoopbackHTTPServer
from support.wardens import add_operators
from support.workers import reaped, reports

POLICY = """
currency: USD
rules:
  - {id: review, effect: require_approval, actions: ["payments.*"], amount: {gt: 600}}
  - {id: allow, effect: allow, actions: ["payments.*"]}
budgets:
  - {id: daily, limit: 1000, window: day, gates: {warn: 0.5}}
alerts:
  - {id: budget-80, kind: budget_threshold, percent: [80, 95], gates: true}
  - {id: big, kind: large_transaction, amount: 300, outcomes: [allow]}
  - {id: halted, kind: halt}
  - {id: rail-down, kind: breaker_opened}
  - {id: slow, kind: approval_waiting, after: 10m}
  - {id: audit, kind: audit_failure}
"""


def _open(path: Path, clock: FrozenClock | None = None) -> Warden:
    return Warden.open(POLICY, database=path, clock=clock or FrozenClock())


def _kinds(warden: Warden) -> list[tuple[str, str]]:
    return sorted(
        (row.rule_id, json.loads(row.body).get("threshold", "")) for row in warden.alerts()
    )


def test_budget_thresholds_fire_once_per_window(tmp_path: Path) -> None:
    clock = FrozenClock("2026-03-10T15:00:00+00:00")
    with _open(tmp_path / "pw.db", clock) as warden:
        assert warden.authorize(example_intent("400.00")).outcome == "allow"  # 40 %: none
        assert [row.rule_id for row in warden.alerts()] == ["big"]
        assert warden.authorize(example_intent("200.00")).outcome == "allow"  # 60 %: warn gate
        assert _kinds(warden) == [("big", ""), ("budget-80", "50%")]
        assert warden.authorize(example_intent("50.00")).outcome == "allow"  # 65 %: nothing new
        assert warden.authorize(example_intent("250.00")).outcome == "allow"  # 90 %: 80 %
        assert warden.authorize(example_intent("60.00")).outcome == "allow"  # 96 %: 95 %
        assert warden.authorize(example_intent("40.00")).outcome == "allow"  # 100 %: nothing new
        fired = [k for k in _kinds(warden) if k[0] == "budget-80"]
        assert fired == [("budget-80", "50%"), ("budget-80", "80%"), ("budget-80", "95%")]
        clock.advance(hours=24)  # a new day: the budget's window starts over
        assert warden.authorize(example_intent("850.00")).outcome == "require_approval"
        newest = warden.alerts("budget_threshold")
        assert sorted(json.loads(row.body)["threshold"] for row in newest[:2]) == ["50%", "80%"]
        assert len(warden.alerts("budget_threshold")) == 5
        audited = bodies(tmp_path / "pw.db", "alert.raised")
    assert len(audited) == 6  # 5 budget alerts; 1 large payment (850 was not allowed)
    assert {body["kind"] for body in audited} == {"budget_threshold", "large_transaction"}
    first = audited[0]
    assert first["rule_id"] == "big" and first["details"]["amount_minor"] == 40_000
    assert "vendor.example.com" in first["text"] and first["type"] == "alert.raised"


def test_the_sweep_raises_halts_breakers_and_waiting_approvals_once(tmp_path: Path) -> None:
    clock = FrozenClock("2026-03-10T15:00:00+00:00")
    with _open(tmp_path / "pw.db", clock) as warden:
        add_operators(warden)
        assert warden.sweep_alerts() == []  # the first sweep starts at the audit head
        pending = warden.authorize(example_intent("700.00"))
        assert pending.outcome == "require_approval"
        warden.halt("agent-b", reason="runaway loop", actor="alice")
        with warden.runtime.store.write() as tx:  # as `rail_calls.breaker_record` writes it
            body: dict[str, object] = {"actor": "system", "rail": "stripe"}
            records.append(tx, to_us(clock.now()), "breaker.opened", "stripe", body)
        raised = warden.sweep_alerts()
        assert sorted(row.kind for row in raised) == ["breaker_opened", "halt"]
        assert warden.sweep_alerts() == []  # nothing new: nothing twice
        clock.advance(minutes=11)
        (waiting,) = warden.sweep_alerts()
        assert waiting.kind == "approval_waiting" and waiting.ref_id == pending.approval_id
        assert "waited 11 min" in waiting.text
        clock.advance(minutes=1)
        assert warden.sweep_alerts() == []
        halt = next(row for row in raised if row.kind == "halt")
        assert "agent-b" in halt.text and "runaway loop" in halt.text


def test_a_failed_audit_verification_raises_one_alert(tmp_path: Path) -> None:
    database = tmp_path / "pw.db"
    with _open(database) as warden:
        warden.authorize(example_intent("10.00"))
        with warden.runtime.store.write() as tx:  # tamper: one entry's body changes
            tx.connection.execute("DROP TRIGGER audit_log_no_update")  # type: ignore[attr-defined]
            tx.connection.execute(  # type: ignore[attr-defined]
                "UPDATE audit_log SET body = CAST('{}' AS BLOB) WHERE seq = 1"
            )
        assert not warden.verify_audit().ok
        assert not warden.verify_audit().ok
        (alert,) = warden.alerts("audit_failure")
    assert alert.ref_id == "audit:1" and "entry 1" in alert.text


def test_a_rate_spike_alerts_once_per_agent_and_window(tmp_path: Path) -> None:
    policy = (
        "rules: [{id: allow, effect: allow}]\n"
        "anomaly: {rate_window: 5m, rate_min: 3}\n"
        "alerts: [{id: spike, kind: rate_spike}]\n"
    )
    clock = FrozenClock("2026-03-10T15:00:00+00:00")
    with Warden.open(policy, database=tmp_path / "pw.db", clock=clock) as warden:
        for _ in range(3):  # 3 decisions in 5 minutes: not above `rate_min`
            warden.authorize(example_intent("1.00"))
        assert warden.alerts() == []
        decisions = [warden.authorize(example_intent("1.00")) for _ in range(3)]
        assert all(d.trace.anomaly is not None and d.trace.anomaly.rate_spike for d in decisions)
        (first,) = warden.alerts()  # once for agent-a in this window, not per decision
        assert first.ref_id == decisions[0].decision_id and "rate spike" in first.text
        warden.authorize(example_intent("1.00", agent="agent-b"))  # agent-b: no spike
        clock.advance(minutes=5)
        for _ in range(4):
            warden.authorize(example_intent("1.00"))
        assert len(warden.alerts("rate_spike")) == 2  # a new window: once more


def test_alert_text_quoting_agents_is_inert(tmp_path: Path) -> None:
    with _open(tmp_path / "pw.db") as warden:
        warden.authorize(example_intent("400.00", recipient="channel@here.example.com"))
        (alert,) = warden.alerts("large_transaction")
    assert "@" not in alert.text  # no `@here` mention in a chat tool
    assert "channel\uff20here.example.com" in alert.text
    assert alerts.inert("<!channel> a\nb & c") == "&lt;!channel&gt; a b &amp; c"


def test_alert_events_go_to_the_outbox_when_webhooks_are_on(tmp_path: Path) -> None:
    database = tmp_path / "pw.db"
    with _open(database) as warden:
        with warden.runtime.store.write() as tx:
            tx.meta.set("webhooks", "on")
        warden.authorize(example_intent("400.00"))
    (event,) = [json.loads(body) for (body,) in rows(database, "SELECT body FROM outbox")]
    assert event["type"] == "alert.raised" and event["kind"] == "large_transaction"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{id: a, kind: budget_threshold}", "give `percent`"),
        ("{id: a, kind: budget_threshold, percent: [80], budgets: [nope]}", "no budget `nope`"),
        ("{id: a, kind: nope}", "`kind` must be one of"),
        ("{id: a, kind: halt, after: 5m}", "unknown key `after`"),
        ("{id: a, kind: approval_waiting}", "`after` must be a duration"),
        ("{id: a, kind: large_transaction, amount: 10, outcomes: [maybe]}", "`outcomes` are"),
        ("{kind: halt}", "unique `id`"),
    ],
)
def test_invalid_alert_rules_do_not_compile(entry: str, message: str) -> None:
    text = "rules: [{id: r, effect: allow}]\nbudgets: [{id: d, limit: 5, window: day}]\n"
    compiled, report = check_policy(text + f"alerts:\n  - {entry}\n")
    assert compiled is None
    assert any(message in problem.message for problem in report.errors), report.errors


# Several processes on one file -------------------------------------------------------------

RACE_WORKERS = 6
RACE_PAYMENTS = 8  # per worker: 48 payments of 25.00 against 1000.00 cross every threshold


def _race_worker(index: int, database: str, barrier: Any, results: Any) -> None:
    try:
        clock = FrozenClock("2026-03-10T15:00:00+00:00")
        with _open(Path(database), clock) as warden:
            barrier.wait(timeout=60)
            outcomes = [
                warden.authorize(example_intent("25.00", agent=f"agent-{index}")).outcome
                for _ in range(RACE_PAYMENTS)
            ]
        results.put((index, outcomes, None))
    except BaseException:
        results.put((index, [], traceback.format_exc()))


@pytest.mark.slow
def test_racing_processes_raise_each_threshold_once(tmp_path: Path) -> None:
    database = tmp_path / "pw.db"
    _open(database).close()  # migrate once, before the race
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["paywarden.warden"])
    barrier = context.Barrier(RACE_WORKERS)
    results = context.Queue()
    processes = [
        context.Process(target=_race_worker, args=(index, str(database), barrier, results))
        for index in range(RACE_WORKERS)
    ]
    with reaped(processes, results, join_seconds=60):
        for process in processes:
            process.start()
        outcomes, errors = reports(processes, results, 120, "a racing worker")
    assert not errors, errors[0]
    assert outcomes.count("allow") == 40  # 1000.00 / 25.00
    thresholds = rows(
        database, "SELECT json_extract(body, '$.threshold') FROM alerts ORDER BY created_us"
    )
    assert sorted(value for (value,) in thresholds) == ["50%", "80%", "95%"]
    assert len(bodies(database, "alert.raised")) == 3
    assert alerts.KIND == "alert.raised"


# Delivery to a Slack-compatible receiver -----------------------------------------------------


class _Receiver(LoopbackHTTPServer):
    """Records each POST (headers, body) and answers 200."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler, poll_seconds=0.02)


def test_a_slack_destination_gets_text_and_blocks_signed(tmp_path: Path) -> None:
    receiver = _Receiver()
    secret = "whsec_alerts_0123456789"
    url = f"http://127.0.0.1:{receiver.port}/services/T000/B000/XXXX"
    options = WebhookOptions(url=url, secret=secret, format="slack", poll_seconds=60)
    try:
        with Warden.open(POLICY, database=tmp_path / "pw.db", webhook=options) as warden:
            # 85 %: the warn gate and 80 %; over 600.00 it waits for approval (a third event)
            warden.authorize(example_intent("850.00"))
            assert warden.deliver_webhooks() == 3
    finally:
        receiver.close()
    texts = []
    for headers, body in receiver.received:
        assert verify_signature(secret, headers["X-Paywarden-Signature"], body)
        message = json.loads(body)
        assert set(message) == {"text", "blocks"}
        section, context = message["blocks"]
        assert section == {"type": "section", "text": {"type": "mrkdwn", "text": message["text"]}}
        event = headers["X-Paywarden-Event"]
        assert f"paywarden {event}" in context["elements"][0]["text"]
        if event == "alert.raised":
            texts.append(message["text"])
        else:
            assert event == "approval.requested" and "Approval" in message["text"]
    assert sorted(texts) == [
        "Budget daily (global) reached 80%: 85% used",
        "Budget daily (global) reached the warn gate (50%): 85% used",
    ]
    with pytest.raises(InvalidInputError, match="format"):
        WebhookOptions(url=url, secret=secret, format="teams")
