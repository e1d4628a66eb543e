"""`@guarded_payment`: the function runs only when allowed; its amount is captured when it
returns and voided when it raises; sync and async alike."""

from __future__ import annotations

import asyncio

import pytest
from agent_support import GOAL_POLICY

from paywarden import Warden
from paywarden.agents.guard import ApprovalPendingError, PaymentDeniedError, guarded_payment
from paywarden.errors import InvalidInputError
from support.wardens import OpenWarden

SHOP = {"recipient": "shop.example", "currency": "USD"}


@pytest.fixture
def warden(open_warden: OpenWarden) -> Warden:
    return open_warden(GOAL_POLICY)


def _spent(warden: Warden) -> tuple[int, int]:
    daily = [b for b in warden.budgets() if b.budget_id == "daily"]
    return (daily[0].spent_minor, daily[0].held_minor) if daily else (0, 0)


def test_an_allowed_call_runs_and_is_captured(warden: Warden) -> None:
    calls: list[tuple[str, str]] = []

    @guarded_payment(warden, agent="agent-a", action="purchase",
                     args={"amount": "price", "recipient": "vendor"}, currency="USD")  # fmt: skip
    def buy(price: str, vendor: str, sku: str = "sku-1") -> str:
        calls.append((price, vendor))
        return f"order for {sku}"

    assert buy("120.50", "shop.example") == "order for sku-1"
    assert calls == [("120.50", "shop.example")]
    assert _spent(warden) == (12050, 0)


def test_a_denied_call_never_runs(warden: Warden) -> None:
    calls: list[str] = []

    @guarded_payment(warden, agent="agent-a", action="purchase",
                     args={"amount": "price", "recipient": "vendor"}, currency="USD")  # fmt: skip
    def buy(price: str, vendor: str) -> None:
        calls.append(price)

    with pytest.raises(PaymentDeniedError) as denied:
        buy("50.00", "evil.example")
    assert denied.value.reason_code == "denied_by_rule"
    assert denied.value.decision_id is not None
    with pytest.raises(ApprovalPendingError) as pending:
        buy("9000.00", "shop.example")
    assert pending.value.approval_id is not None
    assert warden.approval(pending.value.approval_id).status == "pending"
    assert calls == []


def test_an_exception_voids_the_hold(warden: Warden) -> None:
    @guarded_payment(warden, agent="agent-a", action="purchase",
                     args={"amount": "price"}, **SHOP)  # fmt: skip
    def buy(price: str) -> None:
        raise ConnectionError("the shop is down")

    with pytest.raises(ConnectionError):
        buy("300.00")
    assert _spent(warden) == (0, 0)


def test_async_functions_are_guarded_too(warden: Warden) -> None:
    @guarded_payment(warden, agent="agent-a", action="purchase",
                     args={"amount": "price", "recipient": "vendor"}, currency="USD")  # fmt: skip
    async def buy(price: str, vendor: str) -> str:
        await asyncio.sleep(0)
        return "ok"

    @guarded_payment(warden, agent="agent-a", action="purchase",
                     args={"amount": "price", "recipient": "vendor"}, currency="USD")  # fmt: skip
    async def fail(price: str, vendor: str) -> str:
        raise RuntimeError("boom")

    assert asyncio.run(buy("10.00", "shop.example")) == "ok"
    with pytest.raises(RuntimeError):
        asyncio.run(fail("20.00", "shop.example"))
    with pytest.raises(PaymentDeniedError):
        asyncio.run(buy("20000.00", "shop.example"))
    assert _spent(warden) == (1000, 0)


def test_the_mapping_is_checked_when_decorating(warden: Warden) -> None:
    with pytest.raises(InvalidInputError, match="not intent fields: agent"):
        guarded_payment(warden, agent="a", action="purchase", args={"agent": "who"})
    with pytest.raises(InvalidInputError, match="no parameter cost"):
        guarded_payment(warden, agent="a", action="purchase", args={"amount": "cost"})(
            lambda price: None
        )


def test_a_float_argument_is_refused_before_anything_is_held(warden: Warden) -> None:
    @guarded_payment(warden, agent="agent-a", action="purchase",
                     args={"amount": "price"}, **SHOP)  # fmt: skip
    def buy(price: float) -> None:
        raise AssertionError("never called")

    with pytest.raises(InvalidInputError):
        buy(12.5)
    assert _spent(warden) == (0, 0)
