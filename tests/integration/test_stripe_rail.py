"""The Stripe rail against a fake Stripe API on loopback: what the official SDK sends (key,
version, form body), how every Stripe answer becomes a receipt, idempotency keys reused on every
SDK and paywarden retry and on reconciliation, and end-to-end payments through a Warden in which
money moves exactly once. Method: `tests/fakes/stripe_server.py` is a real HTTP server that
records every request and counts, per idempotency key, how many times money really moved."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import stripe

from paywarden import FrozenClock, InvalidInputError, Warden
from paywarden.adapters.rails.stripe import StripeRail, stripe_amount
from paywarden.payments import PaymentOutcome
from paywarden.rails import RailPayment, Receipt, load_rail
from paywarden.testing import example_intent

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the fakes package
from fakes.stripe_server import FakeStripe, Recorded

KEY = "pw_hold_000001"
POLICY = """
currency: USD
rules:
  - {id: pay, effect: allow, actions: ["payments.*", "vendor.*"]}
budgets:
  - {id: daily, limit: 100000, window: day}
"""

MakeRail = Callable[..., StripeRail]


@pytest.fixture(autouse=True)
def no_sdk_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK sleeps at least 0.5 s before each of its retries; tests need no real waits."""
    monkeypatch.setattr(stripe.RequestsClient, "_sleep_time_seconds", lambda self, n: 0.0)


@pytest.fixture
def server() -> Iterator[FakeStripe]:
    with FakeStripe(api_key="sk_test_x") as fake:
        yield fake


@pytest.fixture
def make_rail(server: FakeStripe) -> Iterator[MakeRail]:
    rails: list[StripeRail] = []

    def make(**options: Any) -> StripeRail:
        settings: dict[str, Any] = {
            "api_key": "sk_test_x",
            "api_base": server.url,
            "max_network_retries": 0,
        }
        settings.update(options)
        rail = StripeRail(**settings)
        rails.append(rail)
        return rail

    yield make
    for rail in rails:
        rail.close()


@pytest.fixture
def rail(make_rail: MakeRail) -> StripeRail:
    return make_rail()


def _payment(**changes: Any) -> RailPayment:
    fields: dict[str, Any] = {
        "payment_id": "pay_000001",
        "idempotency_key": KEY,
        "agent": "agent-a",
        "action": "payments.charge",
        "amount_minor": 1250,
        "currency": "USD",
        "recipient": "api.example.com",
        "metadata": {"stripe_payment_method": "pm_card_visa"},
    }
    fields.update(changes)
    return RailPayment(**fields)


def _only(requests: list[Recorded]) -> Recorded:
    assert len(requests) == 1, requests
    return requests[0]


# What the SDK sends -----------------------------------------------------------------------


def test_a_charge_is_one_confirmed_payment_intent_sent_with_the_payment_key(
    server: FakeStripe, rail: StripeRail
) -> None:
    receipt = rail.pay(_payment())
    assert receipt.status == "settled" and receipt.retryable is False
    assert receipt.rail_payment_id is not None and receipt.rail_payment_id.startswith("pi_")
    sent = _only(server.requests)
    assert (sent.method, sent.path) == ("POST", "/v1/payment_intents")
    assert sent.idempotency_key == KEY
    assert sent.headers["authorization"] == "Bearer sk_test_x"
    assert sent.headers["stripe-version"] == stripe.api_version
    assert sent.headers["user-agent"].startswith("Stripe/v1 PythonBindings/")
    assert sent.form == {
        "amount": "1250",
        "currency": "usd",
        "confirm": "true",
        "payment_method": "pm_card_visa",
        "error_on_requires_action": "true",
        "automatic_payment_methods": {"enabled": "true", "allow_redirects": "never"},
        "metadata": {
            "paywarden_payment_id": "pay_000001",
            "paywarden_key": KEY,
            "paywarden_agent": "agent-a",
            "paywarden_action": "payments.charge",
        },
    }
    assert server.moved(KEY) == 1


def test_a_customers_saved_payment_method_is_charged_off_session(
    server: FakeStripe, rail: StripeRail
) -> None:
    metadata = {"stripe_payment_method": "pm_card_visa", "stripe_customer": "cus_123"}
    assert rail.pay(_payment(metadata=metadata)).status == "settled"
    form = _only(server.requests).form
    assert (form["customer"], form["off_session"]) == ("cus_123", "true")
    assert "error_on_requires_action" not in form


def test_the_api_version_and_connected_account_are_sent_when_configured(
    server: FakeStripe, make_rail: MakeRail
) -> None:
    rail = make_rail(stripe_version="2024-06-20", account="acct_platform1")
    assert rail.pay(_payment()).status == "settled"
    headers = _only(server.requests).headers
    assert (headers["stripe-version"], headers["stripe-account"]) == (
        "2024-06-20",
        "acct_platform1",
    )


@pytest.mark.parametrize(
    ("currency", "amount_minor", "sent"),
    [
        ("USD", 1250, "1250"),
        ("JPY", 1000, "1000"),  # zero-decimal: yen, not hundredths
        ("KWD", 1230, "1230"),  # three-decimal: fils, ending in 0
        ("ISK", 5, "500"),  # ISO 4217 has no decimals; Stripe's API keeps two
        ("MGA", 500, "5"),  # ISO 4217 has two decimals; Stripe's API has none
    ],
)
def test_amounts_are_sent_in_stripes_unit_and_currencies_in_lower_case(
    server: FakeStripe, rail: StripeRail, currency: str, amount_minor: int, sent: str
) -> None:
    receipt = rail.pay(_payment(currency=currency, amount_minor=amount_minor))
    assert receipt.status == "settled"
    form = _only(server.requests).form
    assert (form["amount"], form["currency"]) == (sent, currency.lower())
    assert stripe_amount(amount_minor, currency) == int(sent)


@pytest.mark.parametrize(
    ("currency", "amount_minor", "reason"),
    [
        ("KWD", 1234, "end in 0"),
        ("MGA", 501, "whole units"),
        ("USDC", 1_000_000, "not an ISO 4217"),
    ],
)
def test_amounts_stripe_cannot_take_exactly_are_refused_before_anything_is_sent(
    server: FakeStripe, rail: StripeRail, currency: str, amount_minor: int, reason: str
) -> None:
    receipt = rail.pay(_payment(currency=currency, amount_minor=amount_minor))
    assert (receipt.status, receipt.retryable) == ("failed", False)
    assert reason in str(receipt.error)
    assert server.requests == []


def test_a_charge_without_a_payment_method_or_customer_is_refused_before_sending(
    server: FakeStripe, rail: StripeRail
) -> None:
    receipt = rail.pay(_payment(metadata={}))
    assert receipt.status == "failed" and "stripe_payment_method" in str(receipt.error)
    assert server.requests == []


# Charge outcomes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "fault", "decline_code"),
    [
        ("pm_card_chargeDeclinedInsufficientFunds", None, "insufficient_funds"),
        ("pm_card_visa", "card_declined", "generic_decline"),
        ("pm_card_authenticationRequired", None, "authentication_required"),
    ],
)
def test_a_decline_is_a_definite_failure_that_keeps_the_decline_code(
    server: FakeStripe, rail: StripeRail, method: str, fault: Any, decline_code: str
) -> None:
    if fault:
        server.inject(fault)
    receipt = rail.pay(_payment(metadata={"stripe_payment_method": method}))
    assert (receipt.status, receipt.retryable) == ("failed", False)
    assert f"decline_code={decline_code}" in str(receipt.error)
    assert "CardError HTTP 402" in str(receipt.error)
    assert receipt.rail_payment_id is not None and receipt.rail_payment_id.startswith("pi_")
    assert server.moved(KEY) == 0


def test_a_processing_payment_is_pending_and_settles_when_asked_later(
    server: FakeStripe, rail: StripeRail
) -> None:
    server.inject("processing")
    receipt = rail.pay(_payment())
    assert receipt.status == "pending" and receipt.rail_payment_id is not None
    later = rail.status(_payment(rail_payment_id=receipt.rail_payment_id))
    assert later == Receipt("settled", receipt.rail_payment_id)
    assert [(r.method, r.path) for r in server.requests[1:]] == [
        ("GET", f"/v1/payment_intents/{receipt.rail_payment_id}")
    ]


def test_a_payment_intent_waiting_for_the_customer_is_canceled_then_failed(
    server: FakeStripe, rail: StripeRail
) -> None:
    server.inject("requires_action")
    receipt = rail.pay(_payment())
    assert receipt.status == "failed" and "requires_action" in str(receipt.error)
    assert receipt.rail_payment_id is not None
    cancel = server.requests[-1]
    assert cancel.path == f"/v1/payment_intents/{receipt.rail_payment_id}/cancel"
    assert cancel.idempotency_key == f"{KEY}_cancel"
    assert server.object(receipt.rail_payment_id)["status"] == "canceled"


# Transfers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "recipient", "metadata", "destination"),
    [
        ("payments.charge", "acct_1VendorXyZ", {}, "acct_1VendorXyZ"),
        ("vendor.payout", "acct_1VendorXyZ", {}, "acct_1VendorXyZ"),
        ("payments.transfer", "vendor.example.com", {"stripe_destination": "acct_9"}, "acct_9"),
    ],
)
def test_a_payout_is_a_transfer_to_the_connected_account(
    server: FakeStripe,
    rail: StripeRail,
    action: str,
    recipient: str,
    metadata: dict[str, object],
    destination: str,
) -> None:
    receipt = rail.pay(_payment(action=action, recipient=recipient, metadata=metadata))
    assert receipt.status == "settled" and str(receipt.rail_payment_id).startswith("tr_")
    sent = _only(server.requests)
    assert (sent.path, sent.idempotency_key) == ("/v1/transfers", KEY)
    assert sent.form["destination"] == destination  # exactly as sent: ids are case-sensitive
    assert (sent.form["amount"], sent.form["currency"]) == ("1250", "usd")
    assert sent.form["transfer_group"] == KEY
    assert sent.form["metadata"]["paywarden_key"] == KEY
    assert server.moved(KEY) == 1


def test_a_payout_without_a_connected_account_is_refused_before_sending(
    server: FakeStripe, rail: StripeRail
) -> None:
    receipt = rail.pay(_payment(action="payments.transfer", metadata={}))
    assert receipt.status == "failed" and "acct_" in str(receipt.error)
    assert server.requests == []


# Errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "retryable", "moved"),
    [
        ("429", "failed", True, 0),  # the rate limiter runs before anything else
        ("500", "unknown", False, 0),  # a 5xx may stand for a payment that ran...
        ("500_stored", "unknown", False, 1),  # ...as here, where Stripe replays the 500
        ("drop_after", "unknown", False, 1),  # ran, answer lost
        ("drop_before", "unknown", False, 0),  # sent, answer lost: the rail cannot tell
        ("conflict", "unknown", False, 0),  # 409: another request with the key is running
    ],
)
def test_each_stripe_error_maps_to_a_receipt_that_never_calls_moved_money_failed(
    server: FakeStripe, rail: StripeRail, fault: Any, status: str, retryable: bool, moved: int
) -> None:
    server.inject(fault)
    receipt = rail.pay(_payment())
    assert (receipt.status, receipt.retryable) == (status, retryable)
    assert server.moved(KEY) == moved
    assert receipt.error


def test_a_timeout_after_sending_is_unknown(server: FakeStripe, make_rail: MakeRail) -> None:
    server.inject("slow")  # runs, then answers after the client gave up
    receipt = make_rail(timeout_seconds=0.2).pay(_payment())
    assert (receipt.status, receipt.retryable) == ("unknown", False)
    assert "APIConnectionError" in str(receipt.error) and "Timeout" in str(receipt.error)
    assert server.moved(KEY) == 1


def test_client_errors_are_definite_failures(server: FakeStripe, make_rail: MakeRail) -> None:
    wrong_key = make_rail(api_key="sk_test_wrong")
    receipt = wrong_key.pay(_payment())
    assert (receipt.status, receipt.retryable) == ("failed", False)
    assert "AuthenticationError HTTP 401" in str(receipt.error)
    assert "sk_test_wrong" not in str(receipt.error)
    missing = make_rail().pay(_payment(recipient="acct_missing"))
    assert (missing.status, missing.retryable) == ("failed", False)
    assert "InvalidRequestError HTTP 400 code=resource_missing" in str(missing.error)


def test_a_connection_that_was_never_made_is_a_retryable_failure(make_rail: MakeRail) -> None:
    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    receipt = make_rail(api_base=f"http://127.0.0.1:{port}").pay(_payment())
    assert (receipt.status, receipt.retryable) == ("failed", True)
    assert "APIConnectionError" in str(receipt.error)


def test_the_same_key_with_other_parameters_is_unknown_never_failed(
    server: FakeStripe, rail: StripeRail
) -> None:
    assert rail.pay(_payment()).status == "settled"
    receipt = rail.pay(_payment(amount_minor=9999))
    assert receipt.status == "unknown" and "IdempotencyError" in str(receipt.error)
    assert server.moved(KEY) == 1


# SDK retries ------------------------------------------------------------------------------


def test_sdk_retries_of_a_5xx_reuse_the_payment_key(
    server: FakeStripe, make_rail: MakeRail
) -> None:
    server.inject("500", times=2)
    receipt = make_rail(max_network_retries=2).pay(_payment())
    assert receipt.status == "settled"
    posts = server.posts("/v1/payment_intents")
    assert [p.status for p in posts] == [500, 500, 200]
    assert {p.idempotency_key for p in posts} == {KEY}
    assert server.moved(KEY) == 1


def test_an_sdk_retry_after_a_lost_answer_gets_the_stored_payment_back(
    server: FakeStripe, make_rail: MakeRail
) -> None:
    server.inject("drop_after")
    receipt = make_rail(max_network_retries=1).pay(_payment())
    assert receipt.status == "settled"
    posts = server.posts("/v1/payment_intents")
    assert [(p.status, p.replayed) for p in posts] == [(None, False), (200, True)]
    assert {p.idempotency_key for p in posts} == {KEY}
    assert server.moved(KEY) == 1


def test_a_rate_limit_after_an_ambiguous_attempt_is_unknown(
    server: FakeStripe, make_rail: MakeRail
) -> None:
    server.inject("drop_after")
    server.inject("429")
    receipt = make_rail(max_network_retries=1).pay(_payment())
    assert receipt.status == "unknown" and "earlier attempt" in str(receipt.error)
    assert server.moved(KEY) == 1  # the first attempt ran: `failed` would have been a lie


# status -----------------------------------------------------------------------------------


def test_status_by_rail_id_only_reads(server: FakeStripe, rail: StripeRail) -> None:
    paid = rail.pay(_payment())
    assert rail.status(_payment(rail_payment_id=paid.rail_payment_id)) == paid
    assert [r.method for r in server.requests] == ["POST", "GET"]


def test_status_finds_a_payment_whose_answer_was_lost_by_searching_its_key(
    server: FakeStripe, rail: StripeRail
) -> None:
    server.inject("drop_after")
    assert rail.pay(_payment()).status == "unknown"
    receipt = rail.status(_payment())
    assert receipt.status == "settled" and receipt.rail_payment_id is not None
    search = server.requests[1]
    assert (search.path, search.query["query"]) == (
        "/v1/payment_intents/search",
        f"metadata['paywarden_key']:'{KEY}'",
    )
    assert server.requests[2].path == f"/v1/payment_intents/{receipt.rail_payment_id}"
    assert len(server.posts("/v1/payment_intents")) == 1  # nothing created
    assert server.moved(KEY) == 1


def test_status_resends_the_same_create_when_search_cannot_see_it_yet(
    server: FakeStripe, rail: StripeRail
) -> None:
    server.inject("drop_after")
    assert rail.pay(_payment()).status == "unknown"
    server.search_visible = False  # search lags writes
    assert rail.status(_payment()).status == "settled"
    posts = server.posts("/v1/payment_intents")
    assert [(p.idempotency_key, p.replayed) for p in posts] == [(KEY, False), (KEY, True)]
    assert posts[0].form == posts[1].form
    assert server.moved(KEY) == 1


def test_status_makes_a_payment_that_never_reached_stripe_exactly_once(
    server: FakeStripe, rail: StripeRail
) -> None:
    server.inject("drop_before")
    assert rail.pay(_payment()).status == "unknown"
    assert server.moved(KEY) == 0
    assert rail.status(_payment()).status == "settled"
    assert rail.status(_payment()).status == "settled"
    assert server.moved(KEY) == 1


def test_status_sends_nothing_when_it_cannot_look_and_stays_unknown(
    server: FakeStripe, rail: StripeRail
) -> None:
    server.inject("drop_before")
    rail.pay(_payment())
    server.search_enabled = False
    receipt = rail.status(_payment())
    assert receipt.status == "unknown" and "lookup" in str(receipt.error)
    assert len(server.posts("/v1/payment_intents")) == 1


def test_status_of_a_processing_payment_reads_its_current_state(
    server: FakeStripe, rail: StripeRail
) -> None:
    server.inject("processing")
    assert rail.pay(_payment()).status == "pending"
    server.search_visible = False  # found through the replay, which says `processing`
    assert rail.status(_payment()).status == "settled"  # ...then read by id: `succeeded`


def test_status_of_a_transfer_whose_answer_was_lost_lists_its_group(
    server: FakeStripe, rail: StripeRail
) -> None:
    payout = _payment(recipient="acct_1VendorXyZ", metadata={})
    server.inject("drop_after")
    assert rail.pay(payout).status == "unknown"
    receipt = rail.status(payout)
    assert receipt.status == "settled" and str(receipt.rail_payment_id).startswith("tr_")
    listed = server.requests[1]
    assert (listed.method, listed.path, listed.query["transfer_group"]) == (
        "GET",
        "/v1/transfers",
        KEY,
    )
    assert server.moved(KEY) == 1


# Refunds ----------------------------------------------------------------------------------


def test_a_charge_is_refunded_in_parts_once_per_refund_key(
    server: FakeStripe, rail: StripeRail
) -> None:
    paid = rail.pay(_payment())
    settled = _payment(rail_payment_id=paid.rail_payment_id)
    first = rail.refund(settled, 500, "rf_1")
    assert first.status == "settled" and str(first.rail_payment_id).startswith("re_")
    assert rail.refund(settled, 500, "rf_1") == first  # found by its key, not sent again
    rest = rail.refund(settled, 750, "rf_2")
    assert rest.status == "settled" and rest.rail_payment_id != first.rail_payment_id
    too_much = rail.refund(settled, 1, "rf_3")
    assert (too_much.status, too_much.retryable) == ("failed", False)
    assert "amount_too_large" in str(too_much.error)
    refunds = server.posts("/v1/refunds")
    assert [(r.idempotency_key, r.form["amount"]) for r in refunds] == [
        ("rf_1", "500"),
        ("rf_2", "750"),
        ("rf_3", "1"),
    ]
    assert refunds[0].form["payment_intent"] == paid.rail_payment_id
    assert refunds[0].form["metadata"]["paywarden_refund_key"] == "rf_1"
    assert (server.moved("rf_1"), server.moved("rf_2"), server.moved("rf_3")) == (1, 1, 0)


def test_a_refund_whose_answer_was_lost_is_found_when_it_is_sent_again(
    server: FakeStripe, rail: StripeRail
) -> None:
    paid = rail.pay(_payment())
    settled = _payment(rail_payment_id=paid.rail_payment_id)
    server.inject("drop_after")
    assert rail.refund(settled, 1250, "rf_1").status == "unknown"
    again = rail.refund(settled, 1250, "rf_1")  # what reconcile does
    assert again.status == "settled" and str(again.rail_payment_id).startswith("re_")
    assert len(server.posts("/v1/refunds")) == 1
    assert server.moved("rf_1") == 1


def test_a_pending_refund_is_read_again_not_sent_again(
    server: FakeStripe, rail: StripeRail
) -> None:
    paid = rail.pay(_payment())
    settled = _payment(rail_payment_id=paid.rail_payment_id)
    server.inject("refund_pending")
    pending = rail.refund(settled, 300, "rf_1")
    assert pending.status == "pending"
    assert rail.refund(settled, 300, "rf_1") == Receipt("settled", pending.rail_payment_id)
    assert len(server.posts("/v1/refunds")) == 1


def test_a_refund_finds_the_charge_by_its_key_when_the_rail_id_is_unknown(
    server: FakeStripe, rail: StripeRail
) -> None:
    paid = rail.pay(_payment())
    assert rail.refund(_payment(), 1250, "rf_full").status == "settled"
    assert server.posts("/v1/refunds")[0].form["payment_intent"] == paid.rail_payment_id


def test_a_payout_is_refunded_by_transfer_reversals(server: FakeStripe, rail: StripeRail) -> None:
    payout = _payment(recipient="acct_1VendorXyZ", metadata={})
    paid = rail.pay(payout)
    settled = _payment(
        recipient="acct_1VendorXyZ", metadata={}, rail_payment_id=paid.rail_payment_id
    )
    part = rail.refund(settled, 250, "rv_1")
    assert rail.refund(settled, 250, "rv_1") == part  # found by its key, not sent again
    rest = rail.refund(settled, 1000, "rv_2")
    assert part.status == rest.status == "settled"
    assert str(part.rail_payment_id).startswith("trr_")
    reversals = server.posts(f"/v1/transfers/{paid.rail_payment_id}/reversals")
    assert [(r.idempotency_key, r.form["amount"]) for r in reversals] == [
        ("rv_1", "250"),
        ("rv_2", "1000"),
    ]
    assert server.object(str(paid.rail_payment_id))["reversed"] is True
    assert (server.moved("rv_1"), server.moved("rv_2")) == (1, 1)


def test_nothing_is_refunded_without_a_stripe_payment(server: FakeStripe, rail: StripeRail) -> None:
    receipt = rail.refund(_payment(), 100, "rf_none")
    assert receipt.status == "failed" and "nothing refunded" in str(receipt.error)
    assert server.posts("/v1/refunds") == []


def test_a_refund_that_cannot_look_is_unknown_not_failed(
    server: FakeStripe, rail: StripeRail
) -> None:
    paid = rail.pay(_payment())
    server.inject("500")  # the lookup fails: an earlier attempt with this key may have refunded
    receipt = rail.refund(_payment(rail_payment_id=paid.rail_payment_id), 100, "rf_1")
    assert receipt.status == "unknown" and "lookup" in str(receipt.error)
    assert server.posts("/v1/refunds") == []


# Configuration ----------------------------------------------------------------------------


def test_the_registered_rail_configures_itself_from_the_environment(
    server: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_x")
    monkeypatch.setenv("PAYWARDEN_STRIPE_API_BASE", server.url + "/")
    rail = load_rail("stripe")
    assert isinstance(rail, StripeRail) and rail.name == "stripe"
    with rail:
        assert rail.api_base == server.url
        assert rail.pay(_payment()).status == "settled"
    assert _only(server.requests).headers["authorization"] == "Bearer sk_test_x"


def test_arguments_win_over_the_environment(
    server: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_from_env")
    monkeypatch.setenv("PAYWARDEN_STRIPE_API_BASE", "https://stripe.invalid")
    with StripeRail(api_key="sk_test_x", api_base=server.url, max_network_retries=0) as rail:
        assert rail.pay(_payment()).status == "settled"
    assert _only(server.requests).headers["authorization"] == "Bearer sk_test_x"


def test_a_missing_api_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    with pytest.raises(InvalidInputError, match="STRIPE_API_KEY"):
        load_rail("stripe")
    with pytest.raises(InvalidInputError, match="STRIPE_API_KEY"):
        StripeRail(api_key="")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"api_key": "pk_test_publishable"}, "secret"),
        ({"api_key": "sk_test_x", "api_base": "http://api.example.com"}, "https"),
        ({"api_key": "sk_test_x", "timeout_seconds": 0}, "timeout_seconds"),
        ({"api_key": "sk_test_x", "max_network_retries": -1}, "max_network_retries"),
    ],
)
def test_unsafe_or_invalid_settings_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        StripeRail(**options)


# Through a Warden -------------------------------------------------------------------------


@pytest.fixture
def open_warden(tmp_path: Path) -> Iterator[Callable[[StripeRail], Warden]]:
    opened: list[Warden] = []

    def open_(rail: StripeRail) -> Warden:
        warden = Warden.open(
            POLICY,
            database=tmp_path / f"ledger{len(opened)}.db",
            clock=FrozenClock(),
            rails={"stripe": rail},
            sleep=lambda seconds: None,
        )
        opened.append(warden)
        return warden

    yield open_
    for warden in opened:
        warden.close()


def _pay(warden: Warden, method: str = "pm_card_visa", **changes: Any) -> PaymentOutcome:
    fields: dict[str, Any] = {
        "action": "payments.charge",
        "rail": "stripe",
        "recipient": "api.example.com",
        "metadata": {"stripe_payment_method": method},
    }
    fields.update(changes)
    return warden.pay(example_intent("12.50", **fields))


def _budget(warden: Warden) -> tuple[int, int]:
    (status,) = warden.budgets()
    return status.spent_minor, status.held_minor


def test_a_warden_payment_settles_and_captures_its_hold(
    server: FakeStripe, rail: StripeRail, open_warden: Callable[[StripeRail], Warden]
) -> None:
    warden = open_warden(rail)
    outcome = _pay(warden)
    assert outcome.payment is not None and outcome.state == "settled"
    assert str(outcome.payment.rail_payment_id).startswith("pi_")
    assert outcome.payment.rail_key == f"pw_{outcome.decision.hold_id}"
    assert _only(server.requests).idempotency_key == outcome.payment.rail_key
    assert warden.hold(str(outcome.decision.hold_id)).state == "captured"
    assert _budget(warden) == (1250, 0)
    assert server.moved(outcome.payment.rail_key) == 1
    assert warden.verify_audit().ok


def test_a_declined_warden_payment_voids_its_hold(
    server: FakeStripe, rail: StripeRail, open_warden: Callable[[StripeRail], Warden]
) -> None:
    warden = open_warden(rail)
    outcome = _pay(warden, "pm_card_chargeDeclined")
    assert outcome.payment is not None and outcome.state == "failed"
    assert "card_declined" in str(outcome.payment.error)
    assert warden.hold(str(outcome.decision.hold_id)).state == "voided"
    assert _budget(warden) == (0, 0)
    assert len(server.requests) == 1  # a decline is an answer: never retried


@pytest.mark.parametrize(
    ("fault", "sdk_retries"),
    [("500", 2), ("429", 0)],  # the SDK retries 5xx itself; paywarden retries a 429
)
def test_retries_by_the_sdk_and_by_paywarden_reuse_the_rail_key(
    server: FakeStripe,
    make_rail: MakeRail,
    open_warden: Callable[[StripeRail], Warden],
    fault: Any,
    sdk_retries: int,
) -> None:
    server.inject(fault, times=2)
    warden = open_warden(make_rail(max_network_retries=sdk_retries))
    outcome = _pay(warden)
    assert outcome.payment is not None and outcome.state == "settled"
    posts = server.posts("/v1/payment_intents")
    assert [p.status for p in posts] == [int(fault), int(fault), 200]
    assert {p.idempotency_key for p in posts} == {outcome.payment.rail_key}
    assert server.moved(outcome.payment.rail_key) == 1
    assert _budget(warden) == (1250, 0)


@pytest.mark.parametrize("search_lags", [False, True])
def test_a_lost_answer_keeps_the_hold_and_reconcile_settles_it_once(
    server: FakeStripe,
    rail: StripeRail,
    open_warden: Callable[[StripeRail], Warden],
    search_lags: bool,
) -> None:
    warden = open_warden(rail)
    server.inject("drop_after")
    outcome = _pay(warden)
    assert outcome.payment is not None and outcome.state == "unknown"
    assert warden.hold(str(outcome.decision.hold_id)).state == "held"
    assert _budget(warden) == (0, 1250)
    server.search_visible = not search_lags
    [settled] = warden.reconcile()
    assert settled.state == "settled" and str(settled.rail_payment_id).startswith("pi_")
    assert warden.reconcile() == []
    assert _budget(warden) == (1250, 0)
    key = outcome.payment.rail_key
    assert server.moved(key) == 1
    assert {r.idempotency_key for r in server.requests if r.method == "POST"} == {key}
    assert len(server.posts("/v1/payment_intents")) == (2 if search_lags else 1)


def test_a_stored_5xx_is_reconciled_to_the_payment_that_did_run(
    server: FakeStripe, rail: StripeRail, open_warden: Callable[[StripeRail], Warden]
) -> None:
    warden = open_warden(rail)
    server.inject("500_stored")
    outcome = _pay(warden)
    assert outcome.payment is not None and outcome.state == "unknown"
    [settled] = warden.reconcile()
    assert settled.state == "settled"
    assert server.moved(outcome.payment.rail_key) == 1


def test_a_processing_payment_stays_submitted_until_reconcile_settles_it(
    server: FakeStripe, rail: StripeRail, open_warden: Callable[[StripeRail], Warden]
) -> None:
    warden = open_warden(rail)
    outcome = _pay(warden, "pm_usBankAccount")
    assert outcome.payment is not None and outcome.state == "submitted"
    assert outcome.receipt is not None and outcome.receipt.status == "pending"
    assert _budget(warden) == (0, 1250)
    [settled] = warden.reconcile()
    assert settled.state == "settled"
    assert _budget(warden) == (1250, 0)
    assert server.moved(outcome.payment.rail_key) == 1


def test_a_warden_payout_to_a_connected_account_is_a_transfer(
    server: FakeStripe, rail: StripeRail, open_warden: Callable[[StripeRail], Warden]
) -> None:
    warden = open_warden(rail)
    outcome = _pay(warden, action="payments.transfer", recipient="acct_1VendorXyZ", metadata={})
    assert outcome.payment is not None and outcome.state == "settled"
    assert str(outcome.payment.rail_payment_id).startswith("tr_")
    sent = _only(server.requests)
    assert (sent.path, sent.form["destination"]) == ("/v1/transfers", "acct_1VendorXyZ")
    assert sent.idempotency_key == outcome.payment.rail_key
    assert _budget(warden) == (1250, 0)


def test_a_warden_refund_goes_to_stripe_with_the_refunds_own_key(
    server: FakeStripe, rail: StripeRail, open_warden: Callable[[StripeRail], Warden]
) -> None:
    warden = open_warden(rail)
    outcome = _pay(warden)
    assert outcome.payment is not None and outcome.state == "settled"
    refund = warden.refund(outcome.payment.payment_id, "5.00")
    assert refund.state == "settled" and str(refund.rail_refund_id).startswith("re_")
    sent = _only(server.posts("/v1/refunds"))
    assert sent.idempotency_key == refund.rail_key != outcome.payment.rail_key
    assert (sent.form["amount"], sent.form["payment_intent"]) == (
        "500",
        outcome.payment.rail_payment_id,
    )
    assert warden.payment(outcome.payment.payment_id).refunded_minor == 500
    assert server.moved(refund.rail_key) == 1
