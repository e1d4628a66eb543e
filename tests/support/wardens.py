"""What a test does with a Warden besides the fixtures: the `open_warden` fixture's type, a
`sleep` that returns at once (no real backoff waits in tests), the usual operators, and grant
requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from paywarden import Money, Warden
from paywarden.actions.grants import GrantRequest


class OpenWarden(Protocol):
    """`open_warden(policy, **options)`: `Warden.open` on the test's `database` with its `clock`
    unless the options name others (`database=":memory:"` for no file, `clock=None` for the
    system clock); every Warden it opened is closed when the test ends."""

    def __call__(self, policy: str | Path, /, **options: Any) -> Warden: ...


def no_sleep(seconds: float) -> None:
    """A `sleep` for rails and Wardens that returns at once."""
    return None


def add_operators(warden: Warden) -> Warden:
    """Register operators `alice` (Alice Example) and `bob` (Bob Example)."""
    warden.add_operator("alice", name="Alice Example")
    warden.add_operator("bob", name="Bob Example")
    return warden


def grant_request(
    per_payment: str = "2500.00",
    total: str = "10000.00",
    *,
    agent: str = "agent-a",
    action: str = "payments.*",
    currency: str = "USD",
    expires_in_seconds: int = 3600,
    uses_max: int | None = None,
    recipients: tuple[str, ...] = (),
) -> GrantRequest:
    """What an operator grants, amounts in major units of `currency`: by default agent-a may
    pay up to 2,500.00 USD a payment and 10,000.00 USD in all for an hour."""
    return GrantRequest(
        agent,
        action,
        Money.parse(per_payment, currency),
        Money.parse(total, currency),
        expires_in_seconds,
        uses_max,
        recipients,
    )
