"""Shadow policy, halts list, a payment's refunds, audit trail and checkpoints over REST."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from rest_support import POLICY, Gateway, make_keys

from paywarden import FrozenClock, Warden
from paywarden.adapters.rails.sandbox import SandboxRail
from paywarden.audit.checkpoint import generate_key
from paywarden.audit.service import AuditOptions
from paywarden.entrypoints.rest import Settings, create_app
from paywarden.entrypoints.rest.settings import load_settings
from paywarden.errors import InvalidInputError
from paywarden.testing import example_intent
from support.intents import intent_body
from support.wardens import no_sleep

SHADOW = POLICY.replace("lte: 100}", "lte: 10}")


def _head(gateway: Gateway) -> int:
    return gateway.warden.verify_audit().head_seq


def test_shadow_policy_set_show_and_clear(gateway: Gateway) -> None:
    admin = gateway.auth("admin")
    shown = gateway.client.get("/v1/policy/shadow", headers=admin).json()
    assert shown["active"] is False and shown["version"] is None
    before = _head(gateway)
    bad = gateway.client.put("/v1/policy/shadow", json={"policy": "rules: [oops"}, headers=admin)
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    assert _head(gateway) == before and gateway.warden.shadow_policy() is None
    put = gateway.client.put("/v1/policy/shadow", json={"policy": SHADOW}, headers=admin)
    assert put.status_code == 200, put.text
    version = put.json()["version"]
    enforced = gateway.warden.policy
    assert put.json()["active"] is True and enforced is not None and version != enforced.version
    decided = gateway.client.post(
        "/v1/authorizations", json=intent_body(amount="50.00"), headers=gateway.auth("agent-a")
    )
    assert decided.json()["outcome"] == "allow"  # the shadow policy is never enforced
    stats = gateway.client.get("/v1/policy/shadow", headers=admin).json()["stats"]
    assert stats["evaluated_total"] == 1 and stats["shadow_flips_total"] == 1
    trail = gateway.client.get(f"/v1/audit/trail?ref_id={version}", headers=admin).json()
    assert trail and trail[-1]["body"]["policy_version"] == version  # setting it is audited
    cleared = gateway.client.delete("/v1/policy/shadow", headers=admin)
    assert cleared.json() == {"cleared": True} and gateway.warden.shadow_policy() is None
    head = _head(gateway)
    assert gateway.client.delete("/v1/policy/shadow", headers=admin).json() == {"cleared": False}
    assert _head(gateway) == head


def test_halts_lists_what_is_in_force(gateway: Gateway) -> None:
    operator = gateway.auth("operator", **{"Idempotency-Key": "halt-1"})
    assert gateway.client.get("/v1/halts", headers=gateway.auth("operator")).json() == []
    halted = gateway.client.post("/v1/halt", json={"reason": "incident"}, headers=operator)
    assert halted.status_code == 200, halted.text
    (row,) = gateway.client.get("/v1/halts", headers=gateway.auth("admin")).json()
    assert row["scope"] == "*" and row["reason"] == "incident"


def test_a_payments_refunds_for_its_agent_and_staff(gateway: Gateway) -> None:
    paid = gateway.warden.pay(example_intent("50.00", idempotency_key="refunds-1")).payment
    assert paid is not None
    path = f"/v1/payments/{paid.payment_id}/refunds"
    assert gateway.client.get(path, headers=gateway.auth("agent-a")).json() == []
    refund = gateway.client.post(
        f"/v1/payments/{paid.payment_id}/refund",
        json={"amount": "10.00"},
        headers=gateway.auth("agent-a", **{"Idempotency-Key": "refund-1"}),
    )
    assert refund.status_code == 200, refund.text
    (row,) = gateway.client.get(path, headers=gateway.auth("agent-a")).json()
    assert row["refund_id"] == refund.json()["refund_id"] and row["amount_minor"] == 1000
    assert gateway.client.get(path, headers=gateway.auth("operator")).json() == [row]
    foreign = gateway.client.get(path, headers=gateway.auth("agent-b"))
    assert foreign.status_code == 404 and foreign.json()["code"] == "not_found"
    unknown = gateway.client.get("/v1/payments/nope/refunds", headers=gateway.auth("operator"))
    assert unknown.status_code == 404


def test_audit_trail_of_one_object_in_hashed_form(gateway: Gateway) -> None:
    paid = gateway.warden.pay(example_intent("50.00", idempotency_key="trail-1")).payment
    assert paid is not None
    response = gateway.client.get(
        "/v1/audit/trail", params={"ref_id": paid.payment_id}, headers=gateway.auth("operator")
    )
    entries = response.json()
    expected = gateway.warden.audit_trail(paid.payment_id)
    assert expected and [entry["seq"] for entry in entries] == [entry.seq for entry in expected]
    assert {entry["ref_id"] for entry in entries} == {paid.payment_id}
    assert [entry["entry_hash"] for entry in entries] == [entry.entry_hash for entry in expected]
    empty = gateway.client.get("/v1/audit/trail?ref_id=nothing", headers=gateway.auth("admin"))
    assert empty.json() == []
    missing = gateway.client.get("/v1/audit/trail", headers=gateway.auth("admin"))
    assert missing.status_code == 422


def test_checkpoint_without_a_signing_key_is_a_clear_problem(gateway: Gateway) -> None:
    response = gateway.client.post("/v1/audit/checkpoints", headers=gateway.auth("admin"))
    assert response.status_code == 409
    assert response.json()["code"] == "audit_signing_key_missing"


def test_checkpoint_signs_the_audit_head(tmp_path: Path) -> None:
    key = tmp_path / "audit.key"
    generate_key(key, tmp_path / "audit.pub")
    database, clock = tmp_path / "gateway.db", FrozenClock()
    rail = SandboxRail(sleep=no_sleep)
    warden = Warden.open(
        POLICY,
        database=database,
        clock=clock,
        rails={"sandbox": rail},
        sleep=no_sleep,
        audit=AuditOptions(signing_key=key),
    )
    try:
        warden.use_key_secret(b"k" * 32)
        keys = make_keys(warden)
        app = create_app(Settings(database=str(database), policy_poll_seconds=0), warden=warden)
        with TestClient(app) as client:
            response = client.post(
                "/v1/audit/checkpoints", headers={"Authorization": f"Bearer {keys['admin']}"}
            )
            assert response.status_code == 200, response.text
            body = response.json()
            head = warden.verify_audit()
            assert body["seq"] == head.head_seq and body["key_id"] and body["signature"]
            assert body["head_hash"] == head.head_hash
    finally:
        warden.close()


def test_a_gateway_signs_checkpoints_with_the_key_its_settings_name(tmp_path: Path) -> None:
    key = tmp_path / "audit.key"
    generate_key(key, tmp_path / "audit.pub")
    database = tmp_path / "served.db"
    with Warden.open(POLICY, database=database) as setup:
        admin = setup.create_key(role="admin", actor="test")[0]
    settings = Settings(database=str(database), policy_poll_seconds=0, audit_signing_key=str(key))
    with TestClient(create_app(settings)) as client:  # the app opens its own Warden
        response = client.post(
            "/v1/audit/checkpoints", headers={"Authorization": f"Bearer {admin}"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["key_id"] and response.json()["signature"]


def test_settings_refuse_a_signing_key_that_is_not_a_file(tmp_path: Path) -> None:
    missing = {"PAYWARDEN_AUDIT_SIGNING_KEY": str(tmp_path / "nowhere.key")}
    with pytest.raises(InvalidInputError, match="audit_signing_key"):
        load_settings(None, environ=missing)
    with pytest.raises(InvalidInputError, match="audit_checkpoint_every"):
        load_settings(None, environ={"PAYWARDEN_AUDIT_CHECKPOINT_EVERY": "0"})
