"""`policy backtest` and shadow mode on a PostgreSQL ledger: the same port, the same answers."""

from __future__ import annotations

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
budgets:
  - {id: daily, limit: 150, window: day}
"""
NEW = OLD.replace("limit: 150", "limit: 100")


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)


def _intent(amount: str, key: str) -> PaymentIntent:
    return PaymentIntent(
        agent="alice",
        action="payments.transfer",
        amount=amount,
        currency="USD",
        recipient="shop.example.com",
        idempotency_key=key,
    )


def test_backtest_and_shadow_on_postgres(pg_database: str, key_secret: str, tmp_path: Path) -> None:
    new = tmp_path / "new.yaml"
    new.write_text(NEW, encoding="utf-8")
    clock = FrozenClock("2026-03-02T10:00:00+00:00")
    with Warden.open(OLD, database=pg_database, clock=clock) as warden:
        assert warden.authorize(_intent("60", "a")).outcome == "allow"
        assert warden.authorize(_intent("60", "b")).outcome == "allow"
    backtest = _run("policy", "backtest", new, "--database", pg_database, "--json")
    assert backtest.exit_code == 1, backtest.output
    report = json.loads(backtest.output)
    assert report["replayed"] == 2
    assert report["counts"] == {"allow -> deny": 1}
    assert report["first_divergence"]["new"]["reason_code"] == "budget_exceeded"
    shadow_set = _run("policy", "shadow", "set", new, "--database", pg_database, "--actor", "alice")
    assert shadow_set.exit_code == 0, shadow_set.output
    with Warden.open(OLD, database=pg_database, clock=clock) as warden:
        decision = warden.authorize(_intent("20", "c"))
        assert decision.outcome == "allow"  # 140 of 150: enforced
        entries = warden.audit_trail(str(decision.decision_id))
        shadow = json.loads([e for e in entries if e.kind == "decision"][0].body)["shadow"]
        assert (shadow["outcome"], shadow["reason_code"]) == ("deny", "budget_exceeded")
        assert warden.shadow_stats().flips == {"allow -> deny": 1}
        assert [b.budget_id for b in warden.budgets()] == ["daily"]
    cleared = _run("policy", "shadow", "clear", "--database", pg_database, "--actor", "bob")
    assert cleared.exit_code == 0, cleared.output
