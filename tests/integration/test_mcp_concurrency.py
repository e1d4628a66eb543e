"""Concurrent `request_payment` calls cannot overspend: 20 calls of 40 at once against an hourly
budget of 200 make exactly 5 payments. Method: one in-process MCP client per mode firing all
calls together; the server runs each on its own worker thread with its own SQLite connection
to one ledger file, so the budget check is raced for real."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import anyio
import pytest
from mcp import Client

from paywarden import Warden
from paywarden.actions.payments import PaymentOutcome
from paywarden.intent import PaymentIntent
from support.intents import intent_body
from support.mcp import key_server
from support.policies import policy_text
from support.wardens import OpenWarden

POLICY = policy_text("pay_200_an_hour_per_agent")
CALLS = 20


class InFlight:
    """Counts how many `pay` calls overlap, to show the race is real."""

    def __init__(self, warden: Warden) -> None:
        self._pay = warden.pay
        self._lock = threading.Lock()
        self.now = self.most = 0

    def __call__(self, intent: PaymentIntent, *, actor: str | None = None) -> PaymentOutcome:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            return self._pay(intent, actor=actor)
        finally:
            with self._lock:
                self.now -= 1


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_twenty_concurrent_payments_of_40_against_200_pay_exactly_5(
    open_warden: OpenWarden, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_warden(POLICY) as warden:
        in_flight = InFlight(warden)
        monkeypatch.setattr(warden, "pay", in_flight)
        secret, _ = warden.create_key(role="agent", agent="agent-a", actor="t")
        server = key_server(warden, secret)
        results: list[dict[str, Any]] = []

        async def pay(client: Client, index: int) -> None:
            result = await client.call_tool(
                "request_payment", intent_body("40.00", recipient=f"vendor-{index}.example.com")
            )
            assert not result.is_error and result.structured_content is not None
            results.append(result.structured_content)

        async def main() -> None:
            async with Client(server, mode=mode) as client, anyio.create_task_group() as group:
                for index in range(CALLS):
                    group.start_soon(pay, client, index)

        anyio.run(main)
        assert in_flight.most > 1, "the calls did not overlap"
        assert Counter(r["status"] for r in results) == {"paid": 5, "denied": 15}
        assert {r["reason_code"] for r in results if r["status"] == "denied"} == {"budget_exceeded"}
        assert len(warden.payments(state="settled")) == 5
        (budget,) = warden.budgets()
        assert (budget.spent_minor, budget.held_minor) == (20000, 0)
