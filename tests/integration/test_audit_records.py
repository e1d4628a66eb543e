"""What the Warden writes into the audit log (catalog AU-07, AU-09 in part, TW-05 in part).

Every decision and hold state change appends exactly one entry in the same transaction as the
change; a failing audit insert rolls the change back and the request is denied; secrets never
reach the log or the database file; entry times never go backwards; a policy load is recorded
when the version changes; periodic checkpoints are written and verify.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from paywarden import FrozenClock, StateConflictError, StoreError, Warden
from paywarden.adapters.storage.sqlite_log import SQLiteAudit
from paywarden.audit.chain import AuditEntry, verify
from paywarden.audit.checkpoint import (
    CheckpointError,
    check_signature,
    generate_key,
    latest_checkpoint,
    load_public_key,
    parse,
)
from paywarden.audit.redact import REDACTED
from paywarden.clock import to_us
from paywarden.warden import AuditOptions
from support.audit import entries
from support.intents import intent_builder
from support.ledger_file import count, rows
from support.wardens import OpenWarden

START = "2026-03-10T15:00:00+00:00"
pytestmark = pytest.mark.clock(START)
POLICY = """
currency: USD
rules:
  - id: approve-big
    effect: require_approval
    amount: {gt: 400}
  - id: allow-payments
    effect: allow
    actions: ["payments.*"]
budgets:
  - id: daily
    limit: "1000.00"
    window: day
velocity:
  - id: per-agent
    max_count: 1000
    window: 1h
    scope: agent
"""
LEDGER_TABLES = ("decisions", "holds", "hold_charges", "budget_counters", "velocity_events")

CARD = "4242 4242 4242 4242"
STRIPE_KEY = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
API_KEY = "ak-9f8e7d6c5b4a39281706"


_intent = intent_builder("25.00", agent="agent-1")


@pytest.fixture
def warden(open_warden: OpenWarden) -> Warden:
    return open_warden(POLICY)


def counts(database: Path) -> dict[str, int]:
    return {table: count(database, table) for table in (*LEDGER_TABLES, "audit_log")}


def counters(database: Path) -> list[tuple[object, ...]]:
    return rows(database, "SELECT * FROM budget_counters ORDER BY budget_id")


# One entry per decision and per state change, in the same transaction -----------------------


def test_every_decision_and_hold_change_appends_exactly_one_entry(
    warden: Warden, database: Path, clock: FrozenClock
) -> None:
    allowed = warden.authorize(_intent())
    pending = warden.authorize(_intent("500.00"))
    denied = warden.authorize(_intent("900.00"))  # over the daily budget with the others held
    keyed = warden.authorize(_intent("30.00", idempotency_key="k-1"))
    replay = warden.authorize(_intent("30.00", idempotency_key="k-1"))
    assert (allowed.outcome, pending.outcome, denied.outcome) == (
        "allow",
        "require_approval",
        "deny",
    )
    assert replay.replayed and replay.decision_id == keyed.decision_id
    assert allowed.hold_id and pending.hold_id and keyed.hold_id
    warden.capture(allowed.hold_id, "10.00")
    warden.void(pending.hold_id)
    with pytest.raises(StateConflictError):
        warden.void(pending.hold_id)  # a second resolution changes nothing, audits nothing
    clock.advance(3_600)
    assert warden.expire_due() == 1
    log = entries(database)
    assert [(entry.kind, entry.ref_id) for entry in log] == [
        ("policy.loaded", log[0].ref_id),
        ("decision", allowed.decision_id),
        ("approval.requested", pending.approval_id),
        ("decision", pending.decision_id),
        ("decision", denied.decision_id),
        ("decision", keyed.decision_id),
        ("hold.captured", allowed.hold_id),
        ("hold.voided", pending.hold_id),
        ("approval.voided", pending.approval_id),
        ("hold.expired", keyed.hold_id),
    ]
    assert verify(log).ok
    captured = json.loads(log[6].body)
    assert (captured["state"], captured["captured_minor"], captured["amount_minor"]) == (
        "captured",
        1000,
        2500,
    )
    # The decision index row points at its audit entry, which holds the decision record.
    with closing(sqlite3.connect(database)) as db:
        index = dict(db.execute("SELECT decision_id, audit_seq FROM decisions").fetchall())
    assert index == {entry.ref_id: entry.seq for entry in log if entry.kind == "decision"}
    recorded = json.loads(log[1].body)["decision"]
    assert (recorded["outcome"], recorded["hold_id"]) == ("allow", allowed.hold_id)
    assert warden.decision(str(allowed.decision_id)).outcome == "allow"


def test_a_policy_load_is_recorded_only_when_the_version_changes(
    database: Path, open_warden: OpenWarden
) -> None:
    other = POLICY.replace('limit: "1000.00"', 'limit: "2000.00"')
    versions_in_force = []
    for policy in (POLICY, POLICY, other, other, POLICY, "rules: [", "rules: ["):
        with open_warden(policy) as warden:
            versions_in_force.append(warden.policy.version if warden.policy else None)
    loads = [json.loads(entry.body) for entry in entries(database)]
    assert [load["status"] for load in loads] == ["loaded", "loaded", "rejected"]
    versions = [load["policy_version"] for load in loads]
    assert versions[0] != versions[1]
    # A restart with the older file does not roll the store back: the newer upload stands.
    assert versions_in_force[2:5] == [versions[1]] * 3
    # An invalid file is audited once (against the policy in force) and serves nothing.
    assert versions_in_force[5:] == [None, None]
    assert versions[2].startswith("invalid:")
    assert loads[2]["problems"] and loads[2]["previous_version"] == versions[1]
    kinds = [entry.kind for entry in entries(database)]
    assert kinds == ["policy.loaded", "policy.loaded", "policy.rejected"]
    assert verify(entries(database)).ok
    # Rolling back is an explicit upload, audited like any other.
    with Warden.open(None, database=database) as warden:
        assert warden.policy is not None and warden.policy.version == versions[1]
        warden.reload_policy(POLICY, actor="admin:test")
        assert warden.policy is not None and warden.policy.version == versions[0]
    assert [entry.kind for entry in entries(database)][-1] == "policy.loaded"


# AU-07: a failing audit insert rolls the change back and denies --------------------------------


@pytest.mark.parametrize("action", ["ABORT", "FAIL", "ROLLBACK"])
def test_a_failing_audit_insert_rolls_back_the_decision_and_denies(
    warden: Warden, database: Path, action: str
) -> None:
    held = warden.authorize(_intent("100.00"))
    assert held.outcome == "allow"
    before, budget = counts(database), counters(database)
    with closing(sqlite3.connect(database, isolation_level=None)) as db:
        db.execute(
            "CREATE TRIGGER audit_log_broken BEFORE INSERT ON audit_log"
            f" BEGIN SELECT RAISE({action}, 'audit sink failed'); END"
        )
    decision = warden.authorize(_intent("50.00"))
    assert (decision.outcome, decision.reason_code) == ("deny", "store_unavailable")
    assert decision.hold_id is None
    # A hold state change fails the same way: the hold stays held, the budget unchanged.
    assert held.hold_id is not None
    with pytest.raises(StoreError):
        warden.capture(held.hold_id)
    with pytest.raises(StoreError):
        warden.void(held.hold_id)
    assert counts(database) == before
    assert counters(database) == budget
    assert warden.hold(held.hold_id).state == "held"
    # Once the sink works again, so does everything else, and the chain has no gap.
    with closing(sqlite3.connect(database, isolation_level=None)) as db:
        db.execute("DROP TRIGGER audit_log_broken")
    assert warden.authorize(_intent("50.00")).outcome == "allow"
    warden.capture(held.hold_id)
    assert verify(entries(database)).ok
    assert counts(database)["audit_log"] == before["audit_log"] + 2


def test_an_exception_in_the_audit_insert_denies_with_internal_error(
    warden: Warden, database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warden.authorize(_intent())
    before, budget = counts(database), counters(database)

    def broken(self: SQLiteAudit, entry: AuditEntry) -> None:
        raise RuntimeError("audit sink failed")

    monkeypatch.setattr(SQLiteAudit, "append", broken)
    decision = warden.authorize(_intent("60.00"))
    assert (decision.outcome, decision.reason_code) == ("deny", "internal_error")
    assert counts(database) == before
    assert counters(database) == budget


# Secrets never reach the log or the file --------------------------------------------------------


def test_secrets_in_an_intent_never_reach_the_log_or_the_database_file(
    warden: Warden, database: Path
) -> None:
    decision = warden.authorize(
        _intent(
            purpose=f"card {CARD} for the March invoice",
            recipient_name=f"Bob, card {CARD.replace(' ', '-')} 123 12/28",
            metadata={"api_key": API_KEY, "note": f"use {STRIPE_KEY}", "ticket": "FIN-42"},
        )
    )
    assert decision.outcome == "allow" and decision.hold_id
    warden.capture(decision.hold_id)
    entry = entries(database)[1]
    body = json.loads(entry.body)
    assert body["redacted"] == [
        "$.intent.metadata.api_key",
        "$.intent.metadata.note",
        "$.intent.purpose",
        "$.intent.recipient_name",
    ]
    intent = body["intent"]
    assert intent["purpose"] == intent["recipient_name"] == REDACTED
    assert intent["metadata"] == {"api_key": REDACTED, "note": REDACTED, "ticket": "FIN-42"}
    assert (intent["amount_minor"], intent["recipient"]) == (2500, "vendor.example.com")
    warden.close()
    secrets = [CARD, CARD.replace(" ", ""), CARD.replace(" ", "-"), STRIPE_KEY, API_KEY]
    for entry in entries(database):
        for secret in secrets:
            assert secret not in entry.body
    files = [path for path in database.parent.iterdir() if path.name.startswith(database.name)]
    assert database in files
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, (path.name, secret)


def test_a_secret_is_redacted_before_any_rule_can_see_or_quote_it(
    database: Path, open_warden: OpenWarden
) -> None:
    """A `when` expression that failed on a secret could quote it in its error; the secret is
    removed at the boundary, so rules see `[redacted]` and no error can carry it."""
    policy = """
currency: USD
rules:
  - id: note-pattern
    effect: deny
    when: 'purpose.matches(metadata.note)'
  - id: allow-payments
    effect: allow
    actions: ["payments.*"]
"""
    note = f"{STRIPE_KEY}("  # an invalid regex: an error message would quote it
    with open_warden(policy) as warden:
        decision = warden.authorize(_intent(purpose="invoice", metadata={"note": note}))
    # The rule ran on `[redacted]` (a valid regex) instead: no error, and no secret in it.
    assert decision.reason_code == "denied_by_rule"
    assert all(rule.error is None for rule in decision.trace.rules)
    assert STRIPE_KEY not in repr(decision.to_dict())
    entry = entries(database)[1]
    assert STRIPE_KEY not in entry.body
    body = json.loads(entry.body)
    assert body["redacted"] == ["$.intent.metadata.note"]
    assert body["intent"]["metadata"]["note"] == REDACTED
    assert body["intent"]["secret_digest"]  # a keyed digest stands in for the secret


# TW-05: entry times never go backwards ----------------------------------------------------------


def test_audit_times_are_non_decreasing_when_the_clock_goes_backwards(
    warden: Warden, database: Path, clock: FrozenClock
) -> None:
    first = warden.authorize(_intent())
    high = to_us(clock.now())
    clock.advance(-3_600)
    second = warden.authorize(_intent())
    assert first.hold_id and second.hold_id
    clock.advance(-86_400)
    warden.capture(first.hold_id)
    warden.void(second.hold_id)
    clock.set("2026-03-10T16:00:00+00:00")
    warden.authorize(_intent())
    log = entries(database)
    assert [entry.kind for entry in log] == [
        "policy.loaded",
        "decision",
        "decision",
        "hold.captured",
        "hold.voided",
        "decision",
    ]
    times = [entry.created_us for entry in log]
    assert times == sorted(times)
    assert times[1:5] == [high] * 4  # clamped to the head while the clock was behind
    assert times[5] == to_us(clock.now()) > high  # following the clock again once it passed
    assert verify(log).ok


# Periodic and on-demand checkpoints -------------------------------------------------------------


def test_checkpoints_are_written_every_n_entries_and_each_verifies(
    tmp_path: Path, database: Path, clock: FrozenClock, open_warden: OpenWarden
) -> None:
    key, public = tmp_path / "audit.key", tmp_path / "audit.pub"
    generate_key(key, public)
    directory = tmp_path / "checkpoints"
    options = AuditOptions(signing_key=key, checkpoint_dir=directory, checkpoint_every=10)
    with open_warden(POLICY, audit=options) as warden:
        for _ in range(34):
            clock.advance(1)
            warden.authorize(_intent("1.00"))
        on_demand = warden.checkpoint()
        assert warden.verify_audit(check_signature(on_demand, load_public_key(public))).ok
    names = sorted(path.name for path in directory.iterdir())
    assert names == [f"checkpoint-{seq:012d}.json" for seq in (10, 20, 30, 35)]
    log = entries(database)
    assert len(log) == 35
    for path in directory.iterdir():
        checkpoint = check_signature(parse(path.read_text()), load_public_key(public))
        assert checkpoint.head_hash == log[checkpoint.seq - 1].entry_hash
        assert verify(log, checkpoint).ok
    assert latest_checkpoint(directory) == directory / "checkpoint-000000000035.json"


def test_a_checkpoint_needs_a_signing_key(warden: Warden, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no audit signing key"):
        warden.checkpoint()
    assert not list(tmp_path.glob("**/checkpoint-*.json"))
