"""`paywarden policy backtest`: recorded decisions replayed under a new policy, read-only."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from click.testing import CliRunner, Result

from paywarden import PaymentIntent
from paywarden.clock import FrozenClock
from paywarden.entrypoints.cli.main import cli
from paywarden.warden import Warden

OLD = """
currency: USD
rules:
  - {id: allow-small, effect: allow, actions: [payments.transfer], amount: {lte: 100}}
  - {id: approve-large, effect: require_approval, actions: [payments.transfer], amount: {gt: 100}}
budgets:
  - {id: daily, limit: 500, window: day}
"""
# Tighter on amounts, and a rule that reads the purpose (redacted in one record).
NEW = """
currency: USD
rules:
  - {id: allow-small, effect: allow, actions: [payments.transfer], amount: {lte: 50}}
  - id: deny-secret-purpose
    effect: deny
    when: 'purpose == "launch codes"'
  - {id: approve-large, effect: require_approval, actions: [payments.transfer], amount: {gt: 100}}
budgets:
  - {id: daily, limit: 500, window: day}
"""
# Looser: a budget of 100 a day, but every transfer allowed.
LOOSE = """
currency: USD
rules:
  - {id: allow-all, effect: allow, actions: [payments.transfer]}
budgets:
  - {id: daily, limit: 100, window: day}
"""


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)


def _intent(agent: str, amount: str, purpose: str | None = None) -> PaymentIntent:
    return PaymentIntent(
        agent=agent,
        action="payments.transfer",
        amount=amount,
        currency="USD",
        recipient="shop.example.com",
        purpose=purpose,
    )


def _ledger(tmp_path: Path) -> Path:
    """A ledger with five decisions over two days: 80 allowed and captured, 90 allowed and
    voided, 60 allowed, 200 pending approval, and 30 with a secret in its purpose."""
    database = tmp_path / "ledger.db"
    policy = tmp_path / "old.yaml"
    policy.write_text(OLD, encoding="utf-8")
    clock = FrozenClock("2026-03-02T10:00:00+00:00")
    with Warden.open(str(policy), database=database, clock=clock) as warden:
        first = warden.authorize(_intent("alice", "80"))
        clock.advance(60)
        warden.capture(str(first.hold_id))
        clock.advance(60)
        second = warden.authorize(_intent("bob", "90"))
        clock.advance(60)
        warden.void(str(second.hold_id))
        clock.advance(3600)
        warden.authorize(_intent("alice", "60"))
        clock.advance(60)
        assert warden.authorize(_intent("bob", "200")).outcome == "require_approval"
        clock.set("2026-03-03T09:00:00+00:00")
        token = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
        secret = warden.authorize(_intent("carol", "30", purpose=f"pay with {token}"))
        assert secret.outcome == "allow"
    return database


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_flips_are_counted_by_kind_money_agent_and_reason(tmp_path: Path) -> None:
    database = _ledger(tmp_path)
    new = tmp_path / "new.yaml"
    new.write_text(NEW, encoding="utf-8")
    before = _digest(database)
    result = _run("policy", "backtest", new, "--database", database, "--json")
    assert result.exit_code == 1, result.output  # flips, none towards allowing
    report = json.loads(result.output)
    assert report["replayed"] == 4 and report["not_replayable"] == 1
    assert report["counts"] == {"allow -> deny": 3}
    assert report["money_minor"] == {"allow -> deny": {"USD": 80_00 + 90_00 + 60_00}}
    assert report["by_agent"] == {"alice": {"allow -> deny": 2}, "bob": {"allow -> deny": 1}}
    assert report["by_reason"] == {"no_rule_matched": {"allow -> deny": 3}}
    first = report["first_divergence"]
    assert first["agent"] == "alice" and first["amount_minor"] == 80_00
    assert first["at"] == "2026-03-02T10:00:00+00:00"
    assert first["old"]["rule_ids"] == ["allow-small"] and first["new"]["rule_ids"] == []
    skipped = report["skipped"][0]
    assert skipped["agent"] == "carol"
    assert "reads purpose, redacted in the record" in skipped["not_replayable"]
    assert _digest(database) == before  # read-only on the ledger


def test_the_simulated_ledger_follows_the_holds_and_the_clock(tmp_path: Path) -> None:
    """Under a 100-a-day budget: 80 is captured, the voided 90 frees its money again, so 60
    is over the budget (80 + 60); a day later the budget is fresh."""
    database = _ledger(tmp_path)
    loose = tmp_path / "loose.yaml"
    loose.write_text(LOOSE, encoding="utf-8")
    result = _run("policy", "backtest", loose, "--database", database, "--json")
    report = json.loads(result.output)
    assert result.exit_code == 1, result.output  # flips, none towards allowing
    flips = {flip["amount_minor"]: flip for flip in report["flipped"]}
    assert flips[90_00]["kind"] == "allow -> deny"  # 80 still held when 90 came
    assert flips[90_00]["new"]["reason_code"] == "budget_exceeded"
    assert flips[60_00]["kind"] == "allow -> deny"
    assert flips[200_00]["kind"] == "require_approval -> deny"
    assert 30_00 not in flips  # the next day: allowed as recorded (purpose not read)
    assert report["not_replayable"] == 0


def test_a_flip_towards_allowing_exits_3(tmp_path: Path) -> None:
    database = _ledger(tmp_path)
    wide = tmp_path / "wide.yaml"
    wide.write_text(LOOSE.replace("limit: 100", "limit: 1000"), encoding="utf-8")
    result = _run("policy", "backtest", wide, "--database", database, "--json")
    assert result.exit_code == 3, result.output
    report = json.loads(result.output)
    assert report["counts"] == {"require_approval -> allow": 1}
    assert report["exit_status"] == 3


def test_since_and_until_select_the_entries_and_text_output_reads(tmp_path: Path) -> None:
    database = _ledger(tmp_path)
    new = tmp_path / "new.yaml"
    new.write_text(NEW, encoding="utf-8")
    result = _run(
        "policy",
        "backtest",
        new,
        "--database",
        database,
        "--since",
        "2026-03-02T10:30:00+00:00",
        "--until",
        "2026-03-03T00:00:00+00:00",
    )
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("replayed 2 decisions under policy ")
    assert lines[0].endswith("1 flipped, 0 not replayable")
    assert "  allow -> deny: 1 (60.00 USD)" in lines
    assert "  agent alice: allow -> deny: 1" in lines
    assert any(line.startswith("first divergence: seq ") for line in lines)


def test_the_same_policy_has_no_flips_and_bad_input_exits_2(tmp_path: Path) -> None:
    database = _ledger(tmp_path)
    old = tmp_path / "old.yaml"
    same = _run("policy", "backtest", old, "--database", database)
    assert same.exit_code == 0, same.output
    assert "no decision flips" in same.output
    missing = _run("policy", "backtest", old, "--database", tmp_path / "none.db")
    assert missing.exit_code == 2 and "no ledger at" in missing.output
    assert not (tmp_path / "none.db").exists()
    naive = _run("policy", "backtest", old, "--database", database, "--since", "2026-03-02")
    assert naive.exit_code == 2 and "needs a UTC offset" in naive.output


def test_sessions_and_halts_are_replayed_as_the_log_shows(tmp_path: Path) -> None:
    """Under a policy that requires a session phase, the same policy replays without a flip
    only if the session's phases and the halt are replayed at their times."""
    policy = tmp_path / "sessions.yaml"
    policy.write_text(OLD + "sessions: {required: true}\n", encoding="utf-8")
    database = tmp_path / "sessions.db"
    clock = FrozenClock("2026-03-02T10:00:00+00:00")
    with Warden.open(str(policy), database=database, clock=clock) as warden:
        warden.add_operator("ops", name="Ops")
        warden.start_session("alice", "s1")
        in_explore = warden.authorize(_intent("alice", "10").replace(session_id="s1"))
        assert in_explore.reason_code == "phase_not_allowed"
        warden.advance_phase("alice", "s1", "DECIDE")
        warden.advance_phase("alice", "s1", "COMMIT")
        clock.advance(60)
        warden.halt("alice", reason="incident", actor="ops")
        halted = warden.authorize(_intent("alice", "20").replace(session_id="s1"))
        assert halted.reason_code == "halted"
        clock.advance(60)
        warden.resume("alice", actor="ops")
        allowed = warden.authorize(_intent("alice", "30").replace(session_id="s1"))
        assert allowed.outcome == "allow"
    result = _run("policy", "backtest", policy, "--database", database, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["replayed"] == 3 and report["flips"] == 0


# policy shadow ---------------------------------------------------------------------------------


def test_shadow_set_show_and_clear_through_the_cli(tmp_path: Path) -> None:
    database = _ledger(tmp_path)
    new = tmp_path / "new.yaml"
    new.write_text(NEW, encoding="utf-8")
    assert _run("policy", "shadow", "show", "--database", database).output == "no shadow policy\n"
    set_result = _run("policy", "shadow", "set", new, "--database", database, "--actor", "alice")
    assert set_result.exit_code == 0, set_result.output
    assert set_result.output.startswith("shadow policy set: version sha256:")
    shown = json.loads(_run("policy", "shadow", "show", "--database", database, "--json").output)
    assert shown["rules"] == ["allow-small", "deny-secret-purpose", "approve-large"]
    # Another process deciding on the same ledger records the shadow outcome.
    with Warden.open(str(tmp_path / "old.yaml"), database=database) as warden:
        decision = warden.authorize(_intent("dave", "70"))
        assert decision.outcome == "allow"
        entry = [e for e in warden.audit_trail(str(decision.decision_id)) if e.kind == "decision"]
        shadow = json.loads(entry[0].body)["shadow"]
        assert shadow["policy_version"] == shown["version"]
        assert (shadow["outcome"], shadow["reason_code"]) == ("deny", "no_rule_matched")
        kinds = [e.kind for e in warden.audit_entries(limit=1000)]
    assert kinds.count("policy.shadow_set") == 1
    cleared = _run("policy", "shadow", "clear", "--database", database, "--actor", "bob")
    assert cleared.exit_code == 0 and cleared.output == "shadow policy cleared\n"
    again = _run("policy", "shadow", "clear", "--database", database, "--actor", "bob")
    assert again.exit_code == 1 and again.output == "no shadow policy was set\n"


def test_shadow_set_refuses_an_invalid_policy_and_a_missing_ledger(tmp_path: Path) -> None:
    database = _ledger(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {id: x, effect: maybe}\n", encoding="utf-8")
    before = _digest(database)
    refused = _run("policy", "shadow", "set", bad, "--database", database, "--actor", "alice")
    assert refused.exit_code == 1
    assert "`effect` must be deny, require_approval or allow" in refused.output
    assert _digest(database) == before
    good = tmp_path / "old.yaml"
    missing = _run(
        "policy", "shadow", "set", good, "--database", tmp_path / "none.db", "--actor", "a"
    )
    assert missing.exit_code == 2 and "no ledger at" in missing.output
    assert not (tmp_path / "none.db").exists()
