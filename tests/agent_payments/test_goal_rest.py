"""`POST /v1/agent/goals` and `GET /v1/agent/goals/{id}`: 202 at once, the loop in the
background (here with the real `openai` SDK against the fake server on loopback), attempts and
a pending approval shown, runs visible only to their agent and to staff."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_fake_llm import fake_llm
from agent_support import GOAL_POLICY
from fastapi.testclient import TestClient

from paywarden import FrozenClock, Warden
from paywarden.adapters.llm.openai_planner import OpenAIPlanner
from paywarden.entrypoints.rest import Settings, create_app
from support.policies import write_policy
from support.wardens import no_sleep


class Gateway:
    def __init__(self, client: TestClient, warden: Warden, keys: dict[str, str]) -> None:
        self.client, self.warden, self.keys = client, warden, keys

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def wait(self, run_id: str, who: str = "agent-a") -> dict[str, Any]:
        deadline = time.monotonic() + 20
        while True:
            response = self.client.get(f"/v1/agent/goals/{run_id}", headers=self.auth(who))
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            if body["status"] != "running" or time.monotonic() > deadline:
                return body
            time.sleep(0.05)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    warden = Warden.open(
        GOAL_POLICY, database=tmp_path / "g.db", clock=FrozenClock(), sleep=no_sleep
    )
    warden.use_key_secret(b"k" * 32)
    warden.add_operator("alice", name="Alice")
    keys = {
        "agent-a": warden.create_key(role="agent", agent="agent-a", actor="test")[0],
        "agent-b": warden.create_key(role="agent", agent="agent-b", actor="test")[0],
        "operator": warden.create_key(role="operator", operator="alice", actor="test")[0],
    }
    policy = write_policy(tmp_path, GOAL_POLICY)
    settings = Settings(database=str(tmp_path / "g.db"), policy=str(policy), policy_poll_seconds=0)
    try:
        with TestClient(create_app(settings, warden=warden)) as client:
            yield Gateway(client, warden, keys)
    finally:
        warden.close()


def _post(gateway: Gateway, goal: str, who: str = "agent-a", **extra: object) -> str:
    response = gateway.client.post(
        "/v1/agent/goals", json={"goal": goal, **extra}, headers=gateway.auth(who)
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "running"
    assert response.headers["Location"] == f"/v1/agent/goals/{body['run_id']}"
    return str(body["run_id"])


def test_a_goal_runs_in_the_background_with_the_offline_planner(gateway: Gateway) -> None:
    run_id = _post(gateway, "Buy a MacBook Pro for the new engineer")
    run = gateway.wait(run_id)
    assert run["status"] == "paid" and run["agent"] == "agent-a"
    assert [a["outcome"] for a in run["attempts"]] == ["denied", "paid"]
    assert gateway.warden.payment(run["payment_id"]).state == "settled"


def test_a_goal_through_an_openai_compatible_endpoint(gateway: Gateway) -> None:
    over = json.dumps(
        {"amount": "2499.00", "currency": "USD", "recipient": "apple.com", "category": "hardware"}
    )
    fits = json.dumps({"amount": "1299.00", "currency": "USD", "recipient": "apple.com"})
    with fake_llm(over, fits) as (llm, url):
        planner = OpenAIPlanner(model="m", base_url=url, api_key="k")
        gateway.client.app.state.goal_planner = planner  # type: ignore[attr-defined]
        try:
            run = gateway.wait(_post(gateway, "Buy a laptop"))
        finally:
            planner.close()
    assert run["status"] == "paid" and len(llm.requests) == 2
    assert run["attempts"][0]["reason_code"] == "denied_by_rule"


def test_a_pending_approval_is_shown(gateway: Gateway) -> None:
    run = gateway.wait(_post(gateway, "pay acme.example 9,000 USD for the annual license"))
    assert run["status"] == "pending_approval"
    assert run["approval"]["status"] == "pending"
    assert run["approval"]["approval_id"] == run["attempts"][-1]["approval_id"]


def test_runs_are_the_agents_own(gateway: Gateway) -> None:
    run_id = _post(gateway, "Buy a monitor")
    gateway.wait(run_id)
    other = gateway.client.get(f"/v1/agent/goals/{run_id}", headers=gateway.auth("agent-b"))
    assert other.status_code == 404
    staff = gateway.client.get(f"/v1/agent/goals/{run_id}", headers=gateway.auth("operator"))
    assert staff.status_code == 200
    denied = gateway.client.post(
        "/v1/agent/goals", json={"goal": "x"}, headers=gateway.auth("operator")
    )
    assert denied.status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        {"goal": ""},
        {"goal": "Buy a monitor", "agent": "agent-b"},
        {"goal": "Buy a monitor", "max_attempts": 0},
        {"goal": "x" * 5000},
    ],
)
def test_a_bad_request_starts_nothing(gateway: Gateway, body: dict[str, object]) -> None:
    response = gateway.client.post("/v1/agent/goals", json=body, headers=gateway.auth("agent-a"))
    assert response.status_code == 422
    assert gateway.warden.goal_runs() == []


def test_runs_at_once_are_bounded(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    from paywarden.entrypoints.rest import routes_goals

    monkeypatch.setattr(routes_goals, "_running", threading.BoundedSemaphore(1))
    release = threading.Event()

    class Waiting:
        def propose(self, goal: str, feedback: object) -> str:
            release.wait(10)
            return json.dumps({"amount": "10.00", "currency": "USD", "recipient": "a.example"})

    gateway.client.app.state.goal_planner = Waiting()  # type: ignore[attr-defined]
    run_id = _post(gateway, "Buy a pen")
    busy = gateway.client.post(
        "/v1/agent/goals", json={"goal": "Buy another pen"}, headers=gateway.auth("agent-a")
    )
    assert busy.status_code == 503 and busy.json()["code"] == "goal_runs_busy"
    assert [r.run_id for r in gateway.warden.goal_runs()] == [run_id]  # nothing recorded
    release.set()
    assert gateway.wait(run_id)["status"] == "paid"
    assert gateway.wait(_post(gateway, "Buy a third pen"))["status"] == "paid"  # a free slot


class _SlowPlanner:
    """Proposes a small valid payment after a pause: the run is still going when the app
    shuts down right after the 202."""

    def propose(self, goal: str, feedback: object) -> str:
        time.sleep(0.5)
        return json.dumps({"amount": "5.00", "currency": "USD", "recipient": "shop.example"})


def test_shutdown_waits_for_background_runs_before_the_store_closes(tmp_path: Path) -> None:
    database = tmp_path / "g.db"
    warden = Warden.open(GOAL_POLICY, database=database, clock=FrozenClock(), sleep=no_sleep)
    warden.use_key_secret(b"k" * 32)
    key = warden.create_key(role="agent", agent="agent-a", actor="test")[0]
    settings = Settings(database=str(database), policy_poll_seconds=0)
    app = create_app(settings, warden=warden)
    app.state.goal_planner = _SlowPlanner()
    try:
        with TestClient(app) as client:
            posted = client.post(
                "/v1/agent/goals",
                json={"goal": "buy a cable"},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert posted.status_code == 202, posted.text
            run_id = posted.json()["run_id"]
        # The app has shut down: the run ended first, with the store still open under it.
        assert warden.goal_run(run_id).status != "running"
    finally:
        warden.close()
