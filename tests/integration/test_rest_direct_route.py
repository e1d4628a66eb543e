"""The decision routes are direct routes (no per-request dependency solving): every answer must
be the one FastAPI's own handler gives, refusals and their order included.

Two gateways on two ledgers: one as shipped, one whose routes all fall back to FastAPI's
handler. The same requests go to both; status, headers that matter and problem bodies must be
equal (decision ids aside, which differ between ledgers)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rest_support import Gateway, open_gateway

from paywarden.entrypoints.rest import direct_route

GOOD = {"action": "payments.transfer", "amount": "5.00", "currency": "USD", "recipient": "a.com"}
JSON = {"Content-Type": "application/json"}
# (name, who, headers, query, raw body)
CASES: list[tuple[str, str | None, dict[str, str], str, bytes]] = [
    ("allowed", "agent-a", JSON, "", json.dumps(GOOD).encode()),
    ("bad json", "agent-a", JSON, "", b'{"action": '),
    ("bad json, no key", None, JSON, "", b'{"action": '),
    ("not utf-8", "agent-a", JSON, "", b'{"action": "\xff"}'),
    ("json null", "agent-a", JSON, "", b"null"),
    ("a list", "agent-a", JSON, "", b"[1, 2]"),
    ("empty body", "agent-a", JSON, "", b""),
    ("text/plain", "agent-a", {"Content-Type": "text/plain"}, "", json.dumps(GOOD).encode()),
    ("no content type", "agent-a", {}, "", json.dumps(GOOD).encode()),
    ("+json type", "agent-a", {"Content-Type": "application/x+json; charset=utf-8"}, "",
     json.dumps(GOOD).encode()),
    ("odd type", "agent-a", {"Content-Type": "application"}, "", json.dumps(GOOD).encode()),
    ("unknown field", "agent-a", JSON, "", json.dumps({**GOOD, "agent": "x"}).encode()),
    ("missing fields", "agent-a", JSON, "", b'{"amount": "1"}'),
    ("float amount", "agent-a", JSON, "", json.dumps({**GOOD, "amount": 5.0}).encode()),
    ("bad key header", "agent-a", {**JSON, "Idempotency-Key": "has space"}, "",
     json.dumps(GOOD).encode()),
    ("bad key header and body", "agent-a", {**JSON, "Idempotency-Key": "a b"}, "", b"{}"),
    ("secret key header", "agent-a",
     {**JSON, "Idempotency-Key": "sk_live_" + "a" * 24}, "", json.dumps(GOOD).encode()),
    ("unknown query", "agent-a", JSON, "?x=1", json.dumps(GOOD).encode()),
    ("unknown query, bad body", "agent-a", JSON, "?x=1", b"{}"),
    ("no key", None, JSON, "", json.dumps(GOOD).encode()),
    ("no key, bad body", None, JSON, "", b"{}"),
    ("basic auth", "basic", JSON, "", json.dumps(GOOD).encode()),
    ("operator key", "operator", JSON, "", json.dumps(GOOD).encode()),
    ("unknown key", "unknown", JSON, "", json.dumps(GOOD).encode()),
]  # fmt: skip


@pytest.fixture
def gateways(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Gateway, Gateway]]:
    """Route handlers are built on first use: each app serves one request while its variant
    is in force."""
    (tmp_path / "direct").mkdir()
    (tmp_path / "fastapi").mkdir()
    with open_gateway(tmp_path / "direct") as direct:
        direct.client.post("/v1/authorizations", content=b"{}")
        direct.client.post("/v1/payments", content=b"{}")
        with monkeypatch.context() as patch:
            patch.setattr(direct_route, "_plan", lambda route: None)
            with open_gateway(tmp_path / "fastapi") as plain:
                plain.client.post("/v1/authorizations", content=b"{}")
                plain.client.post("/v1/payments", content=b"{}")
                patch.undo()
                yield direct, plain


def _send(
    gateway: Gateway, path: str, case: tuple[str, str | None, dict[str, str], str, bytes]
) -> tuple[int, dict[str, str], Any]:
    name, who, headers, query, body = case
    headers = dict(headers)
    if who == "basic":
        headers["Authorization"] = "Basic dXNlcjpwYXNz"
    elif who == "unknown":
        headers["Authorization"] = "Bearer pw_live_000000000000_" + "0" * 64
    elif who is not None:
        headers["Authorization"] = f"Bearer {gateway.keys[who]}"
    if path == "/v1/payments" and "Idempotency-Key" not in headers:
        headers["Idempotency-Key"] = f"direct-{name.replace(' ', '-').replace(',', '')}"
    response = gateway.client.post(path + query, content=body, headers=headers)
    kept = {k: v for k, v in response.headers.items() if k in ("content-type", "retry-after")}
    return response.status_code, kept, _without_ids(response.json())


def _without_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: "<id>" if k.endswith("_id") or k in ("created_at", "expires_at") else _without_ids(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_without_ids(item) for item in value]
    return value


@pytest.mark.parametrize("path", ["/v1/authorizations", "/v1/payments"])
@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_a_direct_route_answers_as_fastapi_does(
    gateways: tuple[Gateway, Gateway],
    path: str,
    case: tuple[str, str | None, dict[str, str], str, bytes],
) -> None:
    direct, plain = gateways
    assert _send(direct, path, case) == _send(plain, path, case)


def test_only_the_shipped_app_uses_the_direct_handler(
    gateways: tuple[Gateway, Gateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards the comparison above: it compares two different handlers."""
    direct, plain = gateways
    calls: list[object] = []
    validate = direct_route.request_body_to_args

    async def counted(*args: Any) -> Any:
        calls.append(args)
        return await validate(*args)

    monkeypatch.setattr(direct_route, "request_body_to_args", counted)
    for gateway, expected in ((plain, 0), (direct, 2)):
        for path in ("/v1/authorizations", "/v1/payments"):
            _send(gateway, path, CASES[0])
        assert len(calls) == expected
