"""Clocks. Every window, expiry and audit time comes from one injectable clock in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


def to_us(instant: datetime) -> int:
    """Microseconds since the Unix epoch, exactly (no float arithmetic)."""
    delta = instant - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The server's wall clock in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that moves only when told to; for tests and simulations."""

    def __init__(self, start: datetime | str = "2026-01-05T12:00:00+00:00") -> None:
        instant = datetime.fromisoformat(start) if isinstance(start, str) else start
        if instant.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")
        self._now = instant.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float = 0, **delta: float) -> datetime:
        self._now += timedelta(seconds=seconds, **delta)
        return self._now

    def set(self, instant: datetime | str) -> datetime:
        value = datetime.fromisoformat(instant) if isinstance(instant, str) else instant
        if value.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")
        self._now = value.astimezone(UTC)
        return self._now
