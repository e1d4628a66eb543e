"""The REST API in process: keys, problem+json errors, policy reload, readiness, the OpenAPI
document and reconcile at start.

Method: a gateway app on a SQLite file driven through FastAPI's TestClient; the Warden behind
it is inspected directly (audit entries, key rows, the database bytes) to check what changed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from rest_support import POLICY, Gateway

from paywarden import Warden
from paywarden.adapters.rails.sandbox import SandboxRail
from paywarden.entrypoints.rest import Settings, create_app, load_settings
from paywarden.errors import AuthenticationError, InvalidInputError, StoreError
from paywarden.keys import SECRET_ENV, secret_file, server_secret
from paywarden.testing import example_intent
from support.intents import intent_body
from support.wardens import no_sleep


def _kinds(warden: Warden) -> list[str]:
    return [entry.kind for entry in warden.audit_entries(0, 1000)]


# Keys -----------------------------------------------------------------------------------------


def test_a_key_is_shown_once_and_stored_only_as_a_keyed_hash(tmp_path: Path) -> None:
    database = tmp_path / "keys.db"
    with Warden.open(POLICY, database=database) as warden:
        secret, row = warden.create_key(role="agent", agent="agent-a", actor="admin")
        assert secret.startswith("pw_live_") and len(secret) == len("pw_live_") + 12 + 1 + 48
        assert row.prefix == secret.rsplit("_", 1)[0]
        assert secret not in row.digest
        principal = warden.authenticate(secret)
        assert (principal.role, principal.agent, principal.key_id) == (
            "agent",
            "agent-a",
            row.key_id,
        )
        assert _kinds(warden)[-1] == "key.created"
        assert secret not in warden.audit_entries(0, 1000)[-1].body
        assert row.digest not in warden.audit_entries(0, 1000)[-1].body
    raw = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.is_file())
    assert secret.encode() not in raw
    assert secret.rsplit("_", 1)[1].encode() not in raw
    mode = stat.S_IMODE(os.stat(secret_file(database)).st_mode)
    assert mode == 0o600


def test_the_server_secret_file_is_reused_and_the_variable_wins(tmp_path: Path) -> None:
    database = tmp_path / "x.db"
    first = server_secret(database, environ={})
    assert server_secret(database, environ={}) == first
    assert server_secret(database, environ={SECRET_ENV: "s" * 40}) == b"s" * 40
    with pytest.raises(InvalidInputError):
        server_secret(database, environ={SECRET_ENV: "short"})


def test_keys_hashed_under_another_secret_do_not_authenticate(tmp_path: Path) -> None:
    with Warden.open(POLICY, database=tmp_path / "k.db") as warden:
        warden.use_key_secret(b"a" * 32)
        secret, _ = warden.create_key(role="admin", actor="admin")
        warden.use_key_secret(b"b" * 32)
        with pytest.raises(AuthenticationError):
            warden.authenticate(secret)


@pytest.mark.parametrize(
    "arguments",
    [
        {"role": "agent"},
        {"role": "agent", "agent": "a", "operator": "alice"},
        {"role": "operator"},
        {"role": "operator", "operator": "nobody"},
        {"role": "admin", "agent": "a"},
        {"role": "root"},
        {"role": "agent", "agent": "bad agent"},
    ],
    ids=str,
)
def test_invalid_keys_are_refused(gateway: Gateway, arguments: dict[str, Any]) -> None:
    count = len(gateway.warden.keys())
    with pytest.raises(InvalidInputError):
        gateway.warden.create_key(actor="admin", **arguments)
    assert len(gateway.warden.keys()) == count


def test_keys_over_rest(gateway: Gateway) -> None:
    created = gateway.client.post(
        "/v1/keys", json={"role": "agent", "agent": "agent-c"}, headers=gateway.auth("admin")
    )
    assert created.status_code == 201
    key, details = created.json()["key"], created.json()["details"]
    listed = gateway.client.get("/v1/keys", headers=gateway.auth("admin")).json()
    assert details in listed and all("digest" not in row for row in listed)
    assert key not in str(listed)
    headers = {"Authorization": f"Bearer {key}"}
    assert gateway.client.get("/v1/payments", headers=headers).status_code == 200
    revoked = gateway.client.post(
        f"/v1/keys/{details['key_id']}/revoke", headers=gateway.auth("admin")
    )
    assert revoked.status_code == 200 and revoked.json()["revoked_us"] is not None
    assert gateway.client.get("/v1/payments", headers=headers).status_code == 401
    again = gateway.client.post(
        f"/v1/keys/{details['key_id']}/revoke", headers=gateway.auth("admin")
    )
    assert again.status_code == 409
    assert _kinds(gateway.warden)[-1] == "key.revoked"


def test_key_creation_refuses_an_idempotency_key(gateway: Gateway) -> None:
    response = gateway.client.post(
        "/v1/keys",
        json={"role": "admin"},
        headers=gateway.auth("admin", **{"Idempotency-Key": "k"}),
    )
    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_not_supported"


# Problem details ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        ("NaN", "invalid_input"),
        ("1e3", "invalid_input"),
        ("-5", "invalid_input"),
        (" 12 ", "invalid_input"),
        ("１２３", "invalid_input"),
        (12, "invalid_input"),
        (12.5, "invalid_input"),
        (None, "invalid_input"),
        ("0", "invalid_amount"),
        ("10.001", "invalid_amount"),
        ("99999999999999999999", "invalid_amount"),
    ],
    ids=repr,
)
def test_bad_amounts_are_422_problems(gateway: Gateway, amount: object, code: str) -> None:
    response = gateway.client.post(
        "/v1/authorizations", json=intent_body(amount=amount), headers=gateway.auth("agent-a")
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == code
    assert problem["type"].endswith(code)
    assert problem["instance"] == "/v1/authorizations"
    assert gateway.warden.payments() == []


@pytest.mark.parametrize(
    ("method", "path", "content", "status", "code"),
    [
        ("GET", "/v1/nothing-here", None, 404, "not_found"),
        ("DELETE", "/v1/payments", None, 405, "method_not_allowed"),
        ("POST", "/v1/authorizations", b"{not json", 422, "invalid_input"),
        ("POST", "/v1/authorizations", b"[]", 422, "invalid_input"),
        ("POST", "/v1/authorizations", b"x" * 70_000, 413, "body_too_large"),
        ("GET", "/v1/payments/pay_missing", None, 404, "not_found"),
        ("GET", "/v1/decisions/dec_missing", None, 404, "not_found"),
        ("GET", "/v1/payments?limit=0", None, 422, "invalid_input"),
    ],
)
def test_errors_are_problem_details(
    gateway: Gateway, method: str, path: str, content: bytes | None, status: int, code: str
) -> None:
    headers = gateway.auth("agent-a", **{"Content-Type": "application/json"})
    response = gateway.client.request(method, path, content=content, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert response.json()["status"] == status


def test_a_denied_payment_is_a_decision_not_an_error(gateway: Gateway) -> None:
    response = gateway.client.post(
        "/v1/payments",
        json=intent_body("6000.00"),
        headers=gateway.auth("agent-a", **{"Idempotency-Key": "big"}),
    )
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "not_submitted" and body["payment"] is None
    assert body["decision"]["outcome"] == "deny"
    assert body["decision"]["reason_code"] == "no_rule_matched"


def test_a_store_failure_is_503_and_never_500(gateway: Gateway) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise StoreError("store error: disk I/O error")

    gateway.warden.payments = broken  # type: ignore[method-assign]
    response = gateway.client.get("/v1/payments", headers=gateway.auth("agent-a"))
    assert response.status_code == 503
    assert response.json()["code"] == "store_unavailable"


# Policy reload --------------------------------------------------------------------------------

NEW_POLICY = POLICY.replace("lte: 100}", "lte: 20}").replace("gt: 100,", "gt: 20,")


def _authorize(gateway: Gateway, amount: str) -> dict[str, Any]:
    response = gateway.client.post(
        "/v1/authorizations", json=intent_body(amount), headers=gateway.auth("agent-a")
    )
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


def test_an_admin_upload_is_validated_versioned_audited_and_written(
    gateway: Gateway, tmp_path: Path
) -> None:
    before = gateway.warden.loaded_policy.policy
    assert before is not None
    response = gateway.client.put(
        "/v1/policy", json={"policy": NEW_POLICY}, headers=gateway.auth("admin")
    )
    assert response.status_code == 200
    version = response.json()["version"]
    assert version != before.version and response.json()["loaded"] is True
    entry = gateway.warden.audit_entries(0, 1000)[-1]
    assert (entry.kind, entry.ref_id) == ("policy.loaded", version)
    assert f'"previous_version":"{before.version}"' in entry.body
    assert "admin:key_" in entry.body
    assert _authorize(gateway, "50.00")["outcome"] == "require_approval"
    assert (tmp_path / "policy.yaml").read_text(encoding="utf-8") == NEW_POLICY


def test_an_invalid_upload_is_rejected_and_the_previous_policy_stays(
    gateway: Gateway, tmp_path: Path
) -> None:
    version = gateway.client.get("/v1/policy", headers=gateway.auth("operator")).json()["version"]
    response = gateway.client.put(
        "/v1/policy",
        json={"policy": "currency: USD\nrules:\n  - {id: x, effect: maybe}\n"},
        headers=gateway.auth("admin"),
    )
    assert response.status_code == 422
    assert response.json()["code"] == "policy_invalid"
    assert response.json()["problems"], "the report's problems are returned"
    assert _kinds(gateway.warden)[-1] == "policy.rejected"
    assert (
        gateway.client.get("/v1/policy", headers=gateway.auth("operator")).json()["version"]
        == version
    )
    assert _authorize(gateway, "50.00")["outcome"] == "allow"
    assert (tmp_path / "policy.yaml").read_text(encoding="utf-8") == POLICY


def test_a_changed_policy_file_is_reloaded(gateway: Gateway, tmp_path: Path) -> None:
    watcher = gateway.client.app.state.policy_watcher  # type: ignore[attr-defined]
    path = tmp_path / "policy.yaml"
    path.write_text(NEW_POLICY, encoding="utf-8")
    os.utime(path, ns=(1, 1))
    loaded = watcher.check()
    assert loaded is not None and loaded.policy is not None
    assert _authorize(gateway, "50.00")["outcome"] == "require_approval"
    assert watcher.check() is None, "an unchanged file is not reloaded"
    path.write_text("rules: [{effect: nope}]\n", encoding="utf-8")
    os.utime(path, ns=(2, 2))
    rejected = watcher.check()
    assert rejected is not None and rejected.policy is None
    assert _kinds(gateway.warden)[-1] == "policy.rejected"
    assert _authorize(gateway, "50.00")["outcome"] == "require_approval"


# Health, OpenAPI, start-up --------------------------------------------------------------------


def test_health_and_readiness(gateway: Gateway) -> None:
    assert gateway.client.get("/healthz").json() == {
        "status": "ok",
        "problems": [],
        "policy_version": None,
    }
    ready = gateway.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_not_ready_without_a_valid_policy_and_everything_is_denied(tmp_path: Path) -> None:
    with Warden.open("rules: [{effect: nope}]\n", database=tmp_path / "r.db") as warden:
        warden.use_key_secret(b"r" * 32)
        key, _ = warden.create_key(role="agent", agent="agent-a", actor="test")
        app = create_app(Settings(policy_poll_seconds=0), warden=warden)
        with TestClient(app) as client:
            ready = client.get("/readyz")
            decision = client.post(
                "/v1/authorizations",
                json=intent_body(),
                headers={"Authorization": f"Bearer {key}"},
            ).json()
    assert ready.status_code == 503
    assert ready.json()["status"] == "not_ready"
    assert ready.json()["problems"][0].startswith("policy:")
    assert decision["outcome"] == "deny" and decision["reason_code"] == "policy_invalid"


def test_not_ready_when_the_store_is_unreachable(gateway: Gateway) -> None:
    gateway.warden.runtime.store.close()
    original = gateway.warden.runtime.store.read

    def unreachable() -> Any:
        raise StoreError("store error: unable to open database file")

    gateway.warden.runtime.store.read = unreachable  # type: ignore[method-assign]
    try:
        ready = gateway.client.get("/readyz")
    finally:
        gateway.warden.runtime.store.read = original  # type: ignore[method-assign]
    assert ready.status_code == 503
    assert any(problem.startswith("store:") for problem in ready.json()["problems"])


def test_the_openapi_document_declares_keys_and_problem_responses(gateway: Gateway) -> None:
    document = gateway.client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    payments = document["paths"]["/v1/payments"]["post"]
    assert "application/problem+json" in payments["responses"]["422"]["content"]
    assert {p["name"] for p in payments["parameters"]} == {"Idempotency-Key"}
    schema = document["components"]["schemas"]["PaymentRequest"]
    assert schema["additionalProperties"] is False
    assert "agent" not in schema["properties"]


def test_payments_left_unknown_are_reconciled_at_start(tmp_path: Path) -> None:
    rail = SandboxRail(sleep=no_sleep)
    database = tmp_path / "start.db"
    with Warden.open(POLICY, database=database, rails={"sandbox": rail}, sleep=no_sleep) as warden:
        outcome = warden.pay(
            example_intent("10.00", metadata={"sandbox_scenario": "timeout_after_send"})
        )
        assert outcome.state == "unknown"
        app = create_app(Settings(database=str(database), policy_poll_seconds=0), warden=warden)
        with TestClient(app):
            pass
        assert warden.payments()[0].state == "settled"


def test_settings_come_from_file_then_environment_then_overrides(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('port = 9001\ndatabase = "data/pw.db"\nworkers = 2\n', encoding="utf-8")
    settings = load_settings(
        config, environ={"PAYWARDEN_PORT": "9002"}, overrides={"host": "0.0.0.0"}
    )
    assert (settings.port, settings.workers, settings.host) == (9002, 2, "0.0.0.0")
    assert settings.database == str(tmp_path / "data" / "pw.db")
    yaml_config = tmp_path / "gateway.yaml"
    yaml_config.write_text("policy: p.yaml\naccess_log: false\n", encoding="utf-8")
    from_yaml = load_settings(yaml_config, environ={})
    assert from_yaml.policy == str(tmp_path / "p.yaml") and from_yaml.access_log is False
    for bad in ("prot = 1\n", 'port = "eighty"\n', "port = 70000\n"):
        config.write_text(bad, encoding="utf-8")
        with pytest.raises(InvalidInputError):
            load_settings(config, environ={})


def test_the_app_opens_its_own_warden_from_settings(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    settings = Settings(database=str(tmp_path / "own.db"), policy=str(policy))
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz").json()
    assert ready["status"] == "ready"
    assert ready["policy_version"].startswith("sha256:")
    assert (tmp_path / "own.db").exists() and secret_file(tmp_path / "own.db").exists() is False
