"""`Idempotency-Key` with Stripe's semantics, over HTTP in process.

Method: a gateway on a SQLite file whose sandbox rail counts each time money moves. A replay
must return the same status and bytes, marked `Idempotent-Replayed: true`, without touching the
rail or the budget again; another body under the same key is 422 with no side effect; a request
still in progress is 409; keys are scoped to the caller; and all of it survives a restart,
because the claims live in the store.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from rest_support import Gateway, gateway_warden

from paywarden.entrypoints.rest import Settings, create_app
from paywarden.entrypoints.rest.deps import fingerprint, fingerprint_key_of
from paywarden.entrypoints.rest.models import PaymentRequest
from paywarden.errors import StoreBusyError
from support.intents import intent_body


def _pay(gateway: Gateway, key: str, body: dict[str, object], who: str = "agent-a") -> object:
    return gateway.client.post(
        "/v1/payments", json=body, headers=gateway.auth(who, **{"Idempotency-Key": key})
    )


def _spent(gateway: Gateway) -> int:
    (daily,) = [row for row in gateway.warden.budgets() if row.budget_id == "daily"]
    return daily.spent_minor + daily.held_minor


def test_the_same_key_and_body_replay_the_first_response(gateway: Gateway) -> None:
    first = _pay(gateway, "order-1", intent_body("12.00"))
    assert first.status_code == 200
    assert "idempotent-replayed" not in first.headers
    payment = first.json()["payment"]
    replays = [_pay(gateway, "order-1", intent_body("12.00")) for _ in range(4)]
    for replay in replays:
        assert replay.status_code == 200
        assert replay.content == first.content
        assert replay.headers["idempotent-replayed"] == "true"
    assert gateway.rail.moved(f"pw_{payment['hold_id']}") == 1
    assert _spent(gateway) == 1200
    assert len(gateway.warden.payments()) == 1


def test_key_order_and_spacing_do_not_make_a_new_request(gateway: Gateway) -> None:
    first = _pay(gateway, "order-2", intent_body("12.00"))
    body = dict(reversed(list(intent_body("12.00").items())))
    again = gateway.client.post(
        "/v1/payments",
        content=json.dumps(body, indent=4).encode(),
        headers=gateway.auth(
            "agent-a", **{"Idempotency-Key": "order-2", "Content-Type": "application/json"}
        ),
    )
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content


@pytest.mark.parametrize(
    "change",
    [{"amount": "12.01"}, {"recipient": "other.example.com"}, {"currency": "EUR"}],
    ids=["amount", "recipient", "currency"],
)
def test_another_body_under_the_same_key_is_422_without_effect(
    gateway: Gateway, change: dict[str, str]
) -> None:
    first = _pay(gateway, "order-3", intent_body("12.00"))
    assert first.status_code == 200
    head = gateway.warden.verify_audit().head_seq
    other = _pay(gateway, "order-3", {**intent_body("12.00"), **change})
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["code"] == "idempotency_key_reused"
    assert gateway.warden.verify_audit().head_seq == head
    assert _spent(gateway) == 1200
    # The original is unchanged and still replays.
    assert _pay(gateway, "order-3", intent_body("12.00")).content == first.content


def test_the_same_key_on_another_route_is_422(gateway: Gateway) -> None:
    _pay(gateway, "order-4", intent_body())
    response = gateway.client.post(
        "/v1/authorizations",
        json=intent_body(),
        headers=gateway.auth("agent-a", **{"Idempotency-Key": "order-4"}),
    )
    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"


def test_a_request_still_in_progress_is_409(gateway: Gateway) -> None:
    body = PaymentRequest.model_validate(intent_body())
    digest = fingerprint("POST", "/v1/payments", body, fingerprint_key_of(gateway.warden))
    assert gateway.warden.idempotency_begin("agent:agent-a", "order-5", digest, 120) is None
    response = _pay(gateway, "order-5", intent_body())
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_in_progress"
    assert response.headers["retry-after"] == "1"
    assert gateway.warden.payments() == []
    # A claim whose process died is taken over once it is stale; the Warden's own
    # idempotency (the same key on the intent) still guarantees a single payment.
    gateway.clock.advance(seconds=121)
    retried = _pay(gateway, "order-5", intent_body())
    assert retried.status_code == 200
    assert retried.json()["state"] == "settled"


def test_keys_are_scoped_to_the_caller(gateway: Gateway) -> None:
    mine = _pay(gateway, "shared", intent_body("3.00"), who="agent-a")
    theirs = _pay(gateway, "shared", intent_body("4.00"), who="agent-b")
    assert mine.status_code == theirs.status_code == 200
    assert "idempotent-replayed" not in theirs.headers
    assert theirs.json()["payment"]["agent"] == "agent-b"
    assert theirs.json()["payment"]["amount_minor"] == 400


def test_a_refusal_is_replayed_too(gateway: Gateway) -> None:
    headers = gateway.auth("operator", **{"Idempotency-Key": "vote-1"})
    first = gateway.client.post(
        "/v1/approvals/apr_x/approve", json={"reason": "ok"}, headers=headers
    )
    second = gateway.client.post(
        "/v1/approvals/apr_x/approve", json={"reason": "ok"}, headers=headers
    )
    assert first.status_code == second.status_code == 404
    assert second.content == first.content
    assert second.headers["idempotent-replayed"] == "true"


def test_a_5xx_is_not_stored_so_the_client_can_retry(gateway: Gateway) -> None:
    calls = []
    original = gateway.warden.pay

    def busy_once(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise StoreBusyError("the store stayed locked for 5.0s")
        return original(*args, **kwargs)  # type: ignore[arg-type]

    gateway.warden.pay = busy_once  # type: ignore[method-assign]
    first = _pay(gateway, "order-6", intent_body())
    assert first.status_code == 503
    assert first.json()["code"] == "store_busy"
    assert first.headers["retry-after"] == "1"
    second = _pay(gateway, "order-6", intent_body())
    assert second.status_code == 200
    assert "idempotent-replayed" not in second.headers


@pytest.mark.parametrize(
    "key", [b"", b" spaced key", b"x" * 256, b"tab\there", "ünïcode".encode()], ids=repr
)
def test_malformed_keys_are_refused(gateway: Gateway, key: bytes) -> None:
    headers: dict[str, str | bytes] = {**gateway.auth("agent-a"), "Idempotency-Key": key}
    response = gateway.client.post("/v1/payments", json=intent_body(), headers=headers)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_input"
    assert gateway.warden.payments() == []


def test_paying_needs_a_key(gateway: Gateway) -> None:
    response = gateway.client.post(
        "/v1/payments", json=intent_body(), headers=gateway.auth("agent-a")
    )
    assert response.status_code == 422
    assert "Idempotency-Key" in response.json()["detail"]
    assert gateway.warden.payments() == []


def test_replays_survive_a_restart(gateway: Gateway, tmp_path: Path) -> None:
    first = _pay(gateway, "order-7", intent_body("7.00"))
    # A second process on the same file: a fresh Warden and app (rules that would now deny).
    warden = gateway_warden(
        gateway.database, gateway.clock, gateway.rail, "currency: USD\nrules: []\n"
    )
    try:
        app = create_app(
            Settings(database=str(gateway.database), policy_poll_seconds=0), warden=warden
        )
        with TestClient(app) as client:
            again = client.post(
                "/v1/payments",
                json=intent_body("7.00"),
                headers=gateway.auth("agent-a", **{"Idempotency-Key": "order-7"}),
            )
    finally:
        warden.close()
    assert again.status_code == 200
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
