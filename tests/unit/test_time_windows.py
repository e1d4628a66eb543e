"""Time-window rules read local time from the server's UTC instant, right across DST changes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from paywarden import FrozenClock, Warden
from paywarden.policy import compile_policy, evaluate
from paywarden.testing import example_intent
from support.intents import TREASURY_TRANSFER

NEW_YORK = ZoneInfo("America/New_York")

BUSINESS_HOURS = """\
currency: USD
timezone: America/New_York
rules:
  - id: allow-business-hours
    effect: allow
    during: {days: [mon-fri], hours: "09:00-17:00"}
"""

NIGHT_SHIFT = """\
currency: USD
timezone: America/New_York
rules:
  - id: deny-night
    effect: deny
    during: {hours: "22:00-06:00"}
  - id: allow-rest
    effect: allow
    actions: [payments.transfer]
"""

SMALL_HOURS = """\
currency: USD
timezone: America/New_York
rules:
  - id: approve-small-hours
    effect: require_approval
    during: {hours: "01:30-02:30"}
  - id: allow-rest
    effect: allow
    actions: [payments.transfer]
"""

INTENT = example_intent("100.00", **TREASURY_TRANSFER)


def _outcome(policy_text: str, instant: str | datetime) -> str:
    now = datetime.fromisoformat(instant) if isinstance(instant, str) else instant
    return evaluate(compile_policy(policy_text), INTENT, now=now).outcome


@pytest.fixture
def business_warden() -> Iterator[tuple[Warden, FrozenClock]]:
    clock = FrozenClock("2026-03-06T13:30:00+00:00")  # Friday 08:30 EST
    with Warden.open(BUSINESS_HOURS, clock=clock) as warden:
        yield warden, clock


def test_business_hours_follow_the_spring_change_with_a_frozen_clock(
    business_warden: tuple[Warden, FrozenClock],
) -> None:
    warden, clock = business_warden
    assert warden.authorize(INTENT).outcome == "deny"  # Friday 08:30 EST
    clock.advance(minutes=30)  # 14:00 UTC = 09:00 EST
    assert warden.authorize(INTENT).outcome == "allow"
    clock.set("2026-03-09T13:00:00+00:00")  # Monday 09:00 EDT, after the change
    assert warden.authorize(INTENT).outcome == "allow"
    clock.advance(hours=-1)  # 12:00 UTC is 08:00 EDT, though it was 07:00 EST a week before
    assert warden.authorize(INTENT).outcome == "deny"
    clock.set("2026-03-09T20:59:59+00:00")  # 16:59:59 EDT
    assert warden.authorize(INTENT).outcome == "allow"
    clock.advance(seconds=1)  # 17:00 EDT, though a fixed EST offset would say 16:00
    assert warden.authorize(INTENT).outcome == "deny"


def test_business_hours_follow_the_autumn_change_with_a_frozen_clock(
    business_warden: tuple[Warden, FrozenClock],
) -> None:
    warden, clock = business_warden
    clock.set("2026-10-30T13:00:00+00:00")  # Friday 09:00 EDT
    assert warden.authorize(INTENT).outcome == "allow"
    clock.set("2026-11-02T13:00:00+00:00")  # Monday 08:00 EST, after the change
    assert warden.authorize(INTENT).outcome == "deny"
    clock.advance(hours=1)  # 09:00 EST
    assert warden.authorize(INTENT).outcome == "allow"
    clock.set("2026-11-02T21:59:59+00:00")  # 16:59:59 EST
    assert warden.authorize(INTENT).outcome == "allow"
    clock.advance(seconds=1)
    assert warden.authorize(INTENT).outcome == "deny"


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        ("2026-03-07", "deny"),  # Saturday
        ("2026-03-08", "deny"),  # Sunday, the 23-hour day
        ("2026-03-09", "allow"),  # Monday
        ("2026-11-01", "deny"),  # Sunday, the 25-hour day
        ("2026-11-02", "allow"),
    ],
)
def test_business_days_are_local_days(day: str, expected: str) -> None:
    noon_local = datetime.fromisoformat(f"{day}T12:00:00").replace(tzinfo=NEW_YORK)
    assert _outcome(BUSINESS_HOURS, noon_local.astimezone(UTC)) == expected


def test_every_minute_of_both_change_days_matches_the_local_wall_clock() -> None:
    policy = compile_policy(NIGHT_SHIFT)
    for start in ("2026-03-08T00:00:00+00:00", "2026-11-01T00:00:00+00:00"):
        instant = datetime.fromisoformat(start)
        for _ in range(0, 36 * 60, 7):
            local = instant.astimezone(NEW_YORK)
            night = local.hour >= 22 or local.hour < 6
            decision = evaluate(policy, INTENT, now=instant)
            assert decision.outcome == ("deny" if night else "allow"), local.isoformat()
            instant += timedelta(minutes=7)


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        ("2026-01-08T02:59:59+00:00", "allow"),  # 21:59:59 EST
        ("2026-01-08T03:00:00+00:00", "deny"),  # 22:00 EST
        ("2026-01-08T05:00:00+00:00", "deny"),  # midnight
        ("2026-01-08T10:59:59+00:00", "deny"),  # 05:59:59 EST
        ("2026-01-08T11:00:00+00:00", "allow"),  # 06:00 EST
        ("2026-07-08T02:00:00+00:00", "deny"),  # 22:00 EDT
        ("2026-07-08T01:59:59+00:00", "allow"),  # 21:59:59 EDT
        ("2026-07-08T10:00:00+00:00", "allow"),  # 06:00 EDT
    ],
)
def test_window_wrapping_midnight_covers_both_sides(instant: str, expected: str) -> None:
    assert _outcome(NIGHT_SHIFT, instant) == expected


def test_both_passes_of_the_repeated_hour_are_inside_a_local_window() -> None:
    first = datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK, fold=0)
    second = datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK, fold=1)
    assert second.astimezone(UTC) - first.astimezone(UTC) == timedelta(hours=1)
    assert _outcome(SMALL_HOURS, first.astimezone(UTC)) == "require_approval"
    assert _outcome(SMALL_HOURS, second.astimezone(UTC)) == "require_approval"
    # 02:30 local comes once, after the repeated hour, and closes the window.
    assert _outcome(SMALL_HOURS, "2026-11-01T07:30:00+00:00") == "allow"


def test_the_skipped_hour_of_the_spring_change_is_never_inside_it() -> None:
    assert _outcome(SMALL_HOURS, "2026-03-08T06:30:00+00:00") == "require_approval"  # 01:30 EST
    assert _outcome(SMALL_HOURS, "2026-03-08T06:59:59+00:00") == "require_approval"
    # One second later it is 03:00 EDT: local 02:00-02:59 does not exist that day.
    assert _outcome(SMALL_HOURS, "2026-03-08T07:00:00+00:00") == "allow"


def test_evaluation_reads_the_given_instant_not_the_system_clock() -> None:
    with time_machine.travel(datetime(2026, 1, 8, 4, 0, tzinfo=UTC), tick=False):
        assert datetime.now(UTC).hour == 4  # 23:00 in New York: night
        assert _outcome(NIGHT_SHIFT, "2026-01-07T17:00:00+00:00") == "allow"


def test_evaluation_accepts_an_aware_instant_in_any_offset() -> None:
    tokyo = datetime(2026, 1, 8, 12, 0, tzinfo=ZoneInfo("Asia/Tokyo"))  # 22:00 in New York
    assert _outcome(NIGHT_SHIFT, tokyo) == "deny"
    with pytest.raises(ValueError, match="aware"):
        evaluate(compile_policy(NIGHT_SHIFT), INTENT, now=datetime(2026, 1, 8, 12))  # noqa: DTZ001
    with pytest.raises(ValueError, match="now is required"):
        evaluate(compile_policy(NIGHT_SHIFT), INTENT)
