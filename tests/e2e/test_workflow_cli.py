"""`paywarden refund|sessions|disputes|scopes` over a real ledger file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from paywarden import FrozenClock, Warden
from paywarden.adapters.rails.sandbox import SandboxRail
from paywarden.entrypoints.cli.main import cli
from paywarden.testing import example_intent

POLICY = """
currency: USD
rules:
  - {id: pay, effect: allow, actions: ["payments.*"]}
"""


@pytest.fixture(autouse=True)
def _shared_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's sandbox rail sees what this test's sandbox did (a shared state file)."""
    monkeypatch.setenv("PAYWARDEN_SANDBOX_STATE", str(tmp_path / "sandbox.db"))


def _open(database: str) -> Warden:
    """A Warden on the ledger file the commands read, paying through the shared sandbox."""
    return Warden.open(
        POLICY, database=database, clock=FrozenClock(), rails={"sandbox": SandboxRail()}
    )


def _ledger_with_payment(tmp_path: Path) -> tuple[str, str]:
    database = str(tmp_path / "paywarden.db")
    with _open(database) as warden:
        outcome = warden.pay(example_intent("40.00"))
        warden.add_operator("alice", name="Alice")
    assert outcome.payment is not None
    return database, outcome.payment.payment_id


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_refund_then_refusal_when_nothing_is_left(tmp_path: Path) -> None:
    database, payment_id = _ledger_with_payment(tmp_path)
    code, out = _run("refund", payment_id, "--amount", "15.00", "--database", database, "--json")
    assert code == 0, out
    refund = json.loads(out)
    assert (refund["state"], refund["amount_minor"]) == ("settled", 1500)
    code, out = _run("refund", payment_id, "--database", database)
    assert code == 0 and "2500 minor USD" in out
    code, out = _run("refund", payment_id, "--database", database)
    assert code == 1 and "only a settled payment can be refunded" in out


def test_sessions_move_forward_only(tmp_path: Path) -> None:
    database, _ = _ledger_with_payment(tmp_path)
    base = ("--agent", "agent-a", "--session", "s1", "--database", database)
    assert _run("sessions", "start", *base)[0] == 0
    code, out = _run("sessions", "advance", *base, "--phase", "COMMIT")
    assert code == 1 and "cannot move from EXPLORE to COMMIT" in out
    assert "DECIDE" in _run("sessions", "advance", *base, "--phase", "decide")[1]
    code, out = _run("sessions", "show", *base, "--json")
    assert json.loads(out)["phase"] == "DECIDE"


def test_a_dispute_from_open_to_refunded(tmp_path: Path) -> None:
    database, payment_id = _ledger_with_payment(tmp_path)
    code, out = _run(
        "disputes", "open", payment_id, "--reason", "not delivered", "--actor", "agent:agent-a",
        "--database", database, "--json",
    )  # fmt: skip
    assert code == 0, out
    dispute_id = json.loads(out)["dispute_id"]
    code, out = _run(
        "disputes", "review", dispute_id, "--operator", "mallory", "--database", database
    )
    assert code == 1 and "not a registered operator" in out
    code, out = _run(
        "disputes", "resolve", dispute_id, "--outcome", "refund", "--operator", "alice",
        "--note", "refunded in full", "--database", database,
    )  # fmt: skip
    assert code == 0 and "refunded" in out
    code, out = _run("disputes", "show", dispute_id, "--database", database)
    shown = json.loads(out)
    assert shown["status"] == "refunded"
    assert shown["evidence"]["payment"]["payment_id"] == payment_id
    code, out = _run("disputes", "list", "--status", "refunded", "--database", database)
    assert dispute_id in out


def test_scopes_list_show_and_compensate_an_abandoned_scope(tmp_path: Path) -> None:
    database, _ = _ledger_with_payment(tmp_path)
    with _open(database) as warden:
        scope = warden.transaction("agent-a")
        scope.pay(example_intent("5.00"))
    code, out = _run("scopes", "list", "--status", "open", "--database", database)
    assert code == 0 and scope.scope_id in out
    code, out = _run("scopes", "compensate", scope.scope_id, "--database", database)
    assert code == 0 and "compensated" in out
    shown = json.loads(_run("scopes", "show", scope.scope_id, "--database", database)[1])
    assert [step["state"] for step in shown["steps"]] == ["compensated"]
