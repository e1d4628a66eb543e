"""Refunds: in the payment's currency, never more than was paid (in flight included), through
the rail with a stable key of their own, audited, and with the budget effect the policy sets.
Method: a real Warden on a SQLite file with the sandbox rail wrapped to script refund answers."""

from __future__ import annotations

import threading

import pytest

from paywarden import InvalidInputError, NotFoundError, StateConflictError, Warden
from paywarden.adapters.rails.sandbox import SandboxRail
from paywarden.rails import RailPayment, Receipt
from paywarden.testing import example_intent
from support.wardens import OpenWarden, no_sleep
from support.workers import run_threads

POLICY = """
currency: USD
rules:
  - {{id: pay, effect: allow, actions: ["payments.*"]}}
budgets:
  - {{id: daily, limit: 100, window: day}}
  - {{id: rolling, limit: 100, window: 24h}}
{refunds}
"""


class ScriptedRail(SandboxRail):
    """The sandbox, with refund answers scripted per call (then the real sandbox refund)."""

    def __init__(self) -> None:
        super().__init__(sleep=no_sleep)
        self.refund_script: list[Receipt | Exception] = []
        self.refund_keys: list[str] = []

    def refund(self, payment: RailPayment, amount_minor: int, refund_key: str) -> Receipt:
        self.refund_keys.append(refund_key)
        if self.refund_script:
            answer = self.refund_script.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return super().refund(payment, amount_minor, refund_key)


@pytest.fixture
def rail() -> ScriptedRail:
    return ScriptedRail()


def _open(open_warden: OpenWarden, rail: ScriptedRail, effect: str | None = None) -> Warden:
    refunds = f"refunds: {{budget_effect: {effect}}}" if effect else ""
    return open_warden(POLICY.format(refunds=refunds), rails={"sandbox": rail}, sleep=no_sleep)


@pytest.fixture
def warden(open_warden: OpenWarden, rail: ScriptedRail) -> Warden:
    return _open(open_warden, rail)


def _paid(warden: Warden, amount: str = "40.00") -> str:
    outcome = warden.pay(example_intent(amount))
    assert outcome.payment is not None and outcome.payment.state == "settled"
    return outcome.payment.payment_id


def _spent(warden: Warden) -> dict[str, int]:
    return {status.budget_id: status.spent_minor for status in warden.budgets()}


def test_a_full_refund_settles_once_and_marks_the_payment_refunded(
    warden: Warden, rail: ScriptedRail
) -> None:
    payment_id = _paid(warden)
    refund = warden.refund(payment_id, reason="customer asked")
    assert (refund.state, refund.amount_minor, refund.currency) == ("settled", 4000, "USD")
    payment = warden.payment(payment_id)
    assert (payment.state, payment.refunded_minor) == ("refunded", 4000)
    assert rail.refund_keys == [f"{payment.rail_key}_r1"]
    with pytest.raises(StateConflictError, match="refunded"):
        warden.refund(payment_id)
    kinds = [entry.kind for entry in warden.audit_trail(payment_id)]
    assert kinds[-2:] == ["refund.submitted", "refund.settled"]


def test_partial_refunds_add_up_and_never_pass_the_amount_paid(warden: Warden) -> None:
    payment_id = _paid(warden, "40.00")
    assert warden.refund(payment_id, "15.00").amount_minor == 1500
    assert warden.refund(payment_id, 10).amount_minor == 1000  # an int is major units
    with pytest.raises(StateConflictError, match=r"15\.00 USD left to refund"):
        warden.refund(payment_id, "15.01")
    assert warden.payment(payment_id).state == "settled"
    rest = warden.refund(payment_id)  # None: all that is left
    assert rest.amount_minor == 1500
    payment = warden.payment(payment_id)
    assert (payment.state, payment.refunded_minor) == ("refunded", 4000)
    assert [r.rail_key[-3:] for r in warden.refunds(payment_id)] == ["_r1", "_r2", "_r3"]


@pytest.mark.parametrize(
    ("amount", "error"),
    [
        ("5.00 EUR", InvalidInputError),
        ("-1", InvalidInputError),
        ("0", InvalidInputError),
        ("1.001", InvalidInputError),
        ("NaN", InvalidInputError),
    ],
)
def test_bad_refund_amounts_are_refused_and_change_nothing(
    warden: Warden, rail: ScriptedRail, amount: str, error: type[Exception]
) -> None:
    payment_id = _paid(warden)
    with pytest.raises(error):
        warden.refund(payment_id, amount)
    assert warden.refunds(payment_id) == []
    assert rail.refund_keys == []
    assert warden.payment(payment_id).refunded_minor == 0


def test_only_settled_payments_can_be_refunded(warden: Warden) -> None:
    with pytest.raises(NotFoundError):
        warden.refund("pay_missing")
    declined = warden.pay(example_intent("5.00", metadata={"sandbox_scenario": "declined"}))
    assert declined.payment is not None
    with pytest.raises(StateConflictError, match="failed"):
        warden.refund(declined.payment.payment_id)
    unknown = warden.pay(
        example_intent("5.00", metadata={"sandbox_scenario": "timeout_after_send"})
    )
    assert unknown.payment is not None
    with pytest.raises(StateConflictError, match="unknown"):
        warden.refund(unknown.payment.payment_id)


def test_a_failed_refund_gives_nothing_back_and_can_be_tried_again(
    warden: Warden, rail: ScriptedRail
) -> None:
    payment_id = _paid(warden)
    rail.refund_script = [Receipt("failed", None, "card closed")]
    failed = warden.refund(payment_id)
    assert (failed.state, failed.error) == ("failed", "card closed")
    assert warden.payment(payment_id).refunded_minor == 0
    again = warden.refund(payment_id)
    assert again.state == "settled"
    assert rail.refund_keys[0] != rail.refund_keys[1]  # a new refund, a new key


def test_an_unknown_refund_blocks_the_amount_and_reconcile_resends_the_same_key(
    warden: Warden, rail: ScriptedRail
) -> None:
    payment_id = _paid(warden)
    rail.refund_script = [TimeoutError("read timed out")]
    pending = warden.refund(payment_id, "30.00")
    assert pending.state == "unknown"
    assert "TimeoutError" in (pending.error or "")
    with pytest.raises(StateConflictError, match=r"10\.00 USD left"):
        warden.refund(payment_id, "10.01")  # the unknown refund counts as in flight
    assert warden.payment(payment_id).refunded_minor == 0
    warden.reconcile()
    [settled] = warden.refunds(payment_id)
    assert settled.state == "settled"
    assert rail.refund_keys == [pending.rail_key, pending.rail_key]
    warden.reconcile()  # nothing open: nothing is sent again
    assert len(rail.refund_keys) == 2
    assert warden.payment(payment_id).refunded_minor == 3000


def test_by_default_a_refund_keeps_the_budget_spent(warden: Warden) -> None:
    payment_id = _paid(warden, "40.00")
    warden.refund(payment_id)
    assert _spent(warden) == {"daily": 4000, "rolling": 4000}
    assert not warden.authorize(example_intent("70.00")).allowed


def test_budget_effect_restore_gives_the_refund_back_to_each_budget(
    rail: ScriptedRail, open_warden: OpenWarden
) -> None:
    with _open(open_warden, rail, "restore") as warden:
        payment_id = _paid(warden, "40.00")
        warden.refund(payment_id, "10.00")
        assert _spent(warden) == {"daily": 3000, "rolling": 3000}
        warden.refund(payment_id)
        assert _spent(warden) == {"daily": 0, "rolling": 0}
        assert warden.authorize(example_intent("100.00")).allowed


def test_restore_rounds_down_on_partial_refunds_and_is_exact_in_full(
    rail: ScriptedRail, open_warden: OpenWarden
) -> None:
    with _open(open_warden, rail, "restore") as warden:
        payment_id = _paid(warden, "0.03")
        warden.refund(payment_id, "0.01")
        assert _spent(warden)["daily"] == 2  # 3 * 1 // 3 = 1 given back
        warden.refund(payment_id, "0.01")
        assert _spent(warden)["daily"] == 1
        warden.refund(payment_id)
        assert _spent(warden) == {"daily": 0, "rolling": 0}


def test_concurrent_refunds_never_give_back_more_than_was_paid(
    rail: ScriptedRail, open_warden: OpenWarden
) -> None:
    with _open(open_warden, rail) as warden:
        payment_id = _paid(warden, "40.00")
    results: list[str] = []

    def refund_ten() -> None:
        with _open(open_warden, rail) as own:
            try:
                results.append(own.refund(payment_id, "10.00").state)
            except StateConflictError:
                results.append("refused")

    threads = [threading.Thread(target=refund_ten) for _ in range(8)]
    run_threads(threads, None)
    assert sorted(results) == ["refused"] * 4 + ["settled"] * 4
    with _open(open_warden, rail) as warden:
        assert warden.payment(payment_id).refunded_minor == 4000
