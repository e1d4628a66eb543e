"""`paywarden budgets --at TIME`: the windows that contain another instant.

Method: a real SQLite ledger written by a Warden on a frozen clock (a captured payment on one
day, a hold still open on the next), then the `budgets` command read through click's runner at
instants in each day, with and without `--at`, and with bad instants.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from paywarden import PaymentIntent, Warden
from paywarden.clock import FrozenClock
from paywarden.entrypoints.cli.main import cli
from support.policies import write_policy

POLICY = """
currency: USD
rules:
  - {id: pay, effect: allow, actions: [payments.transfer]}
budgets:
  - {id: daily, limit: 100.00, window: day, scope: agent}
"""


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)


def _ledger(tmp_path: Path) -> tuple[Path, Path]:
    policy, database = write_policy(tmp_path, POLICY), tmp_path / "pw.db"
    clock = FrozenClock("2026-03-02T10:00:00+00:00")
    with Warden.open(policy, database=database, clock=clock) as warden:
        first = warden.authorize(_intent("30.00"))
        warden.capture(first.hold_id)
        clock.set("2026-03-03T09:00:00+00:00")
        assert warden.authorize(_intent("12.50")).allowed  # left held
    return policy, database


def _intent(amount: str) -> PaymentIntent:
    return PaymentIntent(
        agent="agent-a",
        action="payments.transfer",
        amount=amount,
        currency="USD",
        recipient="vendor.example.com",
    )


def _rows(policy: Path, database: Path, *at: str) -> list[dict[str, object]]:
    result = _run("budgets", "--policy", policy, "--database", database, "--json", *at)
    assert result.exit_code == 0, result.output
    rows: list[dict[str, object]] = json.loads(result.output)
    return rows


def test_at_reads_the_window_that_contains_the_instant(tmp_path: Path) -> None:
    policy, database = _ledger(tmp_path)
    (day_one,) = _rows(policy, database, "--at", "2026-03-02T23:59:59+00:00")
    assert (day_one["spent_minor"], day_one["held_minor"], day_one["remaining_minor"]) == (
        3000,
        0,
        7000,
    )
    (day_two,) = _rows(policy, database, "--at", "2026-03-03T00:00:00Z")
    assert (day_two["spent_minor"], day_two["held_minor"]) == (0, 1250)
    assert day_two["window_start_us"] == 1_772_496_000_000_000  # 2026-03-03T00:00:00Z
    # An offset is honoured: 01:00 at +02:00 is still 2026-03-02 in UTC, the policy's zone.
    (shifted,) = _rows(policy, database, "--at", "2026-03-03T01:00:00+02:00")
    assert shifted["spent_minor"] == 3000
    assert _rows(policy, database, "--at", "2026-03-04T12:00:00+00:00") == []
    # Without --at: today's windows, in which this ledger has nothing.
    assert _rows(policy, database) == []
    table = _run(
        "budgets", "--policy", policy, "--database", database, "--at", "2026-03-05T00:00:00Z"
    )
    assert table.exit_code == 0, table.output
    assert "(no spending recorded in the windows at 2026-03-05T00:00:00+00:00)" in table.output


def test_a_bad_instant_is_refused_before_the_ledger_is_opened(tmp_path: Path) -> None:
    policy = write_policy(tmp_path, POLICY)
    database = tmp_path / "none.db"
    for text in ("yesterday", "2026-03-02T10:00:00"):
        result = _run("budgets", "--policy", policy, "--database", database, "--at", text)
        assert result.exit_code == 2
        assert f"--at: `{text}` is not an ISO 8601 instant with a UTC offset" in result.output
    assert not database.exists()


def test_a_late_capture_counts_in_the_window_of_its_authorization(tmp_path: Path) -> None:
    """docs/policy.md, Holds and windows: both claims, read back with `budgets --at`."""
    policy, database = write_policy(tmp_path, POLICY), tmp_path / "pw.db"
    clock = FrozenClock("2026-03-02T23:55:00+00:00")
    with Warden.open(policy, database=database, clock=clock) as warden:
        late = warden.authorize(_intent("40.00"))
        forgotten = warden.authorize(_intent("25.00"))
        clock.set("2026-03-03T00:05:00+00:00")  # the next day, within the 900 s lifetime
        warden.capture(late.hold_id, "30.00")
        clock.set("2026-03-03T00:20:01+00:00")  # past the forgotten hold's deadline
        (day_one,) = _rows(policy, database, "--at", "2026-03-02T12:00:00+00:00")
        assert (day_one["spent_minor"], day_one["held_minor"]) == (3000, 2500)  # not swept yet
        assert warden.expire_due() == 1
        states = [warden.hold(late.hold_id).state, warden.hold(forgotten.hold_id).state]
    assert states == ["captured", "expired"]
    (day_one,) = _rows(policy, database, "--at", "2026-03-02T12:00:00+00:00")
    assert (day_one["spent_minor"], day_one["held_minor"]) == (3000, 0)
    assert _rows(policy, database, "--at", "2026-03-03T12:00:00+00:00") == []
