"""Model-based test of the spend ledger (catalog CB-09, "VOPR-lite").

A Hypothesis `RuleBasedStateMachine` drives a file-backed Warden with a `FrozenClock` through
random authorizations (USD and EUR, two agents), full and partial captures, voids, expiry sweeps,
clock advances and restarts, next to a reference model written in plain Python. After every step
the ledger read straight from the SQLite file must equal the model and satisfy the budget
invariants:

- every counter row has `0 <= spent`, `0 <= held` and `spent + held <= limit` (the limit is never
  lowered here);
- `held` is the sum of the charges of the open holds in that counter, and `spent` the sum of the
  captured charges;
- every hold is in exactly one state, and never changes once it has left `held`.

A failure prints the falsifying sequence of steps and the seed to replay it.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
)

from paywarden import FrozenClock, PaymentIntent, StateConflictError, Warden

POLICY = """
currency: USD
timezone: UTC
fx:
  as_of: "2026-01-01"
  rates: {"EUR/USD": "1.08"}
rules:
  - id: allow-payments
    effect: allow
    actions: ["payments.*"]
budgets:
  - id: daily
    limit: "100.00"
    currency: USD
    window: day
  - id: per-agent
    limit: "150.00"
    currency: USD
    window: lifetime
    scope: agent
"""
LIMITS = {"daily": 10_000, "per-agent": 15_000}
EUR_TO_USD = Fraction(108, 100)
HOLD_TTL_SECONDS = 600
SWEEP_PER_AUTHORIZE = 16  # limits.expire_per_authorize_max
START = datetime.fromisoformat("2026-01-05T20:00:00+00:00")
EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")

CounterKey = tuple[str, str, int]  # (budget_id, scope_key, window_start_us)


def _us(instant: datetime) -> int:
    delta = instant - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _ceil(value: Fraction) -> int:
    return -((-value.numerator) // value.denominator)


def _text(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


@dataclass
class ModelHold:
    agent: str
    amount_minor: int
    currency: str
    expires_us: int
    charges: dict[CounterKey, int]
    state: str = "held"
    captured_minor: int | None = None

    def captured_charges(self) -> dict[CounterKey, int]:
        """Each counter's share of a capture: rounded up, never more than the charge."""
        if self.state != "captured" or self.captured_minor is None:
            return {}
        return {
            key: min(_ceil(Fraction(charge * self.captured_minor, self.amount_minor)), charge)
            for key, charge in self.charges.items()
        }


@dataclass
class Model:
    now: datetime = START
    holds: dict[str, ModelHold] = field(default_factory=dict)

    @property
    def now_us(self) -> int:
        return _us(self.now)

    def due(self) -> list[str]:
        return [
            hold_id
            for hold_id, hold in self.holds.items()
            if hold.state == "held" and hold.expires_us <= self.now_us
        ]

    def expire(self, hold_ids: list[str]) -> None:
        for hold_id in hold_ids:
            self.holds[hold_id].state = "expired"

    def counters(self) -> dict[CounterKey, tuple[int, int]]:
        """(spent, held) per counter, from the holds alone."""
        totals: dict[CounterKey, tuple[int, int]] = {}
        for hold in self.holds.values():
            captured = hold.captured_charges()
            for key, charge in hold.charges.items():
                spent, held = totals.get(key, (0, 0))
                if hold.state == "held":
                    held += charge
                spent += captured.get(key, 0)
                totals[key] = (spent, held)
        return totals

    def charges_for(self, agent: str, amount_minor: int, currency: str) -> dict[CounterKey, int]:
        charge = amount_minor if currency == "USD" else max(_ceil(amount_minor * EUR_TO_USD), 1)
        day_start = self.now.replace(hour=0, minute=0, second=0, microsecond=0)
        return {("daily", "*", _us(day_start)): charge, ("per-agent", agent, 0): charge}


class LedgerMachine(RuleBasedStateMachine):
    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="paywarden-sm-"))
        self.database = self.directory / "ledger.db"
        self.clock = FrozenClock(START)
        self.warden = self._open()
        self.reader = sqlite3.connect(self.database)
        self.model = Model()
        self.terminal_seen: dict[str, tuple[str, int | None]] = {}

    def _open(self) -> Warden:
        return Warden.open(
            POLICY,
            database=self.database,
            clock=self.clock,
            hold_ttl_seconds=HOLD_TTL_SECONDS,
        )

    def teardown(self) -> None:
        self.warden.close()
        self.reader.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # Rules ----------------------------------------------------------------------------------

    @precondition(lambda self: len(self.model.due()) <= SWEEP_PER_AUTHORIZE)
    @rule(
        target=holds,
        agent=st.sampled_from(["agent-a", "agent-b"]),
        amount_minor=st.integers(min_value=1, max_value=6_000),
        currency=st.sampled_from(["USD", "EUR"]),
    )
    def authorize(self, agent: str, amount_minor: int, currency: str) -> object:
        self.model.expire(self.model.due())  # every authorize sweeps overdue holds first
        charges = self.model.charges_for(agent, amount_minor, currency)
        usage = self.model.counters()
        over = [
            key
            for key in sorted(charges)
            if sum(usage.get(key, (0, 0))) + charges[key] > LIMITS[key[0]]
        ]
        decision = self.warden.authorize(
            PaymentIntent(
                agent=agent,
                action="payments.transfer",
                amount=_text(amount_minor),
                currency=currency,
                recipient="shop.example.com",
            )
        )
        if over:
            assert (decision.outcome, decision.reason_code) == ("deny", "budget_exceeded")
            assert decision.rule_ids == (f"budget:{over[0][0]}",)
            assert decision.hold_id is None
            return multiple()
        assert (decision.outcome, decision.reason_code) == ("allow", "allowed"), decision.reason
        assert decision.hold_id is not None
        assert decision.hold_id not in self.model.holds
        traced = {trace.budget_id: trace.amount_minor for trace in decision.trace.budgets}
        assert traced == {key[0]: value for key, value in charges.items()}
        self.model.holds[decision.hold_id] = ModelHold(
            agent,
            amount_minor,
            currency,
            self.model.now_us + HOLD_TTL_SECONDS * 1_000_000,
            charges,
        )
        return decision.hold_id

    @rule(hold_id=holds, partial=st.none() | st.integers(min_value=1, max_value=6_000))
    def capture(self, hold_id: str, partial: int | None) -> None:
        hold = self.model.holds[hold_id]
        if partial is not None and partial > hold.amount_minor:
            # Rejected before anything changes (not even the hold's own expiry is kept).
            with pytest.raises(StateConflictError, match="cannot capture"):
                self.warden.capture(hold_id, _text(partial))
            return
        if hold.state == "held" and hold.expires_us <= self.model.now_us:
            hold.state = "expired"
        if hold.state != "held":
            with pytest.raises(StateConflictError):
                self.warden.capture(hold_id, None if partial is None else _text(partial))
            return
        row = self.warden.capture(hold_id, None if partial is None else _text(partial))
        hold.state = "captured"
        hold.captured_minor = hold.amount_minor if partial is None else partial
        assert (row.state, row.captured_minor) == ("captured", hold.captured_minor)

    @rule(hold_id=holds)
    def void(self, hold_id: str) -> None:
        hold = self.model.holds[hold_id]
        if hold.state == "held" and hold.expires_us <= self.model.now_us:
            hold.state = "expired"
        if hold.state != "held":
            with pytest.raises(StateConflictError):
                self.warden.void(hold_id)
            return
        row = self.warden.void(hold_id)
        hold.state = "voided"
        assert (row.state, row.captured_minor) == ("voided", None)

    @rule()
    def expire_due(self) -> None:
        due = self.model.due()
        self.model.expire(due)
        assert self.warden.expire_due() == len(due)

    @rule(seconds=st.sampled_from([1, 59, 300, 599, 600, 601, 3_600, 4 * 3_600, 12 * 3_600]))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(seconds)
        self.model.now += timedelta(seconds=seconds)
        assert self.clock.now() == self.model.now

    @rule()
    def restart(self) -> None:
        """Close the Warden and open a new one on the same file: the ledger is durable."""
        self.warden.close()
        self.warden = self._open()

    # Invariants -----------------------------------------------------------------------------

    @invariant()
    def counters_match_holds_and_stay_within_limits(self) -> None:
        rows = self.reader.execute(
            "SELECT budget_id, scope_key, window_start_us, spent_minor, held_minor"
            " FROM budget_counters"
        ).fetchall()
        open_charges: dict[CounterKey, int] = {}
        for budget_id, scope_key, window, amount in self.reader.execute(
            "SELECT budget_id, scope_key, window_start_us, amount_minor FROM hold_charges"
            " WHERE state = 'held'"
        ):
            key = (budget_id, scope_key, window)
            open_charges[key] = open_charges.get(key, 0) + amount
        expected = self.model.counters()
        seen: set[CounterKey] = set()
        for budget_id, scope_key, window, spent, held in rows:
            key = (budget_id, scope_key, window)
            seen.add(key)
            assert spent >= 0 and held >= 0, key
            assert spent + held <= LIMITS[budget_id], key
            assert held == open_charges.get(key, 0), key
            assert (spent, held) == expected.get(key, (0, 0)), key
        # Every counter the model charged exists in the store.
        assert {key for key, usage in expected.items() if usage != (0, 0)} <= seen

    @invariant()
    def holds_are_in_exactly_one_state_and_terminal_states_never_change(self) -> None:
        rows = self.reader.execute(
            "SELECT hold_id, state, captured_minor, amount_minor FROM holds"
        ).fetchall()
        assert {row[0] for row in rows} == set(self.model.holds)
        for hold_id, state, captured, amount in rows:
            hold = self.model.holds[hold_id]
            assert state in ("held", "captured", "voided", "expired")
            assert (state, captured, amount) == (hold.state, hold.captured_minor, hold.amount_minor)
            if hold_id in self.terminal_seen:
                assert (state, captured) == self.terminal_seen[hold_id], hold_id
            elif state != "held":
                self.terminal_seen[hold_id] = (state, captured)
        charge_states = self.reader.execute(
            "SELECT hold_charges.hold_id, hold_charges.state, holds.state FROM hold_charges"
            " JOIN holds USING (hold_id)"
        ).fetchall()
        assert all(charge == parent for _hold, charge, parent in charge_states)


LedgerMachine.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    print_blob=True,  # a failure prints the @reproduce_failure blob next to the steps
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerStateMachine = LedgerMachine.TestCase
