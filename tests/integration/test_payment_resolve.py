"""An operator settles or fails by hand a payment whose outcome its rail cannot tell: the hold
is captured or released once, audited with the actor and reason; any other state is refused
and nothing changes. Through Python and `paywarden payments resolve`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from paywarden import FrozenClock, StateConflictError, Warden
from paywarden.adapters.rails.sandbox import SandboxRail
from paywarden.entrypoints.cli.main import cli
from paywarden.testing import example_intent
from support.audit import entries
from support.wardens import no_sleep

POLICY = """
currency: USD
rules:
  - {id: pay, effect: allow, actions: ["payments.*"]}
budgets:
  - {id: daily, limit: 100, window: day, scope: agent}
"""


def _unknown_payment(warden: Warden, key: str) -> str:
    scenario = {"sandbox_scenario": "timeout_after_send"}  # the money moved; answer unknown
    outcome = warden.pay(example_intent("40.00", idempotency_key=key, metadata=scenario))
    assert outcome.payment is not None and outcome.payment.state == "unknown"
    return outcome.payment.payment_id


def _spent_held(warden: Warden) -> tuple[int, int]:
    (status,) = [row for row in warden.budgets() if row.scope_key == "agent-a"]
    return status.spent_minor, status.held_minor


@pytest.fixture
def opened(database: Path, clock: FrozenClock) -> tuple[Warden, SandboxRail]:
    rail = SandboxRail(sleep=no_sleep)
    warden = Warden.open(
        POLICY, database=database, clock=clock, rails={"sandbox": rail}, sleep=no_sleep
    )
    return warden, rail


def test_settling_by_hand_captures_and_failing_releases_the_hold(
    opened: tuple[Warden, SandboxRail], database: Path
) -> None:
    warden, _ = opened
    with warden:
        settled_id = _unknown_payment(warden, "k1")
        failed_id = _unknown_payment(warden, "k2")
        assert _spent_held(warden) == (0, 8000)
        row = warden.resolve_payment(
            settled_id,
            state="settled",
            actor="ops:ana",
            reason="seen on the rail",
            rail_payment_id="r-1",
        )
        assert (row.state, row.rail_payment_id) == ("settled", "r-1")
        warden.resolve_payment(failed_id, state="failed", actor="ops:ana", reason="never arrived")
        assert _spent_held(warden) == (4000, 0)
        with pytest.raises(StateConflictError):
            warden.resolve_payment(settled_id, state="failed", actor="ops:bob", reason="oops")
        assert warden.payment(settled_id).state == "settled" and _spent_held(warden) == (4000, 0)
    resolved = [json.loads(e.body) for e in entries(database) if e.kind == "payment.resolved"]
    assert [(r["from"], r["to"], r["actor"]) for r in resolved] == [
        ("unknown", "settled", "ops:ana"),
        ("unknown", "failed", "ops:ana"),
    ]


def test_payments_resolve_on_the_command_line(
    opened: tuple[Warden, SandboxRail], database: Path
) -> None:
    warden, _ = opened
    with warden:
        payment_id = _unknown_payment(warden, "k1")
    base = ["payments", "resolve", "--database", str(database), "--actor", "ops", "--reason", "r"]
    result = CliRunner().invoke(cli, [*base, "--state", "failed", payment_id])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{payment_id}: failed (40.00 USD")
    again = CliRunner().invoke(cli, [*base, "--state", "settled", payment_id])
    assert again.exit_code == 1 and "only an `unknown` or `submitted`" in again.output
    missing = CliRunner().invoke(cli, [*base, "--state", "settled", "pay_nope"])
    assert missing.exit_code == 1 and "no payment" in missing.output
