"""Public test utilities: deterministic clocks and ids, and a ready-made payment intent.

With a FrozenClock and SequentialIds, decisions, holds and audit hashes are the same on every
run, so whole decisions and audit entries can be compared exactly in tests.
"""

from __future__ import annotations

import itertools
from typing import Any

from paywarden.clock import FrozenClock
from paywarden.intent import PaymentIntent

__all__ = ["FrozenClock", "SequentialIds", "example_intent"]


class SequentialIds:
    """Ids `dec_000001`, `hold_000002`, ...: one counter shared by every prefix."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def __call__(self, prefix: str) -> str:
        return f"{prefix}_{next(self._counter):06d}"


def example_intent(amount: str = "500.00", **changes: Any) -> PaymentIntent:
    """A valid transfer intent (agent `agent-a`, USD, to `vendor.example.com`); override any
    field by keyword."""
    fields: dict[str, Any] = {
        "agent": "agent-a",
        "action": "payments.transfer",
        "amount": amount,
        "currency": "USD",
        "recipient": "vendor.example.com",
    }
    fields.update(changes)
    return PaymentIntent(**fields)
