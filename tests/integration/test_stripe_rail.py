"""The Stripe rail against a fake Stripe API on loopback: what the official SDK sends (key,
version, form body), how every Stripe answer becomes a receipt, idempotency keys reused on every
SDK and paywarden retry and on reconciliation, end-to-end payments through a Warden in which
money moves exactly once, and routes: where money goes and what is charged come from the
deployment's routes, never from the agent's metadata, and a payment no route takes is refused
before anything is held. Method: `tests/fakes/stripe_server.py` is a real HTTP server that
records every request and counts, per idempotency key, how many times money really moved."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import replace as dataclass_replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import stripe
from hypothesis import given, settings
from hypothesis import strategies as st

from paywarden import InvalidInputError, Warden
from paywarden.actions.payments import PaymentOutcome
from paywarden.adapters.rails.stripe import StripeRail, StripeRoute, StripeRoutes, stripe_amount
from paywarden.payee import parse_payee
from paywarden.rails import RailPayment, Receipt, load_rail
from paywarden.testing import example_intent

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the fakes package
from fakes.stripe_server import FakeStripe, Recorded
from support.wardens import OpenWarden, no_sleep

KEY = "pw_hold_000001"
AGENT = "agent-a"
POLICY = """
currency: USD
rules:
  - {id: pay, effect: allow, actions: ["payments.*", "vendor.*"]}
budgets:
  - {id: daily, limit: 100000, window: day}
"""
PAYEES: dict[str, Any] = {
    "api.example.com": {},  # a charge that settles in the platform's account
    "acct_1VendorXyZ": {},  # a connected account, paid itself
    "vendor.example.com": {"destination": "acct_9"},  # paid through the account it names
}

MakeRail = Callable[..., StripeRail]
StripeWarden = Callable[..., Warden]


def _routes(
    *, payees: dict[str, Any] | None = None, any_account: bool = False, **agent_route: str
) -> dict[str, Any]:
    """Routes as an operator writes them: `PAYEES`, and `agent-a` charging `pm_card_visa`
    unless `payment_method=` / `customer=` say otherwise."""
    return {
        "payees": PAYEES if payees is None else payees,
        "agents": {AGENT: agent_route or {"payment_method": "pm_card_visa"}},
        "allow_any_connected_account": any_account,
    }


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
            "routes": _routes(),
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
        "agent": AGENT,
        "action": "payments.charge",
        "amount_minor": 1250,
        "currency": "USD",
        "payee": "api.example.com",
        "metadata": {},
    }
    fields.update(changes)
    fields["payee"] = parse_payee(fields["payee"])
    return RailPayment(**fields)


def _check(rail: StripeRail, **changes: Any) -> str | None:
    """`rail.check` of `_payment(**changes)`."""
    payment = _payment(**changes)
    return rail.check(
        agent=payment.agent,
        action=payment.action,
        payee=payment.payee,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
    )


def _stripe_metadata(action: str = "payments.charge", payee: str = "api.example.com") -> Any:
    return {
        "paywarden_payment_id": "pay_000001",
        "paywarden_key": KEY,
        "paywarden_agent": AGENT,
        "paywarden_action": action,
        "paywarden_payee": payee,
    }


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
        "metadata": _stripe_metadata(),
    }
    assert server.moved(KEY) == 1


def test_a_customers_saved_payment_method_is_charged_off_session(
    server: FakeStripe, make_rail: MakeRail
) -> None:
    rail = make_rail(routes=_routes(payment_method="pm_card_visa", customer="cus_123"))
    assert rail.pay(_payment()).status == "settled"
    form = _only(server.requests).form
    assert (form["customer"], form["payment_method"], form["off_session"]) == (
        "cus_123",
        "pm_card_visa",
        "true",
    )
    assert "error_on_requires_action" not in form


def test_a_charge_to_a_payee_whose_route_names_an_account_is_a_destination_charge(
    server: FakeStripe, rail: StripeRail
) -> None:
    assert rail.pay(_payment(payee="vendor.example.com")).status == "settled"
    sent = _only(server.requests)
    assert sent.path == "/v1/payment_intents"
    assert sent.form["transfer_data"] == {"destination": "acct_9"}
    assert sent.form["payment_method"] == "pm_card_visa"
    assert sent.form["metadata"] == _stripe_metadata(payee="vendor.example.com")
    assert server.moved(KEY) == 1


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
    assert reason in str(_check(rail, currency=currency, amount_minor=amount_minor))
    receipt = rail.pay(_payment(currency=currency, amount_minor=amount_minor))
    assert (receipt.status, receipt.retryable) == ("failed", False)
    assert reason in str(receipt.error)
    assert server.requests == []


@pytest.mark.parametrize(
    ("routes", "payee", "reason"),
    [
        (_routes(), "shop.example.com", "no route for payee `shop.example.com`"),
        (
            {"payees": PAYEES, "agents": {"agent-b": {"payment_method": "pm_card_visa"}}},
            "api.example.com",
            "agent `agent-a` has no Stripe payment method",  # another agent's is not its own
        ),
        ({}, "api.example.com", "no route for payee `api.example.com`"),
    ],
)
def test_a_charge_without_a_route_is_refused_by_check_and_by_pay_before_sending(
    server: FakeStripe, make_rail: MakeRail, routes: dict[str, Any], payee: str, reason: str
) -> None:
    rail = make_rail(routes=routes)
    assert reason in str(_check(rail, payee=payee))
    receipt = rail.pay(_payment(payee=payee))  # defence in depth: pay checks again
    assert (receipt.status, receipt.rail_payment_id, receipt.retryable) == ("failed", None, False)
    assert reason in str(receipt.error)
    assert server.requests == []


@pytest.mark.parametrize(
    ("payee", "action", "path"),
    [
        ("api.example.com", "payments.charge", "/v1/payment_intents"),
        ("vendor.example.com", "payments.charge", "/v1/payment_intents"),
        ("vendor.example.com", "payments.transfer", "/v1/transfers"),
        ("acct_1VendorXyZ", "vendor.payout", "/v1/transfers"),
    ],
)
def test_what_check_lets_through_pay_sends(
    server: FakeStripe, rail: StripeRail, payee: str, action: str, path: str
) -> None:
    assert _check(rail, payee=payee, action=action) is None
    assert rail.pay(_payment(payee=payee, action=action)).status == "settled"
    assert _only(server.requests).path == path
    assert server.moved(KEY) == 1


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
    server: FakeStripe, make_rail: MakeRail, method: str, fault: Any, decline_code: str
) -> None:
    if fault:
        server.inject(fault)
    receipt = make_rail(routes=_routes(payment_method=method)).pay(_payment())
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
    ("action", "payee", "destination"),
    [
        ("payments.charge", "acct_1VendorXyZ", "acct_1VendorXyZ"),
        ("vendor.payout", "acct_1VendorXyZ", "acct_1VendorXyZ"),
        ("payments.transfer", "vendor.example.com", "acct_9"),  # the payee route's account
    ],
)
def test_a_payout_is_a_transfer_to_the_connected_account(
    server: FakeStripe, rail: StripeRail, action: str, payee: str, destination: str
) -> None:
    receipt = rail.pay(_payment(action=action, payee=payee))
    assert receipt.status == "settled" and str(receipt.rail_payment_id).startswith("tr_")
    sent = _only(server.requests)
    assert (sent.path, sent.idempotency_key) == ("/v1/transfers", KEY)
    assert sent.form == {
        "amount": "1250",
        "currency": "usd",
        "destination": destination,  # exactly as configured: ids are case-sensitive
        "transfer_group": KEY,
        "metadata": _stripe_metadata(action, payee),
    }
    assert server.moved(KEY) == 1


@pytest.mark.parametrize(
    ("payee", "reason"),
    [
        ("api.example.com", "needs a connected account"),  # routed, but names no account
        ("shop.example.com", "no route for payee `shop.example.com`"),
        ("acct_1Unrouted", "no route for payee `acct_1Unrouted`"),
    ],
)
def test_a_payout_without_a_routed_connected_account_is_refused_before_sending(
    server: FakeStripe, rail: StripeRail, payee: str, reason: str
) -> None:
    assert reason in str(_check(rail, action="payments.transfer", payee=payee))
    receipt = rail.pay(_payment(action="payments.transfer", payee=payee))
    assert (receipt.status, receipt.retryable) == ("failed", False)
    assert reason in str(receipt.error)
    assert server.requests == []


def test_any_connected_account_is_paid_only_when_the_routes_allow_it(
    server: FakeStripe, make_rail: MakeRail
) -> None:
    payout = _payment(action="vendor.payout", payee="acct_1Anyone")
    assert "no route" in str(make_rail().pay(payout).error)
    assert server.requests == []
    open_rail = make_rail(routes=_routes(any_account=True))
    assert "no route" in str(_check(open_rail, payee="shop.example.com"))  # accounts only
    assert open_rail.pay(payout).status == "settled"
    assert _only(server.requests).form["destination"] == "acct_1Anyone"


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
    any_account = make_rail(routes=_routes(any_account=True))
    missing = any_account.pay(_payment(payee="acct_missing"))
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
    payout = _payment(payee="acct_1VendorXyZ")
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


@pytest.mark.parametrize(
    ("payment", "listing"),
    [
        (_payment(), "/v1/payment_intents/search"),  # search lags: the charge is not seen
        (_payment(payee="vendor.example.com", action="payments.transfer"), "/v1/transfers"),
    ],
)
def test_status_never_calls_a_payment_failed_because_its_route_was_removed(
    server: FakeStripe, rail: StripeRail, payment: RailPayment, listing: str
) -> None:
    server.inject("drop_before")  # never arrived: nothing the lookup could find
    assert rail.pay(payment).status == "unknown"
    server.search_visible = False
    rail.routes = StripeRoutes()  # the operator removed every route since
    receipt = rail.status(payment)
    # A re-send the routes refuse proves nothing about the first request: still open.
    assert receipt.status == "unknown" and "not sent again" in str(receipt.error)
    assert [(r.method, r.path) for r in server.requests[1:]] == [("GET", listing)]
    assert server.moved(KEY) == 0


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
    payout = _payment(payee="acct_1VendorXyZ")
    paid = rail.pay(payout)
    settled = _payment(payee="acct_1VendorXyZ", rail_payment_id=paid.rail_payment_id)
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
    server: FakeStripe, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps(_routes()), encoding="utf-8")
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_x")
    monkeypatch.setenv("PAYWARDEN_STRIPE_API_BASE", server.url + "/")
    monkeypatch.setenv("PAYWARDEN_STRIPE_ROUTES", str(routes))
    rail = load_rail("stripe")
    assert isinstance(rail, StripeRail) and rail.name == "stripe"
    with rail:
        assert rail.api_base == server.url
        assert rail.routes == StripeRoutes.from_mapping(_routes())
        assert rail.pay(_payment()).status == "settled"
    assert _only(server.requests).headers["authorization"] == "Bearer sk_test_x"


def test_arguments_win_over_the_environment(
    server: FakeStripe, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_from_env")
    monkeypatch.setenv("PAYWARDEN_STRIPE_API_BASE", "https://stripe.invalid")
    monkeypatch.setenv("PAYWARDEN_STRIPE_ROUTES", str(tmp_path / "absent.yaml"))
    with StripeRail(
        api_key="sk_test_x", api_base=server.url, max_network_retries=0, routes=_routes()
    ) as rail:
        assert rail.pay(_payment()).status == "settled"
    assert _only(server.requests).headers["authorization"] == "Bearer sk_test_x"


def test_without_routes_the_rail_pays_no_one(
    server: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PAYWARDEN_STRIPE_ROUTES", raising=False)
    with StripeRail(api_key="sk_test_x", api_base=server.url, max_network_retries=0) as rail:
        assert rail.routes == StripeRoutes()
        for payee, action in [("api.example.com", "payments.charge"), ("acct_1X", "v.payout")]:
            assert "no route for payee" in str(_check(rail, payee=payee, action=action))
            assert rail.pay(_payment(payee=payee, action=action)).status == "failed"
    assert server.requests == []


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
def stripe_warden(open_warden: OpenWarden) -> StripeWarden:
    """`stripe_warden(rail, **options)`: a Warden on POLICY paying through `rail` as `stripe`."""

    def open_(rail: StripeRail, **options: Any) -> Warden:
        return open_warden(POLICY, rails={"stripe": rail}, sleep=no_sleep, **options)

    return open_


def _pay(warden: Warden, **changes: Any) -> PaymentOutcome:
    fields: dict[str, Any] = {
        "action": "payments.charge",
        "rail": "stripe",
        "recipient": "api.example.com",
    }
    fields.update(changes)
    return warden.pay(example_intent("12.50", **fields))


def _budget(warden: Warden) -> tuple[int, int]:
    (status,) = warden.budgets()
    return status.spent_minor, status.held_minor


def test_a_warden_payment_settles_and_captures_its_hold(
    server: FakeStripe, rail: StripeRail, stripe_warden: StripeWarden
) -> None:
    warden = stripe_warden(rail)
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
    server: FakeStripe, make_rail: MakeRail, stripe_warden: StripeWarden
) -> None:
    warden = stripe_warden(make_rail(routes=_routes(payment_method="pm_card_chargeDeclined")))
    outcome = _pay(warden)
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
    stripe_warden: StripeWarden,
    fault: Any,
    sdk_retries: int,
) -> None:
    server.inject(fault, times=2)
    warden = stripe_warden(make_rail(max_network_retries=sdk_retries))
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
    stripe_warden: StripeWarden,
    search_lags: bool,
) -> None:
    warden = stripe_warden(rail)
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
    server: FakeStripe, rail: StripeRail, stripe_warden: StripeWarden
) -> None:
    warden = stripe_warden(rail)
    server.inject("500_stored")
    outcome = _pay(warden)
    assert outcome.payment is not None and outcome.state == "unknown"
    [settled] = warden.reconcile()
    assert settled.state == "settled"
    assert server.moved(outcome.payment.rail_key) == 1


def test_a_processing_payment_stays_submitted_until_reconcile_settles_it(
    server: FakeStripe, make_rail: MakeRail, stripe_warden: StripeWarden
) -> None:
    warden = stripe_warden(make_rail(routes=_routes(payment_method="pm_usBankAccount")))
    outcome = _pay(warden)
    assert outcome.payment is not None and outcome.state == "submitted"
    assert outcome.receipt is not None and outcome.receipt.status == "pending"
    assert _budget(warden) == (0, 1250)
    [settled] = warden.reconcile()
    assert settled.state == "settled"
    assert _budget(warden) == (1250, 0)
    assert server.moved(outcome.payment.rail_key) == 1


def test_a_warden_payout_to_a_connected_account_is_a_transfer(
    server: FakeStripe, rail: StripeRail, stripe_warden: StripeWarden
) -> None:
    warden = stripe_warden(rail)
    outcome = _pay(warden, action="payments.transfer", recipient="acct_1VendorXyZ")
    assert outcome.payment is not None and outcome.state == "settled"
    assert str(outcome.payment.rail_payment_id).startswith("tr_")
    sent = _only(server.requests)
    assert (sent.path, sent.form["destination"]) == ("/v1/transfers", "acct_1VendorXyZ")
    assert sent.idempotency_key == outcome.payment.rail_key
    assert _budget(warden) == (1250, 0)


def test_a_warden_refund_goes_to_stripe_with_the_refunds_own_key(
    server: FakeStripe, rail: StripeRail, stripe_warden: StripeWarden
) -> None:
    warden = stripe_warden(rail)
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


# Adversarial: the agent never steers money ------------------------------------------------

# What an agent might put in its metadata to choose who is paid or what is charged.
HOSTILE_METADATA: dict[str, Any] = {
    "stripe_destination": "acct_1Attacker",
    "stripe_customer": "cus_Attacker",
    "stripe_payment_method": "pm_card_attacker",
    "stripe_transfer_group": "grp_attacker",
    "destination": "acct_1Attacker",
    "customer": "cus_Attacker",
    "payment_method": "pm_card_attacker",
    "transfer_data": "acct_1Attacker",
    "on_behalf_of": "acct_1Attacker",
    "application_fee_amount": 1249,
    "amount": 1,
    "currency": "jpy",
    "paywarden_key": "pw_forged",
    "paywarden_payee": "acct_1Attacker",
}
# The same through the rail port directly, where metadata may hold anything, nested too.
NESTED_METADATA: dict[str, Any] = {
    **HOSTILE_METADATA,
    "transfer_data": {"destination": "acct_1Attacker", "amount": 1},
    "metadata": {"paywarden_payee": "acct_1Attacker"},
}
CHARGE_FORM: dict[str, Any] = {
    "amount": "1250",
    "currency": "usd",
    "confirm": "true",
    "payment_method": "pm_card_visa",
    "error_on_requires_action": "true",
    "automatic_payment_methods": {"enabled": "true", "allow_redirects": "never"},
}


def _expected_form(action: str, payee: str, key: str = KEY) -> dict[str, Any]:
    """The exact form the routes send for `_payment(action=, payee=)`."""
    metadata = {**_stripe_metadata(action, payee), "paywarden_key": key}
    if action == "payments.charge":
        return {**CHARGE_FORM, "metadata": metadata}
    return {
        "amount": "1250",
        "currency": "usd",
        "destination": "acct_9",
        "transfer_group": key,
        "metadata": metadata,
    }


@pytest.mark.parametrize(
    ("action", "path"),
    [("payments.charge", "/v1/payment_intents"), ("payments.transfer", "/v1/transfers")],
)
@pytest.mark.parametrize("metadata", [HOSTILE_METADATA, NESTED_METADATA])
def test_agent_metadata_cannot_change_what_stripe_receives(
    server: FakeStripe, rail: StripeRail, action: str, path: str, metadata: dict[str, Any]
) -> None:
    payee = "api.example.com" if action == "payments.charge" else "vendor.example.com"
    payment = _payment(action=action, payee=payee, metadata=metadata)
    assert _check(rail, action=action, payee=payee) is None
    assert rail.pay(payment).status == "settled"
    sent = _only(server.requests)
    assert (sent.path, sent.idempotency_key) == (path, KEY)
    assert sent.form == _expected_form(action, payee)
    assert "acct_1Attacker" not in json.dumps(server.objects("transfer"))
    assert server.moved(KEY) == 1


@pytest.mark.parametrize(
    ("action", "recipient"),
    [("payments.charge", "api.example.com"), ("payments.transfer", "vendor.example.com")],
)
def test_an_agents_metadata_through_a_warden_changes_nothing_stripe_receives(
    server: FakeStripe, rail: StripeRail, stripe_warden: StripeWarden, action: str, recipient: str
) -> None:
    warden = stripe_warden(rail)
    outcome = _pay(warden, action=action, recipient=recipient, metadata=HOSTILE_METADATA)
    assert outcome.payment is not None and outcome.state == "settled"
    key = outcome.payment.rail_key
    expected = _expected_form(action, recipient, key)
    expected["metadata"]["paywarden_payment_id"] = outcome.payment.payment_id
    assert _only(server.requests).form == expected
    assert server.moved(key) == 1 and _budget(warden) == (1250, 0)


@pytest.mark.parametrize("metadata", [HOSTILE_METADATA, NESTED_METADATA])
def test_agent_metadata_cannot_open_a_route_the_operator_did_not(
    server: FakeStripe, rail: StripeRail, metadata: dict[str, Any]
) -> None:
    for action, payee in [("payments.transfer", "shop.example.com"), ("payments.charge", "x.io")]:
        payment = _payment(action=action, payee=payee, metadata=metadata)
        assert "no route for payee" in str(_check(rail, action=action, payee=payee))
        assert rail.pay(payment).status == "failed"
    unrouted_agent = _payment(agent="agent-b", metadata=metadata)
    assert "agent `agent-b` has no Stripe payment method" in str(rail.pay(unrouted_agent).error)
    assert server.requests == []


_METADATA_KEYS = st.sampled_from(sorted(NESTED_METADATA)) | st.from_regex(
    r"\A[a-z][a-z0-9_]{0,20}\Z"
)
_METADATA_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.sampled_from(["acct_1Attacker", "pm_x"]),
    lambda inner: st.dictionaries(_METADATA_KEYS, inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=30, deadline=timedelta(seconds=5))
@given(
    metadata=st.dictionaries(_METADATA_KEYS, _METADATA_VALUES, max_size=8),
    transfer=st.booleans(),
)
def test_no_metadata_changes_the_form_sent(metadata: dict[str, Any], transfer: bool) -> None:
    action = "payments.transfer" if transfer else "payments.charge"
    payee = "vendor.example.com" if transfer else "api.example.com"
    with (
        FakeStripe(api_key="sk_test_x") as server,
        StripeRail(
            api_key="sk_test_x", api_base=server.url, max_network_retries=0, routes=_routes()
        ) as rail,
    ):
        receipt = rail.pay(_payment(action=action, payee=payee, metadata=metadata))
        assert receipt.status == "settled"
        assert _only(server.requests).form == _expected_form(action, payee)


def _ledger_rows(database: Path, table: str) -> int:
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        (count,) = db.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(count)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"recipient": "shop.example.com"}, "no route for payee `shop.example.com`"),
        (
            {"recipient": "shop.example.com", "action": "payments.transfer"},
            "no route for payee `shop.example.com`",
        ),
        ({"agent": "agent-b"}, "agent `agent-b` has no Stripe payment method"),
    ],
)
def test_a_payment_no_route_takes_is_denied_before_anything_is_held(
    server: FakeStripe,
    rail: StripeRail,
    stripe_warden: StripeWarden,
    tmp_path: Path,
    changes: dict[str, Any],
    reason: str,
) -> None:
    database = tmp_path / "refused.db"
    warden = stripe_warden(rail, database=database)
    outcome = _pay(warden, metadata=HOSTILE_METADATA, **changes)
    decision = outcome.decision
    assert (decision.outcome, decision.reason_code) == ("deny", "rail_refused")
    assert reason in decision.reason
    assert (decision.hold_id, outcome.payment, outcome.receipt) == (None, None, None)
    assert server.requests == []
    assert [(b.spent_minor, b.held_minor) for b in warden.budgets() if b.held_minor] == []
    assert (_ledger_rows(database, "holds"), _ledger_rows(database, "payments")) == (0, 0)
    assert decision.decision_id is not None
    trail = warden.audit_trail(decision.decision_id)
    assert trail and {entry.ref_id for entry in trail} == {decision.decision_id}
    assert "rail_refused" in trail[0].body
    assert warden.decision(decision.decision_id).reason_code == "rail_refused"
    assert warden.verify_audit().ok
    routed = _pay(warden)  # the budget counts what is held: the refusal held nothing
    assert routed.state == "settled" and _budget(warden) == (1250, 0)
    assert (_ledger_rows(database, "holds"), _ledger_rows(database, "payments")) == (1, 1)


def test_a_refused_key_pays_once_the_operator_adds_the_route(
    server: FakeStripe, rail: StripeRail, stripe_warden: StripeWarden
) -> None:
    warden = stripe_warden(rail)
    refused = _pay(warden, recipient="shop.example.com", idempotency_key="order-7")
    assert refused.decision.reason_code == "rail_refused" and server.requests == []
    rail.routes = StripeRoutes.from_mapping(_routes(payees={**PAYEES, "shop.example.com": {}}))
    paid = _pay(warden, recipient="shop.example.com", idempotency_key="order-7")
    assert paid.payment is not None and paid.state == "settled"
    assert _only(server.requests).form["metadata"]["paywarden_payee"] == "shop.example.com"
    assert _budget(warden) == (1250, 0)


def test_a_route_for_an_account_never_pays_the_same_id_in_another_case(
    server: FakeStripe, make_rail: MakeRail, stripe_warden: StripeWarden
) -> None:
    rail = make_rail(routes=_routes(payees={"acct_1AbC": {}}))
    assert _check(rail, action="vendor.payout", payee="acct_1AbC") is None
    for other in ("acct_1aBc", "acct_1ABC", "acct_1abc"):
        assert f"no route for payee `{other}`" in str(
            _check(rail, action="vendor.payout", payee=other)
        )
        receipt = rail.pay(_payment(action="vendor.payout", payee=other))
        assert receipt.status == "failed" and "no route" in str(receipt.error)
    outcome = _pay(stripe_warden(rail), action="vendor.payout", recipient="acct_1aBc")
    assert (outcome.decision.outcome, outcome.decision.reason_code) == ("deny", "rail_refused")
    assert server.requests == []
    assert rail.pay(_payment(action="vendor.payout", payee="acct_1AbC")).status == "settled"
    assert _only(server.requests).form["destination"] == "acct_1AbC"


# Route files ------------------------------------------------------------------------------

ROUTES_YAML = """\
payees:                       # by payee, as paywarden canonicalises it
  acct_1VendorXyZ: {}         # transfers go to this connected account itself
  vendor.example.com: {destination: acct_9}
  api.example.com:            # charges settle in this (the platform's) account
agents:                       # what each agent may charge
  agent-a: {payment_method: pm_card_visa}
  research-01: {customer: cus_123, payment_method: pm_456}
allow_any_connected_account: false   # true: any `acct_...` payee needs no entry of its own
"""
ROUTES_JSON = json.dumps(
    {
        "payees": {
            "acct_1VendorXyZ": {},
            "vendor.example.com": {"destination": "acct_9"},
            "api.example.com": None,
        },
        "agents": {
            "agent-a": {"payment_method": "pm_card_visa"},
            "research-01": {"customer": "cus_123", "payment_method": "pm_456"},
        },
        "allow_any_connected_account": False,
    }
)


@pytest.mark.parametrize(("name", "text"), [("routes.yaml", ROUTES_YAML), ("r.json", ROUTES_JSON)])
def test_a_route_file_named_by_the_environment_routes_payments(
    server: FakeStripe, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, text: str
) -> None:
    (tmp_path / name).write_text(text, encoding="utf-8")
    monkeypatch.setenv("PAYWARDEN_STRIPE_ROUTES", str(tmp_path / name))
    with StripeRail(api_key="sk_test_x", api_base=server.url, max_network_retries=0) as rail:
        assert rail.routes == StripeRoutes(
            payees={
                "acct_1VendorXyZ": StripeRoute(),
                "vendor.example.com": StripeRoute(destination="acct_9"),
                "api.example.com": StripeRoute(),
            },
            agents={
                "agent-a": StripeRoute(payment_method="pm_card_visa"),
                "research-01": StripeRoute(customer="cus_123", payment_method="pm_456"),
            },
        )
        assert rail.pay(_payment()).status == "settled"
        payout = _payment(action="payments.transfer", payee="vendor.example.com")
        assert rail.pay(dataclass_replace(payout, idempotency_key="pw_hold_2")).status == "settled"
    charge, transfer = server.requests
    assert charge.form == _expected_form("payments.charge", "api.example.com")
    assert transfer.form == _expected_form("payments.transfer", "vendor.example.com", "pw_hold_2")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("r.yaml", "- acct_1A\n- acct_1B\n", "must be a mapping with `payees`"),
        ("r.yaml", "", "must be a mapping with `payees`"),
        ("r.yaml", "payee: {acct_1A: {}}\n", "must be a mapping with `payees`"),
        ("r.yaml", "payees: [acct_1A]\n", "`payees` must be a mapping"),
        ("r.yaml", "agents: agent-a\n", "`agents` must be a mapping"),
        ("r.yaml", "payees: {acct_1A: acct_1B}\n", "`acct_1A` in `payees` must map to a mapping"),
        ("r.yaml", "payees: {acct_1A: {destinaton: acct_1B}}\n", "unknown key `destinaton`"),
        ("r.yaml", "payees: {x.com: {customer: cus_1}}\n", "unknown key `customer`"),
        ("r.yaml", "agents: {a: {destination: acct_1}}\n", "unknown key `destination`"),
        ("r.yaml", "agents: {a: {}}\n", "agent `a` needs a `customer` or a `payment_method`"),
        ("r.yaml", "payees: {x.com: {destination: cus_1}}\n", "must be a `acct_...` id"),
        ("r.yaml", "payees: {x.com: {destination: 42}}\n", "must be a `acct_...` id"),
        ("r.yaml", "agents: {a: {customer: acct_1}}\n", "`customer` must be a `cus_...` id"),
        ("r.yaml", "agents: {a: {payment_method: card_1}}\n", "must be a `pm_...` id"),
        ("r.yaml", "allow_any_connected_account: 'true'\n", "must be true or false"),
        ("r.yaml", "payees: {'ftp://x.com': {}}\n", "payee `ftp://x.com` is not a payee"),
        (
            "r.yaml",
            "payees: {Vendor.Example.COM.: {}, vendor.example.com: {destination: acct_1}}\n",
            "are the same payee `vendor.example.com`",
        ),
        ("r.json", '{"payees": {', "do not parse"),
        ("r.yaml", "payees: {a: [\n", "do not parse"),
        ("r.json", '["acct_1A"]', "must be a mapping with `payees`"),
        ("absent.yaml", None, "cannot read the Stripe routes"),
    ],
)
def test_a_bad_route_file_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, text: str | None, message: str
) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("PAYWARDEN_STRIPE_ROUTES", str(path))
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        StripeRail(api_key="sk_test_x")
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        StripeRoutes.load(path)


def test_payee_keys_in_a_route_file_are_canonicalised_like_any_payee(
    server: FakeStripe, make_rail: MakeRail, tmp_path: Path
) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(
        "payees:\n"
        "  Vendor.Example.COM.: {destination: acct_9}\n"
        "  'https://Shop.Example.com:443/checkout?x=1': {}\n"
        "  acct_1AbC: {}\n"
        "agents: {agent-a: {payment_method: pm_card_visa}}\n",
        encoding="utf-8",
    )
    rail = make_rail(routes=path)
    assert set(rail.routes.payees) == {"vendor.example.com", "shop.example.com", "acct_1AbC"}
    # A route names who is paid: a URL payee is its host, whatever its scheme, port or path.
    for spelling in (
        "vendor.example.com",
        "VENDOR.example.com.",
        "https://vendor.example.com/pay",
        "vendor.example.com:8443/invoices/7",
        "//Vendor.Example.com",
        "ｖｅｎｄｏｒ.example.com",
    ):
        assert _check(rail, action="payments.transfer", payee=spelling) is None, spelling
    for other in (
        "evil-vendor.example.com",
        "vendor.example.com.evil.com",
        "sub.vendor.example.com",
        "example.com",
        "billing@vendor.example.com",
        "vendor-example.com",
    ):
        assert "no route" in str(_check(rail, action="payments.transfer", payee=other)), other
    assert _check(rail, payee="http://shop.example.com/other") is None
    payee = "https://Vendor.Example.com/pay?session=9"
    assert rail.pay(_payment(action="payments.transfer", payee=payee)).status == "settled"
    sent = _only(server.requests).form
    assert sent["destination"] == "acct_9"
    assert sent["metadata"]["paywarden_payee"] == "https://vendor.example.com/pay"
