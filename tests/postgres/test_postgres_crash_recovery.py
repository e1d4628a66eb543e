"""A gateway killed with SIGKILL between authorize and capture, on PostgreSQL: `paywarden
reconcile` run from another process settles every crashed payment exactly once.

The same real worker process as the SQLite crash suite (`tests/fakes/crash_worker.py`), here on
a shared PostgreSQL ledger: each worker kills itself at a step boundary of `Warden.pay`; the
reconcile is the real CLI in a process of its own (another "gateway"), then a restart checks
that money moved at most once and that budgets equal what was captured and held.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from paywarden import FrozenClock, Warden, limits
from paywarden.adapters.rails.sandbox import STATE_ENV, SandboxRail
from support.policies import policy_text
from support.wardens import no_sleep

WORKER = Path(__file__).resolve().parents[1] / "fakes" / "crash_worker.py"
NOW = "2026-01-05T12:00:00+00:00"
LATER = "2026-01-05T12:30:00+00:00"
POLICY = policy_text("pay_100000_a_day")
KILLED = -9


def _killed(database: str, state: Path, boundary: str, key: str, scenario: str) -> str:
    config = {
        "policy": POLICY,
        "database": database,
        "state": str(state),
        "now": NOW,
        "boundary": boundary,
        "kill_at": 0,
        "payments": [{"key": key, "scenario": scenario, "amount": "10.00"}],
    }
    done = subprocess.run(
        [sys.executable, str(WORKER), json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stderr == "", done.stderr
    assert done.returncode == KILLED
    events: list[dict[str, Any]] = [json.loads(line) for line in done.stdout.splitlines() if line]
    assert events[-1]["event"] == "kill" and events[-1]["boundary"] == boundary
    return str(events[-1]["hold_id"])


def _reconcile(database: str, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paywarden.entrypoints.cli.main", "reconcile", "--json",
         "--database", database],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, STATE_ENV: str(state)},
    )  # fmt: skip


def test_a_gateway_killed_between_authorize_and_capture_is_settled_once_by_another(
    pg_database: str, key_secret: str, tmp_path: Path
) -> None:
    state = tmp_path / "sandbox.db"
    Warden.open(POLICY, database=pg_database).close()
    orphan = _killed(pg_database, state, "after_authorize", "order-1", "success")
    unsent = _killed(pg_database, state, "after_begin", "order-2", "success")
    answered = _killed(pg_database, state, "after_call", "order-3", "success")
    rolled_back = _killed(pg_database, state, "in_finish", "order-4", "timeout_after_send")

    first = _reconcile(pg_database, state)
    assert (first.returncode, first.stderr) == (0, ""), first.stderr
    report = json.loads(first.stdout)
    changes = {c["hold_id"]: (c["previous_state"], c["state"]) for c in report["changed"]}
    assert changes == {
        unsent: ("submitted", "failed"),
        answered: ("submitted", "settled"),
        rolled_back: ("submitted", "settled"),
    }
    again = _reconcile(pg_database, state)
    assert json.loads(again.stdout)["changed"] == []  # settled once

    rail = SandboxRail(state_path=state, sleep=no_sleep)
    clock = FrozenClock(LATER)
    with Warden.open(
        POLICY, database=pg_database, clock=clock, rails={"sandbox": rail}, sleep=no_sleep
    ) as warden:
        holds = {h: warden.hold(h) for h in (orphan, unsent, answered, rolled_back)}
        assert {h: row.state for h, row in holds.items()} == {
            orphan: "held",  # reconcile leaves an authorization alone: it expires
            unsent: "voided",
            answered: "captured",
            rolled_back: "captured",
        }
        assert [rail.moved(f"pw_{h}") for h in (orphan, unsent, answered, rolled_back)] == [
            0, 0, 1, 1
        ]  # fmt: skip
        (budget,) = warden.budgets()
        assert (budget.spent_minor, budget.held_minor) == (2000, 1000)
        clock.advance(limits.hold_ttl_seconds + 1)
        assert warden.expire_due() == 1
        (budget,) = warden.budgets()
        assert (budget.spent_minor, budget.held_minor) == (2000, 0)
        assert warden.verify_audit().ok
