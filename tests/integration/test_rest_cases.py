"""Transaction scopes, disputes, breakers, reconcile and operators over REST.

Method: the gateway in process on a SQLite file with the sandbox rail, which records every money
movement (`rail.calls`). Each test drives a flow through the API and checks what really
happened through the library: refunds made, states stored, audit entries written.
"""

from __future__ import annotations

import json
from typing import Any

from rest_support import Gateway

from paywarden.testing import example_intent
from support.intents import intent_body

A, B, OP, AD = "agent-a", "agent-b", "operator", "admin"


def _post(
    gateway: Gateway, path: str, who: str, body: dict[str, Any] | None = None, key: str = "k-1"
) -> Any:
    headers = gateway.auth(who, **{"Idempotency-Key": key})
    return gateway.client.post(path, json=body, headers=headers)


def _scope_with_payments(gateway: Gateway, amounts: tuple[str, ...]) -> dict[str, Any]:
    scope = _post(gateway, "/v1/scopes", A, key="open")
    assert scope.status_code == 200, scope.text
    scope_id = scope.json()["scope_id"]
    for number, amount in enumerate(amounts):
        body = {**intent_body(amount), "label": f"step {number}"}
        paid = _post(gateway, f"/v1/scopes/{scope_id}/payments", A, body, key=f"pay-{number}")
        assert paid.status_code == 200, paid.text
        assert paid.json()["outcome"]["state"] == "settled"
    result: dict[str, Any] = gateway.client.get(
        f"/v1/scopes/{scope_id}", headers=gateway.auth(A)
    ).json()
    return result


def _refunded(gateway: Gateway) -> list[int]:
    return sorted(payment.refunded_minor for payment in gateway.warden.payments())


# Scopes ---------------------------------------------------------------------------------------


def test_a_failed_scope_refunds_its_paid_steps(gateway: Gateway) -> None:
    scope = _scope_with_payments(gateway, ("10.00", "20.00"))
    assert [step["label"] for step in scope["steps"]] == ["step 0", "step 1"]
    failed = _post(
        gateway, f"/v1/scopes/{scope['scope_id']}/fail", A, {"reason": "analysis failed"}, key="f"
    )
    assert failed.status_code == 200, failed.text
    assert failed.json()["status"] == "compensated"
    assert {step["state"] for step in failed.json()["steps"]} == {"compensated"}
    assert _refunded(gateway) == [1000, 2000]
    assert gateway.warden.scope(scope["scope_id"]).status == "compensated"


def test_a_completed_scope_refunds_nothing_and_takes_no_more_steps(gateway: Gateway) -> None:
    scope_id = _scope_with_payments(gateway, ("10.00",))["scope_id"]
    done = _post(gateway, f"/v1/scopes/{scope_id}/complete", A, key="c")
    assert done.status_code == 200 and done.json()["status"] == "committed"
    late = _post(gateway, f"/v1/scopes/{scope_id}/fail", A, {"reason": "too late"}, key="f")
    assert late.status_code == 409
    more = _post(gateway, f"/v1/scopes/{scope_id}/payments", A, intent_body("5.00"), key="p")
    assert more.status_code == 409
    assert _refunded(gateway) == [0]
    assert len(gateway.warden.payments()) == 1


def test_fail_and_scope_payments_require_an_idempotency_key(gateway: Gateway) -> None:
    scope_id = _post(gateway, "/v1/scopes", A, key="open").json()["scope_id"]
    for path, body in (("fail", {"reason": "x"}), ("payments", intent_body("5.00"))):
        response = gateway.client.post(
            f"/v1/scopes/{scope_id}/{path}", json=body, headers=gateway.auth(A)
        )
        assert response.status_code == 422, response.text
    assert gateway.warden.scope(scope_id).status == "open"
    assert gateway.warden.payments() == []


def test_another_agents_scope_is_not_found(gateway: Gateway) -> None:
    scope_id = _scope_with_payments(gateway, ("10.00",))["scope_id"]
    head = gateway.warden.verify_audit().head_seq
    assert gateway.client.get(f"/v1/scopes/{scope_id}", headers=gateway.auth(B)).status_code == 404
    for path, body in (("fail", {"reason": "x"}), ("complete", None)):
        response = _post(gateway, f"/v1/scopes/{scope_id}/{path}", B, body, key=path)
        assert response.status_code == 404, response.text
    paid = _post(gateway, f"/v1/scopes/{scope_id}/payments", B, intent_body("5.00"), key="p")
    assert paid.status_code == 404
    assert gateway.warden.scope(scope_id).status == "open"
    assert gateway.warden.verify_audit().head_seq == head


def test_operators_list_and_compensate_a_scope_left_open(gateway: Gateway) -> None:
    scope_id = _scope_with_payments(gateway, ("30.00",))["scope_id"]
    listed = gateway.client.get("/v1/scopes?status=open", headers=gateway.auth(OP)).json()
    assert [row["scope_id"] for row in listed] == [scope_id]
    done = _post(gateway, f"/v1/scopes/{scope_id}/compensate", OP, {"reason": "worker died"})
    assert done.status_code == 200 and done.json()["status"] == "compensated"
    assert _refunded(gateway) == [3000]
    failed = gateway.client.get(
        "/v1/scopes?status=compensation_failed", headers=gateway.auth(AD)
    ).json()
    assert failed == []
    finished = [e for e in gateway.warden.audit_trail(scope_id) if e.kind == "scope.compensated"]
    actor = json.loads(finished[0].body)["actor"]
    assert actor == "operator:alice"  # who compensated, not the scope's agent


# Disputes -------------------------------------------------------------------------------------


def _settled_payment(gateway: Gateway, agent: str = "agent-a") -> str:
    paid = gateway.warden.pay(example_intent("40.00", agent=agent, idempotency_key=f"p-{agent}"))
    assert paid.payment is not None and paid.payment.state == "settled"
    return paid.payment.payment_id


def test_an_agent_opens_a_dispute_and_an_operator_refunds_it(gateway: Gateway) -> None:
    payment_id = _settled_payment(gateway)
    opened = _post(gateway, "/v1/disputes", A, {"payment_id": payment_id, "reason": "bad data"})
    assert opened.status_code == 200, opened.text
    case = opened.json()
    assert (case["status"], case["opened_by"]) == ("open", "agent:agent-a")
    assert case["evidence"]["payment"]["payment_id"] == payment_id
    mine = gateway.client.get(f"/v1/disputes/{case['dispute_id']}", headers=gateway.auth(A))
    assert mine.status_code == 200
    reviewed = _post(gateway, f"/v1/disputes/{case['dispute_id']}/review", OP, {"note": "mine"})
    assert reviewed.json()["status"] == "under_review"
    resolved = _post(
        gateway,
        f"/v1/disputes/{case['dispute_id']}/resolve",
        OP,
        {"outcome": "refund", "amount": "15.00", "note": "partly wrong"},
        key="r",
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "refunded" and resolved.json()["refund_id"]
    assert gateway.warden.payment(payment_id).refunded_minor == 1500
    listed = gateway.client.get("/v1/disputes?status=refunded", headers=gateway.auth(AD)).json()
    assert [row["dispute_id"] for row in listed] == [case["dispute_id"]]


def test_a_dispute_on_another_agents_payment_is_not_found(gateway: Gateway) -> None:
    payment_id = _settled_payment(gateway, "agent-a")
    foreign = _post(gateway, "/v1/disputes", B, {"payment_id": payment_id, "reason": "mine?"})
    assert foreign.status_code == 404
    assert gateway.warden.disputes() == []
    case = gateway.warden.open_dispute(payment_id, reason="x", actor="agent:agent-a")
    assert (
        gateway.client.get(f"/v1/disputes/{case.dispute_id}", headers=gateway.auth(B)).status_code
        == 404
    )


def test_resolving_needs_a_key_and_a_second_active_case_is_refused(gateway: Gateway) -> None:
    payment_id = _settled_payment(gateway)
    case = _post(gateway, "/v1/disputes", OP, {"payment_id": payment_id, "reason": "r"}).json()
    again = _post(gateway, "/v1/disputes", A, {"payment_id": payment_id, "reason": "r"}, key="2")
    assert again.status_code == 409
    unkeyed = gateway.client.post(
        f"/v1/disputes/{case['dispute_id']}/resolve",
        json={"outcome": "refund"},
        headers=gateway.auth(OP),
    )
    assert unkeyed.status_code == 422
    assert gateway.warden.payment(payment_id).refunded_minor == 0
    rejected = _post(
        gateway, f"/v1/disputes/{case['dispute_id']}/resolve", OP, {"outcome": "reject"}, key="x"
    )
    assert rejected.json()["status"] == "rejected"


# Breakers, reconcile, operators ---------------------------------------------------------------


def test_staff_read_a_rails_breaker(gateway: Gateway) -> None:
    response = gateway.client.get("/v1/rails/sandbox/breaker", headers=gateway.auth(OP))
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "closed"
    unknown = gateway.client.get("/v1/rails/nope/breaker", headers=gateway.auth(AD))
    assert unknown.status_code == 404


def test_reconcile_settles_an_unknown_payment(gateway: Gateway) -> None:
    metadata = {"sandbox_scenario": "timeout_after_send"}
    outcome = gateway.warden.pay(example_intent("10.00", idempotency_key="u", metadata=metadata))
    assert outcome.payment is not None and outcome.payment.state == "unknown"
    response = _post(gateway, "/v1/reconcile", AD)
    assert response.status_code == 200, response.text
    changed = response.json()["changed"]
    assert [(row["payment_id"], row["state"]) for row in changed] == [
        (outcome.payment.payment_id, "settled")
    ]
    assert gateway.warden.payment(outcome.payment.payment_id).state == "settled"
    assert _post(gateway, "/v1/reconcile", OP, key="2").json() == {"changed": []}


def test_admins_list_and_add_operators(gateway: Gateway) -> None:
    added = _post(gateway, "/v1/operators", AD, {"operator_id": "carol", "name": "Carol Diaz"})
    assert added.status_code == 200, added.text
    listed = gateway.client.get("/v1/operators", headers=gateway.auth(AD)).json()
    assert [row["operator_id"] for row in listed] == ["alice", "bob", "carol"]
    twice = _post(gateway, "/v1/operators", AD, {"operator_id": "carol", "name": "C"}, key="2")
    assert twice.status_code == 422
    entry = gateway.warden.audit_entries(0, 1000)[-1]
    assert entry.kind == "operator.added" and "admin" in entry.body
