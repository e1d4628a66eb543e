"""The durable spend ledger through the Warden: budgets and their gates, velocity, holds,
currencies, time windows, idempotency, restarts, a busy store, a lowered limit and the
`paywarden budgets` command. Every test uses a SQLite file under `tmp_path` and a `FrozenClock`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from paywarden import (
    FrozenClock,
    IdempotencyConflictError,
    NotFoundError,
    PaymentIntent,
    StateConflictError,
    StoreBusyError,
    Warden,
)
from paywarden.entrypoints.cli.main import cli
from paywarden.policy.decision import BudgetTrace, Decision
from support.audit import entries
from support.intents import intent_builder
from support.ledger_file import count, rows
from support.policies import write_policy
from support.wardens import OpenWarden
from support.workers import run_threads

NEW_YORK = ZoneInfo("America/New_York")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
START = "2026-01-05T15:00:00+00:00"  # a Monday, 10:00 in New York
pytestmark = pytest.mark.clock(START)

ALLOW_PAYMENTS = """
currency: USD
timezone: {timezone}
rules:
  - id: allow-payments
    effect: allow
    actions: ["payments.*"]
"""


def _policy(tail: str, *, timezone: str = "UTC", head: str = ALLOW_PAYMENTS) -> str:
    return head.format(timezone=timezone) + tail


DAILY_100 = _policy(
    """
budgets:
  - id: daily
    limit: "100.00"
    currency: USD
    window: day
"""
)


_intent = intent_builder("10.00", recipient="shop.example.com")


def _counters(database: Path) -> dict[tuple[str, str], tuple[int, int]]:
    """(spent, held) per (budget, scope key) in every window, read with plain sqlite3."""
    totals: dict[tuple[str, str], tuple[int, int]] = {}
    for budget_id, scope_key, spent, held in rows(
        database, "SELECT budget_id, scope_key, spent_minor, held_minor FROM budget_counters"
    ):
        old_spent, old_held = totals.get((budget_id, scope_key), (0, 0))
        totals[(budget_id, scope_key)] = (old_spent + spent, old_held + held)
    return totals


def _spend(warden: Warden, intent: PaymentIntent) -> Decision:
    """Authorize and, when allowed, capture the whole amount at once."""
    decision = warden.authorize(intent)
    if decision.hold_id is not None:
        warden.capture(decision.hold_id)
    return decision


def _local(zone: ZoneInfo, *parts: int, fold: int = 0) -> datetime:
    """A wall-clock time in `zone` as a UTC instant."""
    year, month, day, *rest = parts
    return datetime(year, month, day, *rest, tzinfo=zone, fold=fold).astimezone(UTC)


def _us(instant: datetime) -> int:
    """Microseconds since the epoch, as the ledger stores instants."""
    delta = instant - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


# Budgets ------------------------------------------------------------------------------------


def test_allows_spending_up_to_the_daily_budget_exactly(
    database: Path, open_warden: OpenWarden
) -> None:
    with open_warden(DAILY_100) as warden:
        assert warden.authorize(_intent("60.00")).outcome == "allow"
        last = warden.authorize(_intent("40.00"))
        assert (last.outcome, last.reason_code) == ("allow", "allowed")
        over = warden.authorize(_intent("0.01"))
        assert (over.outcome, over.reason_code) == ("deny", "budget_exceeded")
    assert _counters(database) == {("daily", "*"): (0, 10_000)}


def test_denies_when_daily_budget_would_be_exceeded(
    database: Path, open_warden: OpenWarden
) -> None:
    with open_warden(DAILY_100) as warden:
        first = warden.authorize(_intent("60.00"))
        denied = warden.authorize(_intent("50.00"))
        assert first.outcome == "allow"
        assert (denied.outcome, denied.reason_code) == ("deny", "budget_exceeded")
        assert denied.rule_ids == ("budget:daily",)
        assert denied.hold_id is None
        assert "40.00 USD left" in denied.reason
        assert denied.trace.budgets == (
            BudgetTrace("daily", "USD", 10_000, 0, 6_000, 5_000, "over"),
        )
        # The denial is recorded, and holds nothing.
        assert denied.decision_id is not None
        assert warden.decision(denied.decision_id).reason_code == "budget_exceeded"
    assert _counters(database) == {("daily", "*"): (0, 6_000)}
    assert count(database, "holds") == 1


def test_warn_gate_adds_a_warning_and_still_allows(open_warden: OpenWarden) -> None:
    policy = _policy(
        """
budgets:
  - id: daily
    limit: "100.00"
    window: day
    gates: {warn: 0.5, restrict: 0.8, halt: 0.9}
"""
    )
    with open_warden(policy) as warden:
        quiet = warden.authorize(_intent("50.00"))  # exactly at the warn line: not past it
        warned = warden.authorize(_intent("10.00"))
    assert (quiet.outcome, quiet.warnings) == ("allow", ())
    assert (warned.outcome, warned.reason_code) == ("allow", "allowed")
    assert warned.hold_id is not None
    assert warned.warnings == ("budget `daily` is past its warn gate (60.00 USD of 100.00 USD)",)
    assert warned.trace.budgets[0].gate == "warn"


def test_restrict_gate_turns_allow_into_require_approval_and_holds_the_amount(
    database: Path, open_warden: OpenWarden
) -> None:
    policy = _policy(
        """
budgets:
  - id: daily
    limit: "100.00"
    window: day
    gates: {warn: 0.5, restrict: 0.8, halt: 0.9}
"""
    )
    with open_warden(policy) as warden:
        warden.authorize(_intent("70.00"))
        pending = warden.authorize(_intent("15.00"))
        assert (pending.outcome, pending.reason_code) == ("require_approval", "budget_restricted")
        assert pending.rule_ids == ("allow-payments", "budget:daily")
        assert any("restrict gate" in warning for warning in pending.warnings)
        assert pending.hold_id is not None
        assert warden.hold(pending.hold_id).state == "held"
    assert _counters(database) == {("daily", "*"): (0, 8_500)}


def test_halt_gate_denies_with_budget_halt_before_the_limit(
    database: Path, open_warden: OpenWarden
) -> None:
    policy = _policy(
        """
budgets:
  - id: daily
    limit: "100.00"
    window: day
    gates: {restrict: 0.8, halt: 0.9}
"""
    )
    with open_warden(policy) as warden:
        warden.authorize(_intent("85.00"))
        halted = warden.authorize(_intent("6.00"))  # 91 of 100: past halt, under the limit
    assert (halted.outcome, halted.reason_code) == ("deny", "budget_halt")
    assert halted.rule_ids == ("budget:daily",)
    assert halted.hold_id is None
    assert _counters(database) == {("daily", "*"): (0, 8_500)}


def test_a_deny_rule_stands_and_budgets_hold_nothing(
    database: Path, open_warden: OpenWarden
) -> None:
    policy = _policy(
        """
  - id: no-gambling
    effect: deny
    recipients: [casino.example.com]
budgets:
  - id: daily
    limit: "100.00"
    window: day
"""
    )
    with open_warden(policy) as warden:
        denied = warden.authorize(_intent("5.00", recipient="casino.example.com"))
    assert (denied.outcome, denied.reason_code, denied.hold_id) == (
        "deny",
        "denied_by_rule",
        None,
    )
    assert _counters(database) == {("daily", "*"): (0, 0)}


def test_agent_scoped_budget_counts_each_agent_separately(
    database: Path, open_warden: OpenWarden
) -> None:
    policy = _policy(
        """
budgets:
  - id: per-agent
    limit: "50.00"
    window: day
    scope: agent
"""
    )
    with open_warden(policy) as warden:
        assert warden.authorize(_intent("50.00", agent="agent-a")).outcome == "allow"
        assert warden.authorize(_intent("0.01", agent="agent-a")).reason_code == "budget_exceeded"
        assert warden.authorize(_intent("50.00", agent="agent-b")).outcome == "allow"
    assert _counters(database) == {
        ("per-agent", "agent-a"): (0, 5_000),
        ("per-agent", "agent-b"): (0, 5_000),
    }


def test_budget_applies_only_to_its_agents_and_actions(open_warden: OpenWarden) -> None:
    policy = _policy(
        """
budgets:
  - id: bots-transfers
    limit: "10.00"
    window: day
    agents: ["bot-*"]
    actions: ["payments.transfer"]
"""
    )
    with open_warden(policy) as warden:
        assert warden.authorize(_intent("10.00", agent="bot-1")).outcome == "allow"
        assert warden.authorize(_intent("1.00", agent="bot-2")).reason_code == "budget_exceeded"
        other_action = warden.authorize(_intent("50.00", agent="bot-1", action="payments.card"))
        other_agent = warden.authorize(_intent("50.00", agent="human-1"))
    assert other_action.outcome == other_agent.outcome == "allow"
    assert other_action.trace.budgets == other_agent.trace.budgets == ()


def test_rolling_24h_budget_frees_room_as_old_spend_ages_out(
    clock: FrozenClock, open_warden: OpenWarden
) -> None:
    policy = _policy(
        """
budgets:
  - id: rolling
    limit: "100.00"
    window: 24h
"""
    )
    with open_warden(policy) as warden:
        first = warden.authorize(_intent("80.00"))
        assert first.hold_id is not None
        warden.capture(first.hold_id, "60.00")  # 20.00 released, 60.00 spent
        assert warden.authorize(_intent("40.00")).outcome == "allow"  # 100 of 100
        clock.advance(hours=23, minutes=59, seconds=59)
        # The 40.00 hold expired long ago; the 60.00 capture still counts.
        assert warden.authorize(_intent("41.00")).reason_code == "budget_exceeded"
        assert warden.authorize(_intent("40.00")).outcome == "allow"
        (status,) = warden.budgets()
        assert (status.spent_minor, status.held_minor, status.remaining_minor) == (6_000, 4_000, 0)
        clock.advance(seconds=1)  # the 60.00 is now 24 h old and leaves the window
        (status,) = warden.budgets()
        assert (status.spent_minor, status.held_minor, status.remaining_minor) == (0, 4_000, 6_000)
        assert warden.authorize(_intent("60.00")).outcome == "allow"
        assert warden.authorize(_intent("0.01")).reason_code == "budget_exceeded"


def test_an_intent_touching_several_budgets_is_all_or_nothing(
    database: Path, open_warden: OpenWarden
) -> None:
    """CB-03: when one budget denies, no other budget keeps a partial debit."""
    policy = _policy(
        """
budgets:
  - id: org-total
    limit: "1000.00"
    window: lifetime
  - id: agent-daily
    limit: "50.00"
    window: day
    scope: agent
  - id: merchant-monthly
    limit: "200.00"
    window: month
    scope: recipient
"""
    )
    with open_warden(policy) as warden:
        assert warden.authorize(_intent("49.99")).outcome == "allow"
        before = _counters(database)
        denied = warden.authorize(_intent("0.02"))
        assert (denied.reason_code, denied.rule_ids) == ("budget_exceeded", ("budget:agent-daily",))
        assert [trace.budget_id for trace in denied.trace.budgets] == [
            "agent-daily",
            "merchant-monthly",
            "org-total",
        ]
        assert _counters(database) == before
        assert warden.authorize(_intent("0.01")).outcome == "allow"
    assert _counters(database) == {
        ("org-total", "*"): (0, 5_000),
        ("agent-daily", "agent-a"): (0, 5_000),
        ("merchant-monthly", "shop.example.com"): (0, 5_000),
    }


def test_a_zero_limit_freezes_spending(database: Path, open_warden: OpenWarden) -> None:
    frozen = DAILY_100.replace('limit: "100.00"', "limit: 0")
    with open_warden(frozen) as warden:
        denied = warden.authorize(_intent("0.01"))
    assert (denied.outcome, denied.reason_code) == ("deny", "budget_exceeded")
    assert count(database, "holds") == 0


def test_session_budget_puts_an_agents_intents_without_a_session_in_one_bucket(
    database: Path, open_warden: OpenWarden
) -> None:
    policy = _policy(
        """
budgets:
  - id: per-session
    limit: "50.00"
    window: day
    scope: session
"""
    )
    with open_warden(policy) as warden:
        assert warden.authorize(_intent("50.00", agent="agent-a")).outcome == "allow"
        # No session id is the agent's own bucket, never a way around the budget ...
        assert warden.authorize(_intent("1.00", agent="agent-a")).reason_code == "budget_exceeded"
        # ... and never another agent's: sessions (and their budgets) belong to their agent.
        assert warden.authorize(_intent("1.00", agent="agent-b")).outcome == "allow"
        in_session = warden.authorize(
            PaymentIntent(
                agent="agent-a",
                action="payments.transfer",
                amount="50.00",
                currency="USD",
                recipient="shop.example.com",
                session_id="s-1",
            )
        )
    assert in_session.outcome == "allow"
    assert _counters(database) == {
        ("per-session", "agent-a|(none)"): (0, 5_000),
        ("per-session", "agent-b|(none)"): (0, 100),
        ("per-session", "agent-a|s-1"): (0, 5_000),
    }


# Velocity -----------------------------------------------------------------------------------

VELOCITY_POLICY = _policy(
    """
velocity:
  - id: burst
    max_count: 3
    window: 60s
    scope: agent
  - id: breather
    cooldown: 10s
    scope: agent
    agents: [careful-*]
"""
)


def test_velocity_limit_denies_with_rate_limit_exceeded_until_the_window_passes(
    clock: FrozenClock, open_warden: OpenWarden
) -> None:
    with open_warden(VELOCITY_POLICY) as warden:
        for _ in range(3):
            assert warden.authorize(_intent("1.00")).outcome == "allow"
            clock.advance(seconds=10)
        limited = warden.authorize(_intent("1.00"))
        assert (limited.outcome, limited.reason_code) == ("deny", "rate_limit_exceeded")
        assert limited.rule_ids == ("velocity:burst",)
        assert limited.hold_id is None
        assert warden.authorize(_intent("1.00", agent="agent-b")).outcome == "allow"
        clock.advance(seconds=29)  # the first payment is now 59 s old
        assert warden.authorize(_intent("1.00")).reason_code == "rate_limit_exceeded"
        clock.advance(seconds=1)  # ... and now 60 s: out of the window
        assert warden.authorize(_intent("1.00")).outcome == "allow"


def test_cooldown_denies_with_cooldown_active_until_it_has_passed(
    clock: FrozenClock, open_warden: OpenWarden
) -> None:
    with open_warden(VELOCITY_POLICY) as warden:
        assert warden.authorize(_intent("1.00", agent="careful-1")).outcome == "allow"
        clock.advance(seconds=9)
        cooling = warden.authorize(_intent("1.00", agent="careful-1"))
        assert (cooling.outcome, cooling.reason_code) == ("deny", "cooldown_active")
        assert cooling.rule_ids == ("velocity:breather",)
        clock.advance(seconds=1)
        assert warden.authorize(_intent("1.00", agent="careful-1")).outcome == "allow"


def test_velocity_is_counted_in_the_store_so_two_wardens_share_it(open_warden: OpenWarden) -> None:
    with (
        open_warden(VELOCITY_POLICY) as first,
        open_warden(VELOCITY_POLICY) as second,
    ):
        assert first.authorize(_intent("1.00")).outcome == "allow"
        assert second.authorize(_intent("1.00")).outcome == "allow"
        assert first.authorize(_intent("1.00")).outcome == "allow"
        assert second.authorize(_intent("1.00")).reason_code == "rate_limit_exceeded"
        assert first.authorize(_intent("1.00")).reason_code == "rate_limit_exceeded"


def test_denied_intents_do_not_use_up_the_velocity_limit(open_warden: OpenWarden) -> None:
    policy = _policy(
        """
budgets:
  - id: daily
    limit: "10.00"
    window: day
velocity:
  - id: pair
    max_count: 2
    window: 1h
"""
    )
    with open_warden(policy) as warden:
        assert warden.authorize(_intent("5.00")).outcome == "allow"
        for _ in range(3):
            assert warden.authorize(_intent("50.00")).reason_code == "budget_exceeded"
        assert warden.authorize(_intent("5.00")).outcome == "allow"
        assert warden.authorize(_intent("0.01")).reason_code == "budget_exceeded"


# Holds --------------------------------------------------------------------------------------


def test_full_capture_moves_the_held_amount_to_spent(
    database: Path, clock: FrozenClock, open_warden: OpenWarden
) -> None:
    with open_warden(DAILY_100) as warden:
        decision = warden.authorize(_intent("60.00"))
        assert decision.hold_id is not None
        clock.advance(seconds=5)
        row = warden.capture(decision.hold_id)
    assert (row.state, row.captured_minor, row.amount_minor) == ("captured", 6_000, 6_000)
    assert row.decision_id == decision.decision_id
    assert row.resolved_us == row.created_us + 5_000_000
    assert _counters(database) == {("daily", "*"): (6_000, 0)}


def test_partial_capture_spends_part_and_releases_the_remainder(
    database: Path, open_warden: OpenWarden
) -> None:
    with open_warden(DAILY_100) as warden:
        decision = warden.authorize(_intent("100.00"))
        assert decision.hold_id is not None
        row = warden.capture(decision.hold_id, "60.00")
        assert (row.state, row.captured_minor) == ("captured", 6_000)
        assert _counters(database) == {("daily", "*"): (6_000, 0)}
        # The released 40.00 is available again, and no more.
        assert warden.authorize(_intent("40.00")).outcome == "allow"
        assert warden.authorize(_intent("0.01")).reason_code == "budget_exceeded"


def test_void_releases_the_held_amount(database: Path, open_warden: OpenWarden) -> None:
    with open_warden(DAILY_100) as warden:
        decision = warden.authorize(_intent("100.00"))
        assert decision.hold_id is not None
        assert warden.authorize(_intent("1.00")).reason_code == "budget_exceeded"
        row = warden.void(decision.hold_id)
        assert (row.state, row.captured_minor) == ("voided", None)
        assert _counters(database) == {("daily", "*"): (0, 0)}
        assert warden.authorize(_intent("100.00")).outcome == "allow"


def test_hold_expires_after_its_ttl_and_releases_the_amount(
    database: Path, clock: FrozenClock, open_warden: OpenWarden
) -> None:
    with open_warden(DAILY_100, hold_ttl_seconds=300) as warden:
        decision = warden.authorize(_intent("70.00"))
        assert decision.hold_id is not None
        hold = warden.hold(decision.hold_id)
        assert hold.expires_us - hold.created_us == 300_000_000
        clock.advance(seconds=299)
        assert warden.expire_due() == 0
        assert warden.hold(decision.hold_id).state == "held"
        clock.advance(seconds=1)
        assert warden.expire_due() == 1
        assert warden.expire_due() == 0  # an expiry happens once
        assert warden.hold(decision.hold_id).state == "expired"
    assert _counters(database) == {("daily", "*"): (0, 0)}


def test_authorize_sweeps_expired_holds_before_deciding(
    clock: FrozenClock, open_warden: OpenWarden
) -> None:
    with open_warden(DAILY_100, hold_ttl_seconds=60) as warden:
        stale = warden.authorize(_intent("100.00"))
        assert stale.hold_id is not None
        assert warden.authorize(_intent("1.00")).reason_code == "budget_exceeded"
        clock.advance(seconds=60)
        fresh = warden.authorize(_intent("100.00"))
        assert fresh.outcome == "allow"
        assert warden.hold(stale.hold_id).state == "expired"


def test_capture_after_void_is_a_state_conflict(database: Path, open_warden: OpenWarden) -> None:
    with open_warden(DAILY_100) as warden:
        hold_id = warden.authorize(_intent("30.00")).hold_id
        assert hold_id is not None
        warden.void(hold_id)
        with pytest.raises(StateConflictError, match="already voided"):
            warden.capture(hold_id)
        assert warden.hold(hold_id).state == "voided"
    assert _counters(database) == {("daily", "*"): (0, 0)}


def test_second_capture_and_void_after_capture_are_state_conflicts(
    database: Path, open_warden: OpenWarden
) -> None:
    with open_warden(DAILY_100) as warden:
        hold_id = warden.authorize(_intent("30.00")).hold_id
        assert hold_id is not None
        warden.capture(hold_id, "10.00")
        with pytest.raises(StateConflictError, match="already captured"):
            warden.capture(hold_id, "10.00")
        with pytest.raises(StateConflictError, match="already captured"):
            warden.void(hold_id)
        assert warden.hold(hold_id).captured_minor == 1_000
    assert _counters(database) == {("daily", "*"): (1_000, 0)}


def test_capture_after_expiry_is_a_state_conflict_and_the_expiry_sticks(
    database: Path, clock: FrozenClock, open_warden: OpenWarden
) -> None:
    with open_warden(DAILY_100, hold_ttl_seconds=60) as warden:
        hold_id = warden.authorize(_intent("30.00")).hold_id
        assert hold_id is not None
        clock.advance(seconds=61)  # past the deadline, but no sweep has run yet
        with pytest.raises(StateConflictError, match="already expired"):
            warden.capture(hold_id)
        assert warden.hold(hold_id).state == "expired"
        with pytest.raises(StateConflictError, match="already expired"):
            warden.void(hold_id)
    assert _counters(database) == {("daily", "*"): (0, 0)}


def test_capture_of_more_than_held_is_rejected_and_the_hold_stays_open(
    database: Path, open_warden: OpenWarden
) -> None:
    with open_warden(DAILY_100) as warden:
        hold_id = warden.authorize(_intent("30.00")).hold_id
        assert hold_id is not None
        with pytest.raises(StateConflictError, match="cannot capture"):
            warden.capture(hold_id, "30.01")
        assert warden.hold(hold_id).state == "held"
        assert _counters(database) == {("daily", "*"): (0, 3_000)}
        assert warden.capture(hold_id, "30.00").captured_minor == 3_000
    assert _counters(database) == {("daily", "*"): (3_000, 0)}


def test_racing_capture_void_and_expiry_resolve_each_hold_exactly_once(
    database: Path, clock: FrozenClock, open_warden: OpenWarden
) -> None:
    """CB-05: capture, void and the expiry sweep fire at one hold at once, round after round."""
    rounds = 20
    kinds = ("capture", "void", "expire")
    hold_ids: list[str] = []
    winners: list[list[str]] = [[] for _ in range(rounds)]
    errors: list[BaseException] = []
    start, done = threading.Barrier(len(kinds) + 1), threading.Barrier(len(kinds) + 1)

    def contender(kind: str) -> None:
        # Capture and void still see the hold open; the sweeper's clock is past its deadline.
        own_clock = FrozenClock(clock.now())
        if kind == "expire":
            own_clock.advance(seconds=60)
        try:
            with open_warden(DAILY_100, clock=own_clock, busy_timeout_seconds=30) as warden:
                for number in range(rounds):
                    start.wait(timeout=30)
                    try:
                        if kind == "capture":
                            won = warden.capture(hold_ids[number]).state == "captured"
                        elif kind == "void":
                            won = warden.void(hold_ids[number]).state == "voided"
                        else:
                            won = warden.expire_due() == 1
                    except StateConflictError:
                        won = False
                    if won:
                        winners[number].append(kind)
                    done.wait(timeout=30)
        except BaseException as error:  # surfaced below
            errors.append(error)
            start.abort()
            done.abort()

    with open_warden(DAILY_100, hold_ttl_seconds=60) as warden:
        threads = [threading.Thread(target=contender, args=(kind,)) for kind in kinds]
        for thread in threads:
            thread.start()
        try:
            for _ in range(rounds):
                hold_id = warden.authorize(_intent("1.00")).hold_id
                assert hold_id is not None
                hold_ids.append(hold_id)
                start.wait(timeout=30)
                done.wait(timeout=30)
        finally:
            for thread in threads:
                thread.join(timeout=30)
        assert not errors, errors
        states = [warden.hold(hold_id).state for hold_id in hold_ids]
    assert all(len(won) == 1 for won in winners), winners
    names = {"capture": "captured", "void": "voided", "expire": "expired"}
    assert states == [names[won[0]] for won in winners]
    captured = sum(1 for won in winners if won == ["capture"])
    assert _counters(database) == {("daily", "*"): (captured * 100, 0)}


def test_unknown_hold_or_decision_is_not_found(open_warden: OpenWarden) -> None:
    with open_warden(DAILY_100) as warden:
        for call in (warden.capture, warden.void, warden.hold, warden.decision):
            with pytest.raises(NotFoundError):
                call("hold_does_not_exist")


# Currencies ---------------------------------------------------------------------------------

FX_POLICY = _policy(
    """
fx:
  as_of: "2026-01-01"
  rates: {"EUR/USD": "1.08", "JPY/USD": "0.0067"}
budgets:
  - id: daily
    limit: "100.00"
    currency: USD
    window: day
"""
)


def test_eur_intent_counts_against_a_usd_budget_through_fx_rounded_up(
    database: Path, open_warden: OpenWarden
) -> None:
    with open_warden(FX_POLICY) as warden:
        decision = warden.authorize(_intent("10.01", currency="EUR"))  # 10.8108 USD
        assert decision.outcome == "allow"
        assert decision.trace.budgets[0].amount_minor == 1_082
        assert _counters(database) == {("daily", "*"): (0, 1_082)}
        assert decision.hold_id is not None
        hold = warden.hold(decision.hold_id)
        assert (hold.amount_minor, hold.currency) == (1_001, "EUR")
        # 92.59 EUR is 99.9972 USD -> 100.00: does not fit beside 10.82.
        assert warden.authorize(_intent("92.59", currency="EUR")).reason_code == ("budget_exceeded")
        # 5.00 of 10.01 EUR spends that share of the 10.82 USD charge, rounded up:
        # 1082 * 500 / 1001 = 540.46 -> 5.41 USD; the rest is released.
        warden.capture(decision.hold_id, "5.00")
    assert _counters(database) == {("daily", "*"): (541, 0)}


def test_partial_capture_of_a_converted_hold_rounds_the_spent_share_up(
    database: Path, open_warden: OpenWarden
) -> None:
    with open_warden(FX_POLICY) as warden:
        hold_id = warden.authorize(_intent("0.03", currency="EUR")).hold_id  # 0.0324 -> 0.04
        assert hold_id is not None
        warden.capture(hold_id, "0.01")  # a third of 0.04 USD is 0.0133 -> 0.02
    assert _counters(database) == {("daily", "*"): (2, 0)}


def test_intent_without_an_fx_rate_is_denied_currency_not_convertible(
    database: Path, open_warden: OpenWarden
) -> None:
    with open_warden(FX_POLICY) as warden:
        denied = warden.authorize(_intent("1.00", currency="GBP"))
    assert (denied.outcome, denied.reason_code) == ("deny", "currency_not_convertible")
    assert denied.rule_ids == ("budget:daily",)
    assert denied.hold_id is None
    assert count(database, "holds") == 0


def test_jpy_intent_cannot_route_around_a_usd_budget(
    database: Path, open_warden: OpenWarden
) -> None:
    with open_warden(DAILY_100) as warden:
        no_rate = warden.authorize(_intent("1", currency="JPY"))
    assert (no_rate.outcome, no_rate.reason_code) == ("deny", "currency_not_convertible")
    with open_warden(FX_POLICY) as warden:
        assert warden.authorize(_intent("99.00")).outcome == "allow"
        # 150 JPY is 1.005 USD -> 1.01: over the 1.00 left.
        assert warden.authorize(_intent("150", currency="JPY")).reason_code == "budget_exceeded"
        assert warden.authorize(_intent("149", currency="JPY")).outcome == "allow"  # 0.9983
        assert warden.authorize(_intent("1", currency="JPY")).reason_code == "budget_exceeded"
    assert _counters(database) == {("daily", "*"): (0, 10_000)}


def test_changing_a_budgets_currency_mid_window_denies_instead_of_mixing_units(
    database: Path, open_warden: OpenWarden
) -> None:
    in_yen = DAILY_100.replace(
        'limit: "100.00"\n    currency: USD', 'limit: "15000"\n    currency: JPY'
    )
    assert "currency: JPY" in in_yen
    with open_warden(DAILY_100) as warden:
        assert _spend(warden, _intent("99.00")).outcome == "allow"
    with open_warden(in_yen) as warden:
        # The counter holds 9900 US cents; read as yen it would leave room for 5100 JPY, on
        # top of the 99.00 USD already spent against a limit worth about 100 USD.
        mixed = warden.authorize(_intent("5100", currency="JPY"))
        assert mixed.outcome == "deny"
        assert mixed.hold_id is None
        assert "JPY" in mixed.reason and "USD" in mixed.reason
    assert _counters(database) == {("daily", "*"): (9_900, 0)}


def test_tiny_converted_payments_are_never_free(database: Path, open_warden: OpenWarden) -> None:
    with open_warden(FX_POLICY) as warden:
        tiny = warden.authorize(_intent("1", currency="JPY"))  # 0.0067 USD
    assert tiny.outcome == "allow"
    assert tiny.trace.budgets[0].amount_minor == 1
    assert _counters(database) == {("daily", "*"): (0, 1)}


# Time from the injected clock -------------------------------------------------------------


def test_decisions_holds_and_windows_take_time_from_the_injected_clock(
    open_warden: OpenWarden,
) -> None:
    clock = FrozenClock("2031-07-04T12:00:00+00:00")
    with open_warden(DAILY_100, clock=clock, hold_ttl_seconds=120) as warden:
        decision = warden.authorize(_intent("25.00"))
        assert decision.trace.evaluated_at == clock.now()
        assert decision.hold_id is not None
        hold = warden.hold(decision.hold_id)
        instant_us = _us(datetime(2031, 7, 4, 12, tzinfo=UTC))
        assert (hold.created_us, hold.expires_us) == (instant_us, instant_us + 120_000_000)
        (status,) = warden.budgets()
        assert status.window_start_us == _us(datetime(2031, 7, 4, tzinfo=UTC))
        assert (status.spent_minor, status.held_minor, status.remaining_minor) == (0, 2_500, 7_500)


# A busy store -------------------------------------------------------------------------------


@contextmanager
def _locked(database: Path) -> Iterator[None]:
    """Hold the write lock from another connection, as another process would."""
    blocker = sqlite3.connect(database, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        yield
        blocker.execute("ROLLBACK")
    finally:
        blocker.close()


def test_store_busy_past_the_timeout_denies_with_store_busy(
    database: Path, open_warden: OpenWarden
) -> None:
    with open_warden(DAILY_100, busy_timeout_seconds=0.2) as warden:
        with _locked(database):
            started = time.monotonic()
            busy = warden.authorize(_intent("10.00"))
            waited = time.monotonic() - started
        assert (busy.outcome, busy.reason_code, busy.hold_id) == ("deny", "store_busy", None)
        assert 0.15 <= waited < 5
        assert count(database, "decisions") == 0
        assert count(database, "holds") == 0
        assert warden.authorize(_intent("10.00")).outcome == "allow"


def test_a_store_busy_denial_is_audited_once_the_store_frees(
    database: Path, open_warden: OpenWarden
) -> None:
    """The decision's write gives up after the timeout; the denial's own record waits one more
    turn and lands when the blocker lets go: a refusal that changed nothing, but audited."""
    with open_warden(DAILY_100, busy_timeout_seconds=1.0) as warden:
        blocker = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        blocker.execute("BEGIN IMMEDIATE")
        release = threading.Timer(1.5, blocker.execute, args=("ROLLBACK",))
        release.start()
        try:
            busy = warden.authorize(_intent("10.00"))
        finally:
            release.join()
            blocker.close()
        assert (busy.outcome, busy.reason_code, busy.hold_id) == ("deny", "store_busy", None)
        (entry,) = [e for e in entries(database) if e.ref_id == busy.decision_id]
        body = json.loads(entry.body)
        assert (entry.kind, body["error"]) == ("decision.refused", "store_busy")
        assert body["decision"]["reason_code"] == "store_busy"
        assert (count(database, "decisions"), count(database, "holds")) == (0, 0)


def test_capture_on_a_busy_store_raises_and_keeps_the_hold(
    database: Path, open_warden: OpenWarden
) -> None:
    with open_warden(DAILY_100, busy_timeout_seconds=0.2) as warden:
        hold_id = warden.authorize(_intent("10.00")).hold_id
        assert hold_id is not None
        with _locked(database), pytest.raises(StoreBusyError):
            warden.capture(hold_id)
        assert warden.hold(hold_id).state == "held"
        assert warden.capture(hold_id).state == "captured"


# A lowered limit (CB-07) --------------------------------------------------------------------


def test_lowered_limit_applies_to_new_allows_at_once(
    database: Path, open_warden: OpenWarden
) -> None:
    lowered = DAILY_100.replace('limit: "100.00"', 'limit: "50.00"')
    with open_warden(DAILY_100) as warden:
        held = warden.authorize(_intent("40.00"))
        spent = warden.authorize(_intent("20.00"))
        also_held = warden.authorize(_intent("30.00"))  # 90 of 100
        assert held.hold_id and spent.hold_id and also_held.hold_id
        warden.capture(spent.hold_id)
    with open_warden(lowered) as warden:
        denied = warden.authorize(_intent("0.01"))
        assert (denied.outcome, denied.reason_code) == ("deny", "budget_exceeded")
        assert denied.policy_version != held.policy_version
        (status,) = warden.budgets()
        assert (status.limit_minor, status.remaining_minor, status.gate) == (5_000, 0, "over")
        # Existing holds still settle; freed room below the new limit is usable again.
        warden.void(held.hold_id)  # 20 spent + 30 held: exactly at the new limit
        assert _counters(database) == {("daily", "*"): (2_000, 3_000)}
        assert warden.authorize(_intent("0.01")).reason_code == "budget_exceeded"
        warden.void(also_held.hold_id)
        assert warden.authorize(_intent("30.00")).outcome == "allow"
        assert warden.authorize(_intent("0.01")).reason_code == "budget_exceeded"
    assert _counters(database) == {("daily", "*"): (2_000, 3_000)}


# Time windows -------------------------------------------------------------------------------
# Window tests capture what they spend: a hold would expire long before the next window.

NEW_YORK_DAILY = DAILY_100.replace("timezone: UTC", "timezone: America/New_York")


def test_daily_budget_rolls_over_at_new_york_midnight(open_warden: OpenWarden) -> None:
    clock = FrozenClock(_local(NEW_YORK, 2026, 1, 5, 23, 59))  # 04:59 UTC on the 6th
    with open_warden(NEW_YORK_DAILY, clock=clock) as warden:
        assert _spend(warden, _intent("90.00")).outcome == "allow"
        clock.set(_local(NEW_YORK, 2026, 1, 5, 23, 59, 59))
        assert warden.authorize(_intent("20.00")).reason_code == "budget_exceeded"
        clock.set(_local(NEW_YORK, 2026, 1, 6, 0, 1))
        fresh = warden.authorize(_intent("90.00"))
        assert fresh.outcome == "allow"
        assert (fresh.trace.budgets[0].spent_minor, fresh.trace.budgets[0].held_minor) == (0, 0)
        (status,) = warden.budgets()
        assert status.window_start_us == _us(_local(NEW_YORK, 2026, 1, 6))


def test_daily_budget_in_new_york_does_not_roll_over_at_utc_midnight(
    open_warden: OpenWarden,
) -> None:
    clock = FrozenClock(_local(NEW_YORK, 2026, 1, 5, 18, 0))  # 23:00 UTC
    with open_warden(NEW_YORK_DAILY, clock=clock) as warden:
        assert _spend(warden, _intent("90.00")).outcome == "allow"
        clock.set(_local(NEW_YORK, 2026, 1, 5, 20, 0))  # 01:00 UTC, the next UTC day
        assert warden.authorize(_intent("20.00")).reason_code == "budget_exceeded"


@pytest.mark.parametrize(
    "process_tz",
    ["UTC", "Asia/Tokyo", "Pacific/Kiritimati", "America/New_York", "Australia/Lord_Howe"],
)
def test_weekly_window_in_los_angeles_is_the_same_whatever_the_process_tz(
    process_tz: str, open_warden: OpenWarden
) -> None:
    policy = _policy(
        """
budgets:
  - id: weekly
    limit: "100.00"
    window: week
""",
        timezone="America/Los_Angeles",
    )
    saved = os.environ.get("TZ")
    os.environ["TZ"] = process_tz
    time.tzset()
    try:
        # Sunday 2026-01-04 23:30 in Los Angeles is already Monday in UTC and in Tokyo.
        clock = FrozenClock(_local(LOS_ANGELES, 2026, 1, 4, 23, 30))
        with open_warden(policy, clock=clock) as warden:
            assert _spend(warden, _intent("60.00")).outcome == "allow"
            (sunday,) = warden.budgets()
            clock.set(_local(LOS_ANGELES, 2026, 1, 5, 0, 30))  # Monday: a new week
            assert _spend(warden, _intent("60.00")).outcome == "allow"
            clock.set(_local(LOS_ANGELES, 2026, 1, 11, 23, 59))  # the following Sunday
            assert warden.authorize(_intent("60.00")).reason_code == "budget_exceeded"
            (monday,) = warden.budgets()
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()
    assert sunday.window_start_us == _us(_local(LOS_ANGELES, 2025, 12, 29))
    assert monday.window_start_us == _us(_local(LOS_ANGELES, 2026, 1, 5))
    assert _us(_local(LOS_ANGELES, 2026, 1, 5)) == _us(datetime(2026, 1, 5, 8, tzinfo=UTC))


def test_daily_budget_on_the_23_hour_day_2026_03_08_is_one_window(open_warden: OpenWarden) -> None:
    clock = FrozenClock(_local(NEW_YORK, 2026, 3, 8, 0, 30))  # EST
    with open_warden(NEW_YORK_DAILY, clock=clock) as warden:
        assert _spend(warden, _intent("60.00")).outcome == "allow"
        clock.set(_local(NEW_YORK, 2026, 3, 8, 3, 30))  # EDT, after the skipped hour
        assert _spend(warden, _intent("30.00")).outcome == "allow"
        clock.set(_local(NEW_YORK, 2026, 3, 8, 23, 59))  # 03:59 UTC on the 9th
        assert warden.authorize(_intent("20.00")).reason_code == "budget_exceeded"
        (status,) = warden.budgets()
        assert status.window_start_us == _us(datetime(2026, 3, 8, 5, tzinfo=UTC))
        clock.set(_local(NEW_YORK, 2026, 3, 9, 0, 0))  # 23 hours after the day began
        assert _spend(warden, _intent("20.00")).outcome == "allow"
        (status,) = warden.budgets()
        assert status.window_start_us == _us(datetime(2026, 3, 9, 4, tzinfo=UTC))


def test_daily_budget_on_the_25_hour_day_2026_11_01_has_one_limit(
    database: Path, open_warden: OpenWarden
) -> None:
    clock = FrozenClock(_local(NEW_YORK, 2026, 11, 1, 0, 30))  # EDT
    with open_warden(NEW_YORK_DAILY, clock=clock) as warden:
        assert _spend(warden, _intent("60.00")).outcome == "allow"
        clock.set(_local(NEW_YORK, 2026, 11, 1, 1, 30, fold=0))  # 05:30 UTC, EDT
        assert _spend(warden, _intent("30.00")).outcome == "allow"
        clock.set(_local(NEW_YORK, 2026, 11, 1, 1, 30, fold=1))  # 06:30 UTC, EST: repeated
        assert warden.authorize(_intent("20.00")).reason_code == "budget_exceeded"
        clock.set(_local(NEW_YORK, 2026, 11, 1, 23, 30))  # 24.5 hours after the day began
        assert warden.authorize(_intent("20.00")).reason_code == "budget_exceeded"
        (status,) = warden.budgets()
        assert status.window_start_us == _us(datetime(2026, 11, 1, 4, tzinfo=UTC))
        clock.set(_local(NEW_YORK, 2026, 11, 2, 0, 0))
        assert _spend(warden, _intent("20.00")).outcome == "allow"
    starts = [row[0] for row in rows(database, "SELECT window_start_us FROM budget_counters")]
    assert sorted(starts) == [
        _us(datetime(2026, 11, 1, 4, tzinfo=UTC)),
        _us(datetime(2026, 11, 2, 5, tzinfo=UTC)),
    ]


@pytest.mark.parametrize(
    ("last_day", "next_day"),
    [((2026, 1, 31), (2026, 2, 1)), ((2028, 2, 29), (2028, 3, 1))],
    ids=["january-31", "leap-day-2028"],
)
def test_monthly_window_rolls_over_on_the_first_of_the_month(
    last_day: tuple[int, int, int], next_day: tuple[int, int, int], open_warden: OpenWarden
) -> None:
    policy = _policy(
        """
budgets:
  - id: monthly
    limit: "100.00"
    window: month
""",
        timezone="America/New_York",
    )
    year, month, _day = last_day
    clock = FrozenClock(_local(NEW_YORK, year, month, 1, 0, 0))
    with open_warden(policy, clock=clock) as warden:
        assert _spend(warden, _intent("60.00")).outcome == "allow"
        clock.set(_local(NEW_YORK, *last_day, 23, 59))
        assert warden.authorize(_intent("60.00")).reason_code == "budget_exceeded"
        assert _spend(warden, _intent("40.00")).outcome == "allow"
        clock.set(_local(NEW_YORK, *next_day, 0, 1))
        assert _spend(warden, _intent("100.00")).outcome == "allow"
        (status,) = warden.budgets()
    assert status.window_start_us == _us(_local(NEW_YORK, *next_day))


# Idempotency --------------------------------------------------------------------------------


def test_replay_returns_the_stored_decision_and_holds_once(
    database: Path, clock: FrozenClock, open_warden: OpenWarden
) -> None:
    with open_warden(DAILY_100) as warden:
        first = warden.authorize(_intent("30.00", idempotency_key="order-1"))
        clock.advance(seconds=30)
        again = warden.authorize(_intent("30.00", idempotency_key="order-1"))
    assert (first.replayed, again.replayed) == (False, True)
    assert again.decision_id == first.decision_id
    assert again.hold_id == first.hold_id
    assert (again.outcome, again.reason_code, again.trace) == (
        first.outcome,
        first.reason_code,
        first.trace,
    )
    assert _counters(database) == {("daily", "*"): (0, 3_000)}
    assert (count(database, "decisions"), count(database, "holds")) == (1, 1)


def test_replay_of_a_denial_stays_a_denial(open_warden: OpenWarden) -> None:
    with open_warden(DAILY_100) as warden:
        blocker = warden.authorize(_intent("100.00"))
        denied = warden.authorize(_intent("10.00", idempotency_key="order-2"))
        assert denied.reason_code == "budget_exceeded"
        assert blocker.hold_id is not None
        warden.void(blocker.hold_id)  # room again, but the key already has its answer
        again = warden.authorize(_intent("10.00", idempotency_key="order-2"))
    assert (again.outcome, again.reason_code, again.replayed) == ("deny", "budget_exceeded", True)
    assert again.decision_id == denied.decision_id


def test_replays_do_not_count_toward_velocity(open_warden: OpenWarden) -> None:
    with open_warden(VELOCITY_POLICY) as warden:
        first = warden.authorize(_intent("1.00", idempotency_key="order-v"))
        for _ in range(5):
            assert warden.authorize(_intent("1.00", idempotency_key="order-v")).replayed
        assert warden.authorize(_intent("1.00")).outcome == "allow"
        assert warden.authorize(_intent("1.00")).outcome == "allow"
        assert warden.authorize(_intent("1.00")).reason_code == "rate_limit_exceeded"
    assert first.outcome == "allow"


def test_reused_key_with_a_different_intent_is_a_conflict_and_changes_nothing(
    database: Path, open_warden: OpenWarden
) -> None:
    with open_warden(DAILY_100) as warden:
        original = warden.authorize(_intent("30.00", idempotency_key="order-3"))
        with pytest.raises(IdempotencyConflictError, match="order-3"):
            warden.authorize(_intent("30.01", idempotency_key="order-3"))
        with pytest.raises(IdempotencyConflictError):
            warden.authorize(
                _intent("30.00", idempotency_key="order-3", recipient="other.example.com")
            )
        with pytest.raises(IdempotencyConflictError):
            warden.authorize(_intent("30.00", idempotency_key="order-3", currency="EUR"))
        assert original.decision_id is not None
        assert warden.decision(original.decision_id).outcome == "allow"
    assert _counters(database) == {("daily", "*"): (0, 3_000)}
    assert (count(database, "decisions"), count(database, "holds")) == (1, 1)


def test_cosmetic_differences_in_the_recipient_replay_the_same_intent(
    open_warden: OpenWarden,
) -> None:
    with open_warden(DAILY_100) as warden:
        first = warden.authorize(
            _intent("30.00", idempotency_key="order-4", recipient="shop.example.com")
        )
        again = warden.authorize(
            _intent("30.00", idempotency_key="order-4", recipient="SHOP.Example.COM.")
        )
    assert again.replayed and again.decision_id == first.decision_id


def test_idempotency_keys_are_scoped_per_agent(database: Path, open_warden: OpenWarden) -> None:
    with open_warden(DAILY_100) as warden:
        mine = warden.authorize(_intent("30.00", agent="agent-a", idempotency_key="abc"))
        theirs = warden.authorize(_intent("50.00", agent="agent-b", idempotency_key="abc"))
    assert not theirs.replayed
    assert theirs.decision_id != mine.decision_id
    assert theirs.outcome == "allow"
    assert _counters(database) == {("daily", "*"): (0, 8_000)}


def test_concurrent_duplicates_decide_once_and_hold_once(
    database: Path, open_warden: OpenWarden
) -> None:
    threads_count = 12
    Warden.open(DAILY_100, database=database).close()
    barrier = threading.Barrier(threads_count)
    decisions: list[Decision] = []
    errors: list[BaseException] = []

    def duplicate() -> None:
        # Each thread has its own Warden (its own connection), as separate processes would.
        try:
            with open_warden(DAILY_100, busy_timeout_seconds=30) as warden:
                barrier.wait(timeout=30)
                decisions.append(warden.authorize(_intent("30.00", idempotency_key="order-5")))
        except BaseException as error:  # surfaced by the assertions below
            errors.append(error)

    threads = [threading.Thread(target=duplicate) for _ in range(threads_count)]
    run_threads(threads, 60)
    assert not errors, errors
    assert len(decisions) == threads_count
    assert len({d.decision_id for d in decisions}) == 1
    assert len({d.hold_id for d in decisions}) == 1
    assert sorted(d.replayed for d in decisions) == [False] + [True] * (threads_count - 1)
    assert _counters(database) == {("daily", "*"): (0, 3_000)}
    assert (count(database, "decisions"), count(database, "holds")) == (1, 1)


# Restart ------------------------------------------------------------------------------------


def test_decisions_and_holds_survive_reopening(open_warden: OpenWarden) -> None:
    with open_warden(DAILY_100) as warden:
        allowed = warden.authorize(_intent("70.00", idempotency_key="order-6"))
        denied = warden.authorize(_intent("40.00"))
        assert allowed.hold_id is not None and denied.decision_id is not None
    with open_warden(DAILY_100) as warden:
        assert allowed.decision_id is not None
        assert warden.decision(allowed.decision_id) == allowed
        assert warden.decision(denied.decision_id) == denied
        hold = warden.hold(allowed.hold_id)
        assert (hold.state, hold.amount_minor, hold.decision_id) == (
            "held",
            7_000,
            allowed.decision_id,
        )
        (status,) = warden.budgets()
        assert (status.spent_minor, status.held_minor) == (0, 7_000)
        # The budget, the idempotency key and the hold all carry over.
        assert warden.authorize(_intent("40.00")).reason_code == "budget_exceeded"
        replay = warden.authorize(_intent("70.00", idempotency_key="order-6"))
        assert replay.replayed and replay.hold_id == allowed.hold_id
        assert warden.capture(allowed.hold_id, "50.00").captured_minor == 5_000
    with open_warden(DAILY_100) as warden:
        assert warden.hold(allowed.hold_id).state == "captured"
        (status,) = warden.budgets()
        assert (status.spent_minor, status.held_minor, status.remaining_minor) == (5_000, 0, 5_000)


def test_hold_deadline_survives_reopening_with_another_ttl(
    clock: FrozenClock, open_warden: OpenWarden
) -> None:
    with open_warden(DAILY_100, hold_ttl_seconds=60) as warden:
        hold_id = warden.authorize(_intent("70.00")).hold_id
        assert hold_id is not None
    clock.advance(seconds=60)
    with open_warden(DAILY_100, hold_ttl_seconds=3_600) as warden:
        assert warden.expire_due() == 1
        assert warden.hold(hold_id).state == "expired"


def test_a_warden_used_from_another_thread_closes_cleanly(
    database: Path, clock: FrozenClock
) -> None:
    warden = Warden.open(DAILY_100, database=database, clock=clock)
    decided, closing = threading.Event(), threading.Event()
    outcomes: list[str] = []

    def work() -> None:
        outcomes.append(warden.authorize(_intent("1.00")).outcome)  # the writer thread's
        warden.audit_entries(0, 10)  # a read: this thread's own connection
        own = warden.runtime.store._local.unit.connection  # type: ignore[attr-defined]
        decided.set()
        closing.wait(timeout=30)
        own.close()  # whatever close() did, do not leak this thread's connection

    worker = threading.Thread(target=work)
    worker.start()
    try:
        assert decided.wait(timeout=30)
        assert outcomes == ["allow"]
        warden.close()
    finally:
        closing.set()
        worker.join(timeout=30)


# The budgets command ------------------------------------------------------------------------

LIFETIME_POLICY = _policy(
    """
budgets:
  - id: total
    limit: "100.00"
    currency: USD
    window: lifetime
  - id: per-agent
    limit: "80.00"
    currency: USD
    window: lifetime
    scope: agent
"""
)


def _spend_for_cli(tmp_path: Path, open_warden: OpenWarden) -> tuple[Path, Path]:
    policy_file = write_policy(tmp_path, LIFETIME_POLICY)
    database = tmp_path / "cli.db"
    with open_warden(policy_file, database=database) as warden:
        first = warden.authorize(_intent("60.00", agent="agent-a"))
        assert first.hold_id is not None
        warden.capture(first.hold_id, "25.00")
        assert warden.authorize(_intent("30.00", agent="agent-b")).outcome == "allow"
    return policy_file, database


def test_budgets_command_shows_spent_held_and_remaining(
    tmp_path: Path, open_warden: OpenWarden
) -> None:
    policy_file, database = _spend_for_cli(tmp_path, open_warden)
    result = CliRunner().invoke(
        cli, ["budgets", "--policy", str(policy_file), "--database", str(database)]
    )
    assert result.exit_code == 0, result.output
    rows = {
        tuple(line.split()[:2]): line.split()[2:]
        for line in result.output.splitlines()[1:]
        if line.strip()
    }
    assert rows == {
        ("total", "global:*"): ["lifetime", "25.00", "30.00", "45.00", "100.00", "ok", "USD"],
        ("per-agent", "agent:agent-a"): [
            "lifetime",
            "25.00",
            "0.00",
            "55.00",
            "80.00",
            "ok",
            "USD",
        ],
        ("per-agent", "agent:agent-b"): [
            "lifetime",
            "0.00",
            "30.00",
            "50.00",
            "80.00",
            "ok",
            "USD",
        ],
    }


def test_budgets_command_prints_json(tmp_path: Path, open_warden: OpenWarden) -> None:
    policy_file, database = _spend_for_cli(tmp_path, open_warden)
    result = CliRunner().invoke(
        cli, ["budgets", "--policy", str(policy_file), "--database", str(database), "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = {(row["budget_id"], row["scope_key"]): row for row in json.loads(result.output)}
    assert {
        key: (r["spent_minor"], r["held_minor"], r["remaining_minor"]) for key, r in rows.items()
    } == {
        ("total", "*"): (2_500, 3_000, 4_500),
        ("per-agent", "agent-a"): (2_500, 0, 5_500),
        ("per-agent", "agent-b"): (0, 3_000, 5_000),
    }


def test_budgets_command_without_a_ledger_fails(tmp_path: Path) -> None:
    policy_file = write_policy(tmp_path, LIFETIME_POLICY)
    missing = tmp_path / "missing.db"
    result = CliRunner().invoke(
        cli, ["budgets", "--policy", str(policy_file), "--database", str(missing)]
    )
    assert result.exit_code == 2
    assert "no ledger" in result.output
    assert not missing.exists()
