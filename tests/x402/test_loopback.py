"""The sync clients (requests, httpx) against the paid API served by uvicorn on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from x402 import x402ClientSync
from x402.http.clients.httpx import PaymentError as HttpxPaymentError
from x402.http.clients.requests import PaymentError as RequestsPaymentError
from x402.http.clients.requests import x402_requests
from x402_helpers import PRICES, CountingScheme

from paywarden import Warden
from paywarden.x402 import X402Guard, httpx_client, requests_session
from paywarden.x402.paid_api import FakeFacilitator, paid_app
from support.servers import serving


@pytest.fixture
def base_url(facilitator: FakeFacilitator) -> Iterator[str]:
    with serving(paid_app(facilitator, PRICES)) as url:
        yield url


def test_requests_session_pays_small_calls_and_refuses_big_ones_before_signing(
    warden: Warden,
    sync_client: x402ClientSync,
    scheme: CountingScheme,
    facilitator: FakeFacilitator,
    base_url: str,
) -> None:
    session = requests_session(X402Guard(warden, agent="research-1"), sync_client)
    response = session.get(f"{base_url}/small", timeout=10)
    assert response.status_code == 200 and response.json() == {"data": "small"}
    with pytest.raises(RequestsPaymentError, match="denied_by_rule"):
        session.get(f"{base_url}/big", timeout=10)
    assert scheme.signed == 1
    assert (facilitator.count("verify"), facilitator.count("settle")) == (1, 1)
    ((budget),) = warden.budgets()
    assert (budget.spent_minor, budget.held_minor) == (1, 0)
    session.close()


def test_sync_httpx_client_pays_and_the_budget_stops_a_burst(
    warden: Warden,
    sync_client: x402ClientSync,
    scheme: CountingScheme,
    facilitator: FakeFacilitator,
    base_url: str,
) -> None:
    guard = X402Guard(warden, agent="research-1")
    statuses = []
    with httpx_client(guard, sync_client, base_url=base_url, timeout=10) as http:
        for _ in range(6):
            try:
                statuses.append(http.get("/small").status_code)
            except HttpxPaymentError as error:
                statuses.append(str(error).rsplit(": ", 1)[-1])
        assert http.get("/free-not-found").status_code == 404  # no payment, passed through
    assert statuses == [200] * 5 + ["budget_exceeded"]
    assert scheme.signed == 5 and facilitator.count("settle") == 5
    ((budget),) = warden.budgets()
    assert (budget.spent_minor, budget.held_minor) == (5, 0)


def test_a_guarded_client_refuses_a_payment_outside_a_guarded_call(
    warden: Warden, sync_client: x402ClientSync, scheme: CountingScheme, base_url: str
) -> None:
    X402Guard(warden, agent="research-1").attach(sync_client)
    with pytest.raises(RequestsPaymentError, match="x402_unguarded_call"):
        x402_requests(sync_client).get(f"{base_url}/small", timeout=10)
    assert scheme.signed == 0
