"""Crash recovery: a payment worker killed with SIGKILL at every step boundary of `Warden.pay`,
then a restart and a reconcile, never pays twice, never loses a hold and never leaks one.

Method: each worker is a real process (`tests/fakes/crash_worker.py`) with its own Warden on a
shared SQLite ledger and a sandbox rail on a shared state file, so what the "provider" saw
survives the crash like a real provider's would. The worker kills itself at the chosen boundary
(the kill is injected by wrapping functions inside the worker only). The test then opens a new
Warden (the restart), or runs the real `paywarden reconcile`, and checks per case:

- money moved at most once per key, and only under the authorization's key `pw_<hold id>`;
- the payment ends in the state the rail's answer implies, and its hold is captured or voided;
- an authorization killed before its payment row keeps a hold that expires after its TTL (or is
  paid exactly once when the agent retries with the same idempotency key);
- conservation: budget spent == captured == money moved, held == the holds still held;
- a second reconcile changes nothing, and the audit chain verifies.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fakes.crash_worker import BOUNDARIES
from paywarden import FrozenClock, PaymentIntent, Warden, limits
from paywarden.actions import rail_calls
from paywarden.actions.payments import NEVER_US
from paywarden.adapters.rails.sandbox import NOT_RECEIVED, STATE_ENV, SandboxRail
from paywarden.entrypoints.cli.main import cli
from paywarden.payee import parse_payee
from paywarden.rails import RailPayment, load_rail
from paywarden.testing import example_intent
from support.policies import policy_text
from support.wardens import no_sleep

WORKER = Path(__file__).resolve().parents[1] / "fakes" / "crash_worker.py"
NOW = "2026-01-05T12:00:00+00:00"  # when the workers run
LATER = "2026-01-05T12:30:00+00:00"  # when a restart happens, unless a test says otherwise
TTL = limits.hold_ttl_seconds
POLICY = policy_text("pay_100000_a_day")
KILLED = -9


@dataclass(frozen=True)
class Site:
    """The shared files every worker and every restart opens."""

    database: Path
    state: Path

    def config(self, boundary: str, payments: list[dict[str, str]], kill_at: int = 0) -> str:
        return json.dumps(
            {
                "policy": POLICY,
                "database": str(self.database),
                "state": str(self.state),
                "now": NOW,
                "boundary": boundary,
                "kill_at": kill_at,
                "payments": payments,
            }
        )


@pytest.fixture
def site(tmp_path: Path, database: Path) -> Site:
    Warden.open(POLICY, database=database).close()  # the schema, once, before any worker
    return Site(database, tmp_path / "sandbox.db")


def _payment(key: str, scenario: str = "success", amount: str = "10.00") -> dict[str, str]:
    return {"key": key, "scenario": scenario, "amount": amount}


def _events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def _work(site: Site, boundary: str, payments: list[dict[str, str]], kill_at: int = 0) -> Any:
    """Run one worker to its end (killed or not); its events and its exit status."""
    done = subprocess.run(
        [sys.executable, str(WORKER), site.config(boundary, payments, kill_at)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stderr == "", done.stderr
    return done.returncode, _events(done.stdout)


def _killed(site: Site, boundary: str, key: str, scenario: str = "success") -> str:
    """A worker killed at `boundary` while paying one 10.00 USD intent; the hold id."""
    code, events = _work(site, boundary, [_payment(key, scenario)])
    assert code == KILLED
    assert events[-1]["event"] == "kill" and events[-1]["boundary"] == boundary
    return str(events[-1]["hold_id"])


@contextmanager
def _restart(site: Site, clock: FrozenClock | None = None) -> Iterator[tuple[Warden, SandboxRail]]:
    rail = SandboxRail(state_path=site.state, sleep=no_sleep)
    with Warden.open(
        POLICY,
        database=site.database,
        clock=clock or FrozenClock(LATER),
        rails={"sandbox": rail},
        sleep=no_sleep,
    ) as warden:
        yield warden, rail


def _budget(warden: Warden) -> tuple[int, int]:
    rows = warden.budgets()
    assert len(rows) <= 1
    return (rows[0].spent_minor, rows[0].held_minor) if rows else (0, 0)


def _holds(site: Site) -> dict[str, tuple[str, int, int | None, int]]:
    connection = sqlite3.connect(site.database)
    try:
        rows = connection.execute(
            "SELECT hold_id, state, amount_minor, captured_minor, expires_us FROM holds"
        ).fetchall()
    finally:
        connection.close()
    return {row[0]: tuple(row[1:]) for row in rows}


def _assert_conserved(site: Site, warden: Warden, rail: SandboxRail) -> None:
    """Every movement of money is captured, or held while its outcome is open; nothing is
    captured that did not move; spent == captured and held == the holds still held, each held
    one either waiting for its payment's outcome or expiring on its own."""
    holds = _holds(site)
    moved = {hold_id: rail.moved(f"pw_{hold_id}") for hold_id in holds}
    assert set(moved.values()) <= {0, 1}  # never twice
    assert set(rail.keys()) <= {f"pw_{hold_id}" for hold_id in holds}  # only known keys
    open_payments = {row.hold_id for row in warden.payments(limit=1000) if row.state in OPEN}
    for hold_id, (state, amount, captured, expires_us) in holds.items():
        waiting = state == "held" and hold_id in open_payments
        if moved[hold_id]:
            assert (state == "captured" and captured == amount) or waiting, hold_id
        else:
            assert state != "captured", hold_id
        if state == "held":
            assert waiting == (expires_us == NEVER_US), hold_id
    captured_minor = sum(c or 0 for state, _a, c, _e in holds.values() if state == "captured")
    held_minor = sum(amount for state, amount, _c, _e in holds.values() if state == "held")
    assert _budget(warden) == (captured_minor, held_minor)
    if not open_payments:
        moved_minor = sum(holds[hold_id][1] for hold_id, count in moved.items() if count)
        assert captured_minor == moved_minor
    assert warden.verify_audit().ok


OPEN = ("submitted", "unknown")

# (boundary, scenario) -> (payment state after the crash, rail attempts, money moved,
#                          payment state after reconcile)
AFTER_PAYMENT_ROW = {
    ("after_begin", "success"): ("submitted", 0, 0, "failed"),
    ("in_rail", "success"): ("submitted", 0, 0, "failed"),
    ("after_call", "success"): ("submitted", 1, 1, "settled"),
    ("after_call", "timeout_after_send"): ("submitted", 1, 1, "settled"),
    ("after_call", "pending_then_settled"): ("submitted", 1, 1, "settled"),
    ("after_call", "error_then_success"): ("submitted", 2, 1, "settled"),
    ("after_call", "declined"): ("submitted", 1, 0, "failed"),
    ("after_call", "timeout_before_send"): ("submitted", 4, 0, "failed"),
    ("in_finish", "success"): ("submitted", 1, 1, "settled"),
    ("in_finish", "timeout_after_send"): ("submitted", 1, 1, "settled"),
    ("after_finish", "success"): ("settled", 1, 1, "settled"),
    ("after_finish", "timeout_after_send"): ("unknown", 1, 1, "settled"),
    ("after_finish", "pending_then_settled"): ("submitted", 1, 1, "settled"),
}


@pytest.mark.parametrize(("boundary", "scenario"), sorted(AFTER_PAYMENT_ROW))
def test_a_worker_killed_after_its_payment_row_is_settled_once_by_reconcile(
    site: Site, boundary: str, scenario: str
) -> None:
    crashed, attempts, moved, final = AFTER_PAYMENT_ROW[(boundary, scenario)]
    hold_id = _killed(site, boundary, "order-1", scenario)
    key = f"pw_{hold_id}"
    clock = FrozenClock(NOW)
    with _restart(site, clock) as (warden, rail):
        (row,) = warden.payments()
        assert (row.hold_id, row.rail_key, row.state) == (hold_id, key, crashed)
        assert (rail.attempts(key), rail.moved(key)) == (attempts, moved)
        is_open = crashed in OPEN
        assert warden.hold(hold_id).state == ("held" if is_open else "captured")
        clock.advance(TTL + 60)
        assert warden.expire_due() == 0  # an open outcome keeps its hold past the TTL
        assert _budget(warden) == ((0, 1000) if is_open else (1000, 0))
        _assert_conserved(site, warden, rail)

        changed = warden.reconcile()
        assert [(c.payment_id, c.state) for c in changed] == (
            [(row.payment_id, final)] if is_open else []
        )
        assert warden.payment(row.payment_id).state == final
        assert warden.hold(hold_id).state == ("captured" if final == "settled" else "voided")
        assert _budget(warden) == ((1000, 0) if final == "settled" else (0, 0))
        assert warden.reconcile() == []  # settled once; a second pass changes nothing
        assert (rail.attempts(key), rail.moved(key)) == (attempts, moved)  # never re-sent
        if final == "failed":  # the rail's own reason, or: it never received the key
            error = scenario if scenario == "declined" else NOT_RECEIVED
            assert warden.payment(row.payment_id).error == error
        _assert_conserved(site, warden, rail)


@pytest.mark.parametrize("boundary", ["after_authorize", "in_begin"])
def test_a_worker_killed_before_its_payment_row_leaves_a_hold_that_expires(
    site: Site, boundary: str
) -> None:
    hold_id = _killed(site, boundary, "order-1")
    clock = FrozenClock(NOW)
    with _restart(site, clock) as (warden, rail):
        assert warden.payments() == []  # the payment row never committed
        hold = warden.hold(hold_id)
        assert hold.state == "held" and hold.expires_us < NEVER_US
        assert rail.keys() == [] and rail.attempts(f"pw_{hold_id}") == 0
        assert warden.reconcile() == []  # nothing was sent, so nothing to ask about
        assert _budget(warden) == (0, 1000)
        _assert_conserved(site, warden, rail)
        clock.advance(TTL - 1)
        assert warden.expire_due() == 0
        clock.advance(2)
        assert warden.expire_due() == 1  # not lost, not leaked: released after its TTL
        assert warden.hold(hold_id).state == "expired"
        assert _budget(warden) == (0, 0)
        assert warden.reconcile() == []
        _assert_conserved(site, warden, rail)


@pytest.mark.parametrize("boundary", ["after_authorize", "in_begin", "after_begin"])
def test_the_agent_retrying_with_the_same_key_after_a_crash_pays_exactly_once(
    site: Site, boundary: str
) -> None:
    hold_id = _killed(site, boundary, "order-1")
    code, events = _work(site, "none", [_payment("order-1")])  # the restarted agent retries
    assert code == 0
    (paid,) = events
    assert paid["replayed"] and paid["hold_id"] == hold_id  # the same decision and hold
    with _restart(site) as (warden, rail):
        (row,) = warden.payments()
        # Before the row existed the retry pays; once it exists the retry returns it as is.
        expected = "submitted" if boundary == "after_begin" else "settled"
        assert paid["payment_id"] == row.payment_id and row.state == expected
        warden.reconcile()
        assert warden.reconcile() == []
        settled = warden.payment(row.payment_id).state == "settled"
        assert rail.moved(row.rail_key) == int(settled) == rail.attempts(row.rail_key)
        assert _budget(warden) == ((1000, 0) if settled else (0, 0))
        _assert_conserved(site, warden, rail)


def test_a_retry_after_the_orphaned_hold_expired_never_moves_uncounted_money(site: Site) -> None:
    hold_id = _killed(site, "after_authorize", "order-1")
    clock = FrozenClock(NOW)
    with _restart(site, clock) as (warden, rail):
        clock.advance(TTL + 1)
        assert warden.expire_due() == 1
        outcome = warden.pay(_intent("order-1"))
        assert outcome.decision.replayed and outcome.decision.hold_id == hold_id
        _assert_conserved(site, warden, rail)


def _intent(key: str, scenario: str = "success", amount: str = "10.00") -> PaymentIntent:
    return example_intent(amount, idempotency_key=key, metadata={"sandbox_scenario": scenario})


def test_reconcile_leaves_a_live_workers_fresh_payment_alone(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_call = rail_calls.call
    changed: list[object] = []
    with _restart(site) as (worker, rail), _restart(site) as (other, _other_rail):

        def call_after_a_reconcile(*args: Any) -> Any:
            changed.extend(other.reconcile())  # e.g. a gateway starting up, right now
            return real_call(*args)

        monkeypatch.setattr(rail_calls, "call", call_after_a_reconcile)
        outcome = worker.pay(_intent("order-1"))
        # Within the grace period reconcile does not ask the rail about a payment that has
        # no answer yet, so it cannot close the key under the worker: the send goes through.
        assert changed == []
        assert outcome.payment is not None and outcome.state == "settled"
        key = outcome.payment.rail_key
        assert (rail.attempts(key), rail.moved(key)) == (1, 1)
        assert worker.hold(outcome.payment.hold_id).state == "captured"
        assert _budget(worker) == (1000, 0)
        _assert_conserved(site, worker, rail)


SCENARIOS = (
    "success",
    "success",
    "timeout_after_send",
    "pending_then_settled",
    "error_then_success",
    "declined",
    "timeout_before_send",
)


def _plan(rng: random.Random, worker: int) -> tuple[str, list[dict[str, str]], int]:
    count = rng.randint(1, 4)
    jobs = [
        _payment(
            f"w{worker}-p{number}",
            rng.choice(SCENARIOS),
            f"{rng.randint(1, 50)}.{rng.randint(0, 99):02d}",
        )
        for number in range(count)
    ]
    return rng.choice(BOUNDARIES), jobs, rng.randrange(count)


@pytest.mark.parametrize("seed", [1, 2])
def test_workers_killed_at_random_boundaries_reconcile_to_exactly_what_moved(
    site: Site, seed: int
) -> None:
    rng = random.Random(seed)
    plans = [_plan(rng, worker) for worker in range(8)]
    processes = [
        subprocess.Popen(
            [sys.executable, str(WORKER), site.config(boundary, jobs, kill_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for boundary, jobs, kill_at in plans
    ]
    expired = 0
    for process, (boundary, jobs, kill_at) in zip(processes, plans, strict=True):
        stdout, stderr = process.communicate(timeout=60)
        assert stderr == ""
        assert process.returncode == (0 if boundary == "none" else KILLED)
        events = _events(stdout)
        paid = {"none": len(jobs), "after_finish": kill_at + 1}.get(boundary, kill_at)
        assert [e["event"] for e in events] == ["paid"] * paid + ["kill"] * (boundary != "none")
        expired += boundary in ("after_authorize", "in_begin")
    clock = FrozenClock(LATER)
    with _restart(site, clock) as (warden, rail):
        warden.reconcile()
        assert [row for row in warden.payments(limit=1000) if row.state in OPEN] == []
        assert warden.reconcile() == []
        _assert_conserved(site, warden, rail)
        clock.advance(TTL + 1)
        assert warden.expire_due() == expired  # the orphaned authorizations, and only those
        assert _budget(warden)[1] == 0
        _assert_conserved(site, warden, rail)


def _cli(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `paywarden` command in its own process, with the sandbox's state file."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from paywarden.entrypoints.cli.main import main; main()",
            *args,
            "--database",
            str(site.database),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**_environment(), STATE_ENV: str(site.state)},
    )


def _environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("PAYWARDEN")}


def test_paywarden_reconcile_on_restart_settles_every_crashed_worker_once(site: Site) -> None:
    orphan = _killed(site, "after_authorize", "order-1")
    unsent = _killed(site, "after_begin", "order-2")
    answered = _killed(site, "after_call", "order-3")
    rolled_back = _killed(site, "in_finish", "order-4", "timeout_after_send")

    first = _cli(site, "reconcile", "--json")
    assert (first.returncode, first.stderr) == (0, "")
    report = json.loads(first.stdout)
    changes = {c["hold_id"]: (c["previous_state"], c["state"]) for c in report["changed"]}
    assert changes == {
        unsent: ("submitted", "failed"),
        answered: ("submitted", "settled"),
        rolled_back: ("submitted", "settled"),
    }
    assert report["still_open"] == 0
    again = _cli(site, "reconcile")
    assert (again.returncode, again.stdout) == (0, "0 changed, 0 still open\n")

    clock = FrozenClock(NOW)
    with _restart(site, clock) as (warden, rail):
        assert warden.hold(orphan).state == "held"  # reconcile leaves authorizations alone
        assert _budget(warden) == (2000, 1000)
        _assert_conserved(site, warden, rail)
        clock.advance(TTL + 1)
        assert warden.expire_due() == 1
        assert _budget(warden) == (2000, 0)
        _assert_conserved(site, warden, rail)


def test_paywarden_reconcile_prints_each_change(site: Site) -> None:
    hold_id = _killed(site, "after_call", "order-1", "pending_then_settled")
    result = CliRunner().invoke(
        cli, ["reconcile", "--database", str(site.database)], env={STATE_ENV: str(site.state)}
    )
    assert result.exit_code == 0, result.output
    line, summary = result.output.splitlines()
    assert " submitted -> settled  10.00 USD  agent-a  sandbox  sbx_pay_" in line
    assert summary == "1 changed, 0 still open"
    with _restart(site) as (warden, _rail):
        assert warden.hold(hold_id).state == "captured"


def test_paywarden_payments_list_and_show(site: Site) -> None:
    code, _events_ = _work(
        site, "none", [_payment("order-1"), _payment("order-2", "declined", "2.50")]
    )
    assert code == 0
    runner = CliRunner()
    database = ["--database", str(site.database)]
    listed = runner.invoke(cli, ["payments", "list", "--json", *database])
    assert listed.exit_code == 0
    rows = sorted(json.loads(listed.output), key=lambda row: str(row["state"]))
    assert [(r["state"], r["amount_minor"]) for r in rows] == [("failed", 250), ("settled", 1000)]
    assert rows[1]["intent"]["metadata"] == {"sandbox_scenario": "success"}
    only = runner.invoke(cli, ["payments", "list", "--state", "settled", "--limit", "5", *database])
    assert only.exit_code == 0 and len(only.output.splitlines()) == 1
    assert " settled " in only.output and "10.00 USD" in only.output
    assert runner.invoke(cli, ["payments", "list", "--agent", "nobody", *database]).output == (
        "(no payments)\n"
    )
    shown = runner.invoke(cli, ["payments", "show", rows[0]["payment_id"], *database])
    assert shown.exit_code == 0
    assert "state:     failed" in shown.output and "error:     declined" in shown.output
    as_json = runner.invoke(cli, ["payments", "show", rows[1]["payment_id"], "--json", *database])
    assert json.loads(as_json.output) == rows[1]
    missing = runner.invoke(cli, ["payments", "show", "pay_nope", *database])
    assert missing.exit_code == 1 and "no payment `pay_nope`" in missing.output


def test_payment_commands_need_an_existing_ledger(tmp_path: Path) -> None:
    absent = str(tmp_path / "absent.db")
    for args in (["reconcile"], ["payments", "list"], ["payments", "show", "pay_1"]):
        result = CliRunner().invoke(cli, [*args, "--database", absent])
        assert result.exit_code == 2 and "no ledger at" in result.output
    assert not (tmp_path / "absent.db").exists()


# The durable sandbox -------------------------------------------------------------------------


def _request(key: str, scenario: str | None = "success") -> RailPayment:
    metadata = {"sandbox_scenario": scenario} if scenario else {}
    return RailPayment(
        "pay_1",
        key,
        "agent-a",
        "payments.transfer",
        1000,
        "USD",
        parse_payee("v.example.com"),
        metadata,
    )


def test_two_sandbox_instances_on_one_state_file_share_every_answer(tmp_path: Path) -> None:
    state = tmp_path / "sandbox.db"
    first, second = SandboxRail(state_path=state), SandboxRail(state_path=state)
    receipt = first.pay(_request("k1"))
    assert second.pay(_request("k1")) == receipt  # idempotent across instances
    assert (second.moved("k1"), second.attempts("k1"), second.keys()) == (1, 2, ["k1"])
    assert first.pay(_request("k2", "pending_then_settled")).status == "pending"
    assert second.status(_request("k2")).status == "settled"  # the progression is shared
    assert first.pay(_request("k2", "pending_then_settled")).status == "settled"
    refund = first.refund(_request("k1"), 400, "r1")
    assert second.refund(_request("k1"), 400, "r1") == refund  # refunded once
    assert (first.refunded("k1"), second.refunded("k1")) == (400, 400)
    assert second.status(_request("never")) == first.status(_request("never"))
    assert first.status(_request("never")).status == "failed"
    assert first.status(_request("never")).error == NOT_RECEIVED
    assert first.pay(_request("never")).status == "failed"  # the answer closed the key
    assert (first.moved("never"), first.keys()) == (0, ["k1", "k2", "never"])
    assert SandboxRail().moved("k1") == 0  # without a state file, memory as before


def test_the_registered_sandbox_reads_its_state_and_scenario_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "env-sandbox.db"
    SandboxRail(state_path=state).pay(_request("k1"))
    monkeypatch.setenv(STATE_ENV, str(state))
    monkeypatch.setenv("PAYWARDEN_SANDBOX_SCENARIO", "declined")
    rail = load_rail("sandbox")
    assert isinstance(rail, SandboxRail)
    assert (rail.state_path, rail.scenario, rail.moved("k1")) == (state, "declined", 1)
    assert rail.pay(_request("k3", None)).status == "failed"  # the environment's scenario
    monkeypatch.setenv("PAYWARDEN_SANDBOX_SCENARIO", "nonsense")
    with pytest.raises(ValueError, match="unknown sandbox scenario"):
        load_rail("sandbox")


@pytest.mark.parametrize(
    "scenario",
    sorted({*SCENARIOS, "insufficient_funds", "duplicate_settlement", "slow"}),
)
def test_a_durable_sandbox_answers_every_scenario_like_the_in_memory_one(
    tmp_path: Path, scenario: str
) -> None:
    seen = []
    for state in (None, tmp_path / "sandbox.db"):
        rail = SandboxRail(state_path=state, sleep=no_sleep)
        with Warden.open(
            POLICY,
            database=tmp_path / f"{state is None}.db",
            rails={"sandbox": rail},
            sleep=no_sleep,
        ) as warden:
            outcome = warden.pay(_intent("k", scenario))
            assert outcome.payment is not None
            warden.reconcile()
            final = warden.payment(outcome.payment.payment_id)
            key = outcome.payment.rail_key
            seen.append((outcome.state, final.state, rail.moved(key), rail.attempts(key)))
            assert _budget(warden) == ((1000, 0) if final.state == "settled" else (0, 0))
    assert seen[0] == seen[1]
