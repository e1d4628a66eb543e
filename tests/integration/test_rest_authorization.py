"""The authorization matrix: every route x every role x another agent's object.

Method: one gateway per case (in process, on a SQLite file) holding a payment, a decision and a
pending approval of `agent-a`, a grant and a spare key. Each route is called with the key of
`agent-a` (the owner), `agent-b` (another agent), an operator and an admin, and must answer
the status in the table; a refused request (401, 403, 404) must leave the audit log exactly as
it was, so nothing was changed. A separate check keeps the table in step with the app's routes.
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_support import POLICY, Gateway

from paywarden.actions.goals import GoalOptions
from paywarden.testing import example_intent
from support.intents import intent_body
from support.wardens import grant_request

A, B, OP, AD = "agent-a", "agent-b", "operator", "admin"
ROLES = (A, B, OP, AD)
EVERYONE = {A: 200, B: 200, OP: 200, AD: 200}
AGENTS = {A: 200, B: 200, OP: 403, AD: 403}
OWNER_OR_STAFF = {A: 200, B: 404, OP: 200, AD: 200}
OPERATOR_ONLY = {A: 403, B: 403, OP: 200, AD: 403}
STAFF = {A: 403, B: 403, OP: 200, AD: 200}
ADMIN_ONLY = {A: 403, B: 403, OP: 403, AD: 200}
OWNER_ONLY = {A: 200, B: 404, OP: 403, AD: 403}

GRANT = {
    "agent": "agent-a",
    "action": "payments.*",
    "currency": "USD",
    "per_payment": "50.00",
    "total": "200.00",
    "expires_in_seconds": 3600,
}

# A body's string values may name objects too: `{payment2}` is a settled payment with no case.
DISPUTE = {"payment_id": "{payment2}", "reason": "wrong data"}

# (method, path template, body, expected status per role)
MATRIX: list[tuple[str, str, dict[str, Any] | None, dict[str, int]]] = [
    ("POST", "/v1/authorizations", intent_body(), AGENTS),
    ("POST", "/v1/payments", intent_body(), AGENTS),
    ("GET", "/v1/payments", None, EVERYONE),
    ("GET", "/v1/payments/{payment}", None, OWNER_OR_STAFF),
    ("POST", "/v1/payments/{payment}/refund", {"amount": "1.00"}, {**OWNER_OR_STAFF, AD: 403}),
    ("GET", "/v1/decisions/{decision}", None, OWNER_OR_STAFF),
    ("GET", "/v1/approvals", None, EVERYONE),
    ("GET", "/v1/approvals/{approval}", None, OWNER_OR_STAFF),
    ("POST", "/v1/approvals/{approval}/approve", {"reason": "fine"}, OPERATOR_ONLY),
    ("POST", "/v1/approvals/{approval}/reject", {"reason": "no"}, OPERATOR_ONLY),
    ("GET", "/v1/grants", None, EVERYONE),
    ("POST", "/v1/grants", GRANT, OPERATOR_ONLY),
    ("POST", "/v1/grants/{grant}/revoke", None, OPERATOR_ONLY),
    ("GET", "/v1/budgets", None, EVERYONE),
    ("POST", "/v1/halt", {"reason": "incident"}, OPERATOR_ONLY),
    ("POST", "/v1/resume", {}, OPERATOR_ONLY),
    ("GET", "/v1/audit", None, STAFF),
    ("GET", "/v1/audit/verify", None, STAFF),
    ("GET", "/v1/keys", None, ADMIN_ONLY),
    ("POST", "/v1/keys", {"role": "agent", "agent": "agent-c"}, {**ADMIN_ONLY, AD: 201}),
    ("POST", "/v1/keys/{key}/revoke", None, ADMIN_ONLY),
    ("GET", "/v1/policy", None, STAFF),
    ("PUT", "/v1/policy", {"policy": POLICY + "# v2\n"}, ADMIN_ONLY),
    ("GET", "/v1/holds/{hold}", None, OWNER_OR_STAFF),
    ("POST", "/v1/holds/{hold}/capture", {"amount": "1.00"}, OWNER_ONLY),
    ("POST", "/v1/holds/{hold}/void", None, OWNER_ONLY),
    ("POST", "/v1/sessions", {"session_id": "s2"}, AGENTS),
    ("GET", "/v1/sessions/{session}", None, OWNER_ONLY),
    ("POST", "/v1/sessions/{session}/advance", {"phase": "DECIDE"}, OWNER_ONLY),
    ("POST", "/v1/scopes", None, AGENTS),
    ("GET", "/v1/scopes", None, STAFF),
    ("GET", "/v1/scopes/{scope}", None, OWNER_OR_STAFF),
    ("POST", "/v1/scopes/{scope}/payments", intent_body(), OWNER_ONLY),
    ("POST", "/v1/scopes/{scope}/complete", None, OWNER_ONLY),
    ("POST", "/v1/scopes/{scope}/fail", {"reason": "failed"}, OWNER_ONLY),
    ("POST", "/v1/scopes/{scope}/compensate", {"reason": "worker died"}, OPERATOR_ONLY),
    ("POST", "/v1/disputes", DISPUTE, {**OWNER_OR_STAFF, AD: 403}),
    ("GET", "/v1/disputes", None, STAFF),
    ("GET", "/v1/disputes/{dispute}", None, OWNER_OR_STAFF),
    ("POST", "/v1/disputes/{dispute}/review", {"note": "mine"}, OPERATOR_ONLY),
    ("POST", "/v1/disputes/{dispute}/resolve", {"outcome": "reject"}, OPERATOR_ONLY),
    ("GET", "/v1/rails/{rail}/breaker", None, STAFF),
    ("POST", "/v1/reconcile", None, STAFF),
    ("GET", "/v1/operators", None, ADMIN_ONLY),
    ("POST", "/v1/operators", {"operator_id": "carol", "name": "Carol"}, ADMIN_ONLY),
    ("GET", "/v1/policy/shadow", None, ADMIN_ONLY),
    ("PUT", "/v1/policy/shadow", {"policy": POLICY + "# shadow\n"}, ADMIN_ONLY),
    ("DELETE", "/v1/policy/shadow", None, ADMIN_ONLY),
    ("GET", "/v1/halts", None, STAFF),
    ("GET", "/v1/alerts", None, STAFF),
    ("GET", "/v1/analytics/{report}", None, STAFF),
    ("POST", "/v1/agent/goals", {"goal": "buy a laptop"}, {**AGENTS, A: 202, B: 202}),
    ("GET", "/v1/agent/goals/{goal}", None, OWNER_OR_STAFF),
    ("GET", "/v1/payments/{payment}/refunds", None, OWNER_OR_STAFF),
    ("GET", "/v1/audit/trail?ref_id={payment}", None, STAFF),
    # No audit signing key in this gateway: the admin's request is a clear 409.
    ("POST", "/v1/audit/checkpoints", None, {**ADMIN_ONLY, AD: 409}),
]


def _objects(gateway: Gateway) -> dict[str, str]:
    """Objects owned by agent-a (and a spare key), created through the library."""
    warden = gateway.warden
    paid = warden.pay(example_intent("50.00", idempotency_key="setup-pay"))
    assert paid.payment is not None and paid.payment.state == "settled"
    pending = warden.authorize(example_intent("500.00"))
    assert pending.outcome == "require_approval" and pending.approval_id is not None
    grant = warden.grant(grant_request("10.00", "20.00"), operator="bob")
    _, spare = warden.create_key(role="agent", agent="spare", actor="test")
    held = warden.authorize(example_intent("5.00"))
    assert held.outcome == "allow" and held.hold_id is not None
    warden.start_session("agent-a", "s1")
    other = warden.pay(example_intent("20.00", idempotency_key="setup-pay-2"))
    assert other.payment is not None
    case = warden.open_dispute(paid.payment.payment_id, reason="setup", actor="agent:agent-a")
    return {
        "hold": held.hold_id,
        "session": "s1",
        "scope": warden.transaction("agent-a").scope_id,
        "dispute": case.dispute_id,
        "payment2": other.payment.payment_id,
        "rail": "sandbox",
        "payment": paid.payment.payment_id,
        "decision": str(paid.decision.decision_id),
        "approval": pending.approval_id,
        "grant": grant.grant_id,
        "key": spare.key_id,
        "report": "spend",
        "goal": warden.start_goal("buy a laptop", GoalOptions("agent-a")).run_id,
    }


def _filled(body: dict[str, Any] | None, objects: dict[str, str]) -> dict[str, Any] | None:
    if body is None:
        return None
    return {name: _object(value, objects) for name, value in body.items()}


def _object(value: Any, objects: dict[str, str]) -> Any:
    """`{payment2}` as the id it names; any other value as it is."""
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return objects.get(value[1:-1], value)
    return value


def _head(gateway: Gateway) -> int:
    return gateway.warden.verify_audit().head_seq


def _call(
    gateway: Gateway, method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]
) -> Any:
    return gateway.client.request(method, path, json=body, headers=headers)


def _cases() -> list[Any]:
    return [
        pytest.param(method, path, body, role, expected[role], id=f"{method} {path} as {role}")
        for method, path, body, expected in MATRIX
        for role in ROLES
    ]


@pytest.mark.parametrize(("method", "template", "body", "role", "status"), _cases())
def test_route_role_object(
    gateway: Gateway,
    method: str,
    template: str,
    body: dict[str, Any] | None,
    role: str,
    status: int,
) -> None:
    objects = _objects(gateway)
    path, body = template.format(**objects), _filled(body, objects)
    before = _head(gateway)
    headers = gateway.auth(role, **{"Idempotency-Key": "matrix-1"} if method == "POST" else {})
    if path.endswith("/keys"):
        headers.pop("Idempotency-Key", None)  # key creation refuses the header
    response = _call(gateway, method, path, body, headers)
    assert response.status_code == status, response.text
    if status >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == status
        assert _head(gateway) == before, "a refused request changed the audit log"


@pytest.mark.parametrize(("method", "template", "body", "expected"), MATRIX)
@pytest.mark.parametrize(
    "credential", [None, "Bearer nope", "Bearer pw_live_000000000000_" + "0" * 48]
)
def test_every_route_needs_a_valid_key(
    gateway: Gateway,
    method: str,
    template: str,
    body: dict[str, Any] | None,
    expected: dict[str, int],
    credential: str | None,
) -> None:
    names = ("payment", "payment2", "decision", "approval", "grant", "key", "hold", "scope")
    objects = {**{name: name[0] for name in names}, "session": "s", "dispute": "d", "rail": "r"}
    objects["report"], objects["goal"] = "spend", "g"
    path, body = template.format(**objects), _filled(body, objects)
    headers = {"Authorization": credential} if credential else {}
    response = _call(gateway, method, path, body, headers)
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "unauthenticated"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_the_matrix_covers_every_v1_route(gateway: Gateway) -> None:
    document = gateway.client.get("/openapi.json").json()
    routes = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        if path.startswith("/v1")
        for method in operations
    }
    covered = {(method, _template(path)) for method, path, _, _ in MATRIX}
    assert routes == covered


def _template(path: str) -> str:
    names = {
        "{payment}": "{payment_id}",
        "{decision}": "{decision_id}",
        "{approval}": "{approval_id}",
        "{grant}": "{grant_id}",
        "{key}": "{key_id}",
        "{hold}": "{hold_id}",
        "{session}": "{session_id}",
        "{scope}": "{scope_id}",
        "{dispute}": "{dispute_id}",
        "{goal}": "{run_id}",
    }
    path = path.split("?")[0]  # a query names an object, not a route
    for short, name in names.items():
        path = path.replace(short, name)
    return path


def test_an_agent_lists_only_its_own_objects(gateway: Gateway) -> None:
    _objects(gateway)
    for path in ("/v1/payments", "/v1/approvals", "/v1/grants"):
        mine = gateway.client.get(path, headers=gateway.auth(A)).json()
        theirs = gateway.client.get(path, headers=gateway.auth(B)).json()
        everyone = gateway.client.get(path, headers=gateway.auth(OP)).json()
        assert mine and {row["agent"] for row in mine} == {"agent-a"}, path
        assert theirs == [], path
        assert len(everyone) == len(mine), path
    # An agent asking for another agent's list still gets only its own.
    sneaky = gateway.client.get("/v1/payments?agent=agent-a", headers=gateway.auth(B)).json()
    assert sneaky == []


def test_an_agent_sees_global_and_its_own_budgets_only(gateway: Gateway) -> None:
    gateway.warden.authorize(example_intent("5.00", agent="agent-a"))
    gateway.warden.authorize(example_intent("5.00", agent="agent-b"))
    rows = gateway.client.get("/v1/budgets", headers=gateway.auth(A)).json()
    assert sorted((row["budget_id"], row["scope"]) for row in rows) == [
        ("daily", "global"),
        ("per-agent", "agent"),
    ]
    assert [row["scope_key"] for row in rows if row["scope"] == "agent"] == ["agent-a"]
    staff = gateway.client.get("/v1/budgets", headers=gateway.auth(OP)).json()
    assert {row["scope_key"] for row in staff if row["scope"] == "agent"} == {
        "agent-a",
        "agent-b",
    }


def test_identity_and_environment_come_from_the_key_never_the_body(gateway: Gateway) -> None:
    for field, value in (("agent", "agent-b"), ("environment", "staging")):
        response = gateway.client.post(
            "/v1/authorizations",
            json=intent_body(**{field: value}),
            headers=gateway.auth(A),
        )
        assert response.status_code == 422
        assert field in response.json()["detail"]
    decision = gateway.client.post(
        "/v1/authorizations", json=intent_body(), headers=gateway.auth(A)
    ).json()
    (entry,) = gateway.warden.audit_entries(0, 1000)[-1:]
    assert entry.ref_id == decision["decision_id"]
    assert '"agent":"agent-a"' in entry.body and '"actor":"agent:agent-a"' in entry.body


def test_an_environment_pinned_key_is_held_to_it(gateway: Gateway) -> None:
    staging, _ = gateway.warden.create_key(
        role="agent", agent="agent-a", environment="staging", actor="test"
    )
    response = gateway.client.post(
        "/v1/authorizations",
        json=intent_body(),
        headers={"Authorization": f"Bearer {staging}"},
    )
    assert response.status_code == 200
    decision = response.json()
    # The deployment runs no named environment, so the staging key's intent is decided as
    # staging: the key, not the body, names it.
    entry = gateway.warden.audit_entries(0, 1000)[-1]
    assert decision["decision_id"] == entry.ref_id
    assert '"environment":"staging"' in entry.body


def test_approvals_are_attributed_to_the_keys_operator(gateway: Gateway) -> None:
    approval = _objects(gateway)["approval"]
    response = gateway.client.post(
        f"/v1/approvals/{approval}/approve",
        json={"reason": "checked the invoice"},
        headers=gateway.auth(OP),
    )
    assert response.status_code == 200
    assert response.json()["status"] == "approved"
    assert [vote["operator_id"] for vote in response.json()["votes"]] == ["alice"]


def test_a_revoked_key_reads_exactly_like_an_unknown_one(gateway: Gateway) -> None:
    row = gateway.warden.authenticate(gateway.keys[B])
    gateway.warden.revoke_key(row.key_id, actor="test")
    revoked = gateway.client.get("/v1/payments", headers=gateway.auth(B))
    unknown = gateway.client.get(
        "/v1/payments", headers={"Authorization": "Bearer pw_live_123456789abc_" + "1" * 48}
    )
    assert revoked.status_code == unknown.status_code == 401
    assert revoked.json() == unknown.json()
