"""The `mandate` body field of `POST /v1/authorizations` and `POST /v1/payments`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ap2_helpers import AUDIENCE, NOW, Chain
from fastapi.testclient import TestClient
from httpx import Response

from paywarden import FrozenClock, Warden
from paywarden.adapters.rails.sandbox import SandboxRail
from paywarden.ap2 import MandateVerifier
from paywarden.entrypoints.rest import Settings, create_app
from support.wardens import no_sleep

POLICY = """
currency: USD
mandates:
  requires_mandate: [{actions: [purchase]}]
rules:
  - {id: shop, effect: allow, actions: [purchase]}
"""
CHAIN = Chain()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    keys = tmp_path / "ap2-keys.json"
    keys.write_text(json.dumps({"user-1": CHAIN.user_key.export_public(as_dict=True)}))
    database = tmp_path / "gateway.db"
    warden = Warden.open(
        POLICY,
        database=database,
        clock=FrozenClock(),
        rails={"sandbox": SandboxRail(sleep=no_sleep)},
    )
    warden.use_key_secret(b"k" * 32)
    key = warden.create_key(role="agent", agent="agent-a", actor="test")[0]
    settings = Settings(
        database=str(database),
        ap2_audience=AUDIENCE,
        ap2_trusted_keys=str(keys),
        policy_poll_seconds=0,
    )
    try:
        with TestClient(create_app(settings, warden=warden)) as client:
            yield client, {"Authorization": f"Bearer {key}"}
    finally:
        warden.close()


def body(**extra: Any) -> dict[str, Any]:
    return {
        "action": "purchase",
        "amount": "19.99",
        "currency": "USD",
        "recipient": "https://shop.example.com",
        **extra,
    }


def test_the_gateway_verifies_the_mandate_field(gateway: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = gateway
    # the verifier from the settings runs on the real clock: this 2026-01-05 mandate is stale
    stale = client.post("/v1/authorizations", json=body(mandate=CHAIN.present()), headers=auth)
    assert (stale.status_code, stale.json()["reason_code"]) == (200, "mandate_expired")
    keys = {"user-1": CHAIN.user_key.export_public(as_dict=True)}
    client.app.state.mandate_verifier = MandateVerifier(  # type: ignore[attr-defined]
        audience=AUDIENCE, trusted_keys=keys, clock=lambda: NOW
    )
    missing = client.post("/v1/authorizations", json=body(), headers=auth)
    assert missing.json()["reason_code"] == "mandate_required"
    presented = CHAIN.present()
    allowed = client.post("/v1/authorizations", json=body(mandate=presented), headers=auth)
    assert allowed.json()["outcome"] == "allow"
    replay = client.post("/v1/authorizations", json=body(mandate=presented), headers=auth)
    assert replay.json()["reason_code"] == "mandate_replayed"
    again = Chain(user_key=CHAIN.user_key, agent_key=CHAIN.agent_key, nonce="pay-1").present()
    paid = client.post(
        "/v1/payments", json=body(mandate=again), headers={**auth, "Idempotency-Key": "p-1"}
    )
    assert paid.json()["state"] == "settled", paid.json()


def _post_once(tmp_path: Path, **settings: Any) -> Response:
    """One authorization with a mandate, on a fresh gateway with these settings."""
    database = tmp_path / "g.db"
    warden = Warden.open(POLICY, database=database, clock=FrozenClock())
    warden.use_key_secret(b"k" * 32)
    key = warden.create_key(role="agent", agent="agent-a", actor="test")[0]
    app = create_app(
        Settings(database=str(database), policy_poll_seconds=0, **settings), warden=warden
    )
    try:
        with TestClient(app) as client:
            return client.post(
                "/v1/authorizations",
                json=body(mandate=CHAIN.present()),
                headers={"Authorization": f"Bearer {key}"},
            )
    finally:
        warden.close()


def test_a_gateway_without_ap2_settings_denies_mandates(tmp_path: Path) -> None:
    answer = _post_once(tmp_path)
    assert answer.json()["reason_code"] == "mandate_invalid"
    assert "ap2_audience" in answer.json()["reason"]


@pytest.mark.parametrize(
    "extra",
    [
        {"colour": "red"},  # an unknown field: the body fails validation before any intent
        {"metadata": {"k": ["not", "a", "scalar"]}},
        {"amount": "nineteen"},  # a body that validates, then cannot become an intent
    ],
)
def test_a_refused_request_never_records_the_mandate(
    gateway: tuple[TestClient, dict[str, str]], extra: dict[str, Any]
) -> None:
    client, auth = gateway
    token = Chain(user_key=CHAIN.user_key, agent_key=CHAIN.agent_key, nonce="leak-1").present()
    answer = client.post("/v1/authorizations", json=body(mandate=token, **extra), headers=auth)
    assert answer.status_code == 422, answer.text
    decision_id = answer.json()["decision_id"]  # the refusal was audited
    warden: Warden = client.app.state.warden  # type: ignore[attr-defined]
    entries = list(warden.audit_trail(decision_id))
    assert entries
    recorded = json.dumps([entry.body for entry in entries], default=str)
    assert token[:24] not in recorded and "mandate" not in recorded


def test_unusable_ap2_settings_do_not_tell_the_agent_the_file_path(tmp_path: Path) -> None:
    missing = tmp_path / "secret-dir" / "keys.json"
    answer = _post_once(tmp_path, ap2_audience=AUDIENCE, ap2_trusted_keys=str(missing))
    assert answer.json()["reason_code"] == "mandate_invalid"
    assert "unusable" in answer.json()["reason"] and "secret-dir" not in answer.text


def test_half_configured_ap2_settings_refuse_to_start(tmp_path: Path) -> None:
    from paywarden.entrypoints.rest.settings import load_settings
    from paywarden.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="go together"):
        load_settings(None, environ={"PAYWARDEN_AP2_AUDIENCE": AUDIENCE})
    missing = {"PAYWARDEN_AP2_AUDIENCE": AUDIENCE, "PAYWARDEN_AP2_TRUSTED_KEYS": str(tmp_path)}
    with pytest.raises(InvalidInputError, match="no file"):
        load_settings(None, environ=missing)
