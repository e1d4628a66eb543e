"""Overload: a write finds the store's queue too long and gets 503 before it is taken.

The queue is made real: one thread holds the store's writer inside a write transaction, and a
second decision waits behind it in the queue, so `Warden.backlog()` is 1.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from rest_support import POLICY, gateway_warden, make_keys

from paywarden import FrozenClock, PaymentIntent, Warden
from paywarden.adapters.rails.sandbox import SandboxRail
from paywarden.entrypoints.rest import Settings, create_app, load_settings
from paywarden.errors import InvalidInputError, StoreError
from support.policies import write_policy
from support.wardens import no_sleep

BODY = {"action": "payments.transfer", "amount": "5.00", "currency": "USD", "recipient": "a.com"}


@contextmanager
def gateway(tmp_path: Path, backlog_max: int) -> Iterator[tuple[TestClient, Warden, str]]:
    warden = gateway_warden(
        tmp_path / "gateway.db", FrozenClock(), SandboxRail(sleep=no_sleep), POLICY
    )
    key = make_keys(warden)["agent-a"]
    settings = Settings(
        database=str(tmp_path / "gateway.db"),
        policy=str(write_policy(tmp_path, POLICY)),
        policy_poll_seconds=0,
        store_backlog_max=backlog_max,
    )
    try:
        with TestClient(create_app(settings, warden=warden)) as client:
            yield client, warden, key
    finally:
        warden.close()


@contextmanager
def queued_write(warden: Warden) -> Iterator[None]:
    """The writer held by one transaction, one decision queued behind it: backlog 1."""
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with warden.runtime.store.write():
            entered.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert entered.wait(10)
    intent = PaymentIntent(
        agent="agent-b", action="payments.transfer", amount="1.00", currency="USD",
        recipient="b.com",
    )  # fmt: skip
    waiter = threading.Thread(target=warden.authorize, args=(intent,))
    waiter.start()
    try:
        for _ in range(1000):
            if warden.backlog() >= 1:
                break
            threading.Event().wait(0.01)
        assert warden.backlog() == 1
        yield
    finally:
        release.set()
        holder.join(10)
        waiter.join(10)


def _audit_count(warden: Warden) -> int:
    return len(warden.audit_entries(0, 1000))


def test_a_write_over_the_backlog_limit_is_refused_before_it_is_taken(tmp_path: Path) -> None:
    with gateway(tmp_path, backlog_max=1) as (client, warden, key):
        auth = {"Authorization": f"Bearer {key}"}
        with queued_write(warden):
            audited = _audit_count(warden)
            refused = client.post("/v1/authorizations", json=BODY, headers=auth)
            paid = client.post(
                "/v1/payments", json=BODY, headers={**auth, "Idempotency-Key": "over-1"}
            )
            reads = client.get("/v1/payments", headers=auth)  # reads are never refused
            ready = client.get("/readyz").json()
            assert _audit_count(warden) == audited  # no decision, nothing audited
        for response in (refused, paid):
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "1"
            assert response.headers["content-type"] == "application/problem+json"
            problem = response.json()
            assert problem["code"] == "store_overloaded" and "decision_id" not in problem
        assert reads.status_code == 200
        assert ready["store_backlog"] == 1 and ready["overload_refusals"] == 2
        # The queue drained: the same request is taken and decided, and the key was not spent.
        again = client.post(
            "/v1/payments", json=BODY, headers={**auth, "Idempotency-Key": "over-1"}
        )
        assert again.status_code == 200 and again.json()["decision"]["outcome"] == "allow"
        assert client.get("/readyz").json()["overload_refusals"] == 2


def test_below_the_limit_or_with_the_check_off_requests_are_taken(tmp_path: Path) -> None:
    for backlog_max in (2, 0):
        directory = tmp_path / str(backlog_max)
        directory.mkdir()
        with gateway(directory, backlog_max) as (client, warden, key):
            with queued_write(warden):
                taker = threading.Thread(
                    target=lambda: client.post(
                        "/v1/authorizations", json=BODY, headers={"Authorization": f"Bearer {key}"}
                    )
                )
                # Taken: it joins the queue behind the held transaction instead of a 503.
                taker.start()
                for _ in range(1000):
                    if warden.backlog() >= 2:
                        break
                    threading.Event().wait(0.01)
                assert warden.backlog() == 2
            taker.join(10)
            assert client.get("/readyz").json()["overload_refusals"] == 0


@pytest.mark.parametrize("value", ["-1", "many"])
def test_a_bad_backlog_limit_refuses_to_start(value: str) -> None:
    with pytest.raises(InvalidInputError, match="store_backlog_max"):
        load_settings(environ={"PAYWARDEN_STORE_BACKLOG_MAX": value})


def test_the_backlog_limit_comes_from_the_environment() -> None:
    assert load_settings(environ={"PAYWARDEN_STORE_BACKLOG_MAX": "7"}).store_backlog_max == 7
    assert Settings().store_backlog_max == 256


def test_a_backlog_that_cannot_be_read_never_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check is no new way to fail: the request is taken and decided as usual."""
    with gateway(tmp_path, backlog_max=1) as (client, warden, key):

        def broken() -> int:
            raise StoreError("the queue file is gone")

        monkeypatch.setattr(warden, "backlog", broken)
        response = client.post(
            "/v1/authorizations", json=BODY, headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 200 and response.json()["outcome"] == "allow"
