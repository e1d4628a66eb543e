"""Holds and sessions over REST: capture and void by the owning agent, phases forward only.

Method: the gateway in process on a SQLite file (rest_support.POLICY: up to 100 USD allowed,
more needs approval). Holds come from `POST /v1/authorizations` through the API itself; each
test reads the outcome back through the library (the hold's state, the budgets, the audit log),
so a route that answered well but changed the wrong thing fails.
"""

from __future__ import annotations

from typing import Any

from rest_support import Gateway

from support.intents import intent_body

A, B, OP = "agent-a", "agent-b", "operator"


def _authorize(gateway: Gateway, amount: str = "40.00", who: str = A) -> dict[str, Any]:
    response = gateway.client.post(
        "/v1/authorizations", json=intent_body(amount), headers=gateway.auth(who)
    )
    assert response.status_code == 200, response.text
    decision: dict[str, Any] = response.json()
    return decision


def _post(
    gateway: Gateway, path: str, who: str, body: dict[str, Any] | None = None, key: str = "k-1"
) -> Any:
    headers = gateway.auth(who, **{"Idempotency-Key": key})
    return gateway.client.post(path, json=body, headers=headers)


def _held(gateway: Gateway) -> int:
    rows = gateway.warden.budgets()
    return sum(row.held_minor for row in rows if row.budget_id == "daily")


def test_the_owner_captures_part_of_a_hold_and_the_rest_is_freed(gateway: Gateway) -> None:
    hold_id = _authorize(gateway, "40.00")["hold_id"]
    assert _held(gateway) == 4000
    response = _post(gateway, f"/v1/holds/{hold_id}/capture", A, {"amount": "25.00"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["state"], body["captured_minor"], body["amount_minor"]) == ("captured", 2500, 4000)
    assert _held(gateway) == 0
    daily = next(row for row in gateway.warden.budgets() if row.budget_id == "daily")
    assert daily.spent_minor == 2500
    entry = gateway.warden.audit_trail(hold_id)[-1]
    assert entry.kind == "hold.captured" and '"actor":"agent:agent-a"' in entry.body


def test_a_capture_without_amount_takes_all_and_a_retry_replays(gateway: Gateway) -> None:
    hold_id = _authorize(gateway, "40.00")["hold_id"]
    first = _post(gateway, f"/v1/holds/{hold_id}/capture", A)
    again = _post(gateway, f"/v1/holds/{hold_id}/capture", A)
    assert first.status_code == again.status_code == 200
    assert first.json()["captured_minor"] == 4000
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"


def test_capture_and_void_require_an_idempotency_key(gateway: Gateway) -> None:
    hold_id = _authorize(gateway)["hold_id"]
    for verb in ("capture", "void"):
        response = gateway.client.post(f"/v1/holds/{hold_id}/{verb}", headers=gateway.auth(A))
        assert response.status_code == 422, response.text
        assert "Idempotency-Key" in response.text
    assert gateway.warden.hold(hold_id).state == "held"


def test_a_used_hold_is_refused_with_its_own_code(gateway: Gateway) -> None:
    hold_id = _authorize(gateway)["hold_id"]
    assert _post(gateway, f"/v1/holds/{hold_id}/void", A, key="v-1").status_code == 200
    assert gateway.warden.hold(hold_id).state == "voided"
    for verb in ("capture", "void"):
        response = _post(gateway, f"/v1/holds/{hold_id}/{verb}", A, key=f"{verb}-2")
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "hold_already_resolved"
        assert "voided" in response.json()["detail"]
    assert gateway.warden.hold(hold_id).state == "voided"


def test_an_expired_hold_is_refused_as_expired(gateway: Gateway) -> None:
    hold_id = _authorize(gateway)["hold_id"]
    gateway.clock.advance(hours=2)
    response = _post(gateway, f"/v1/holds/{hold_id}/capture", A)
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "hold_expired"
    assert gateway.warden.hold(hold_id).state == "expired"
    assert _held(gateway) == 0


def test_a_capture_above_the_hold_is_a_conflict_and_keeps_it(gateway: Gateway) -> None:
    hold_id = _authorize(gateway, "40.00")["hold_id"]
    response = _post(gateway, f"/v1/holds/{hold_id}/capture", A, {"amount": "40.01"})
    assert response.status_code == 409
    assert response.json()["code"] == "state_conflict"
    assert gateway.warden.hold(hold_id).state == "held"


def test_a_bad_amount_is_refused_before_anything_changes(gateway: Gateway) -> None:
    hold_id = _authorize(gateway, "40.00")["hold_id"]
    head = gateway.warden.verify_audit().head_seq
    for amount in ("1.001", "-1", 5):
        response = _post(gateway, f"/v1/holds/{hold_id}/capture", A, {"amount": amount})
        assert response.status_code == 422, (amount, response.text)
    assert gateway.warden.hold(hold_id).state == "held"
    assert gateway.warden.verify_audit().head_seq == head


def test_a_foreign_hold_reads_exactly_like_a_missing_one(gateway: Gateway) -> None:
    hold_id = _authorize(gateway, who=A)["hold_id"]
    head = gateway.warden.verify_audit().head_seq
    for verb in ("capture", "void"):
        foreign = _post(gateway, f"/v1/holds/{hold_id}/{verb}", B, key=f"f-{verb}")
        missing = _post(gateway, f"/v1/holds/hold_nope/{verb}", B, key=f"m-{verb}")
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json()["code"] == missing.json()["code"] == "not_found"
        # The same answer, but for the id the caller sent itself: nothing about the owner.
        assert foreign.text.replace(hold_id, "ID") == missing.text.replace("hold_nope", "ID")
    assert gateway.client.get(f"/v1/holds/{hold_id}", headers=gateway.auth(B)).status_code == 404
    assert gateway.warden.hold(hold_id).state == "held"
    assert gateway.warden.verify_audit().head_seq == head


def test_the_hold_of_a_pending_approval_cannot_be_captured(gateway: Gateway) -> None:
    decision = _authorize(gateway, "500.00")
    assert decision["outcome"] == "require_approval"
    response = _post(gateway, f"/v1/holds/{decision['hold_id']}/capture", A)
    assert response.status_code == 409 and response.json()["code"] == "state_conflict"
    voided = _post(gateway, f"/v1/holds/{decision['hold_id']}/void", A, key="v")
    assert voided.status_code == 200
    assert gateway.warden.approval(decision["approval_id"]).row.status == "voided"


def test_staff_read_any_hold_but_cannot_capture_it(gateway: Gateway) -> None:
    hold_id = _authorize(gateway)["hold_id"]
    read = gateway.client.get(f"/v1/holds/{hold_id}", headers=gateway.auth(OP))
    assert read.status_code == 200 and read.json()["agent"] == "agent-a"
    for who in (OP, "admin"):
        assert _post(gateway, f"/v1/holds/{hold_id}/capture", who).status_code == 403


# Sessions -------------------------------------------------------------------------------------


def test_a_session_starts_in_explore_and_moves_forward_only(gateway: Gateway) -> None:
    started = _post(gateway, "/v1/sessions", A, {"session_id": "s1"}, key="s")
    assert started.status_code == 200, started.text
    assert (started.json()["phase"], started.json()["agent"]) == ("EXPLORE", "agent-a")
    steps = [("DECIDE", 200), ("EXPLORE", 409), ("COMMIT", 200), ("COMMIT", 409)]
    for number, (phase, status) in enumerate(steps):
        response = _post(gateway, "/v1/sessions/s1/advance", A, {"phase": phase}, key=f"a{number}")
        assert response.status_code == status, (phase, response.text)
        if status == 409:
            assert response.json()["code"] == "phase_transition_invalid"
    assert gateway.warden.session("agent-a", "s1").phase == "COMMIT"
    read = gateway.client.get("/v1/sessions/s1", headers=gateway.auth(A))
    assert read.json()["phase"] == "COMMIT"


def test_a_session_without_id_gets_one_and_a_reused_id_is_a_conflict(gateway: Gateway) -> None:
    fresh = gateway.client.post("/v1/sessions", headers=gateway.auth(A)).json()
    assert fresh["session_id"].startswith("ses_") and fresh["phase"] == "EXPLORE"
    again = _post(gateway, "/v1/sessions", A, {"session_id": fresh["session_id"]}, key="x")
    assert again.status_code == 409 and again.json()["code"] == "phase_transition_invalid"


def test_an_agent_never_sees_or_moves_another_agents_session(gateway: Gateway) -> None:
    _post(gateway, "/v1/sessions", A, {"session_id": "shared"}, key="s")
    assert gateway.client.get("/v1/sessions/shared", headers=gateway.auth(B)).status_code == 404
    moved = _post(gateway, "/v1/sessions/shared/advance", B, {"phase": "DECIDE"}, key="b")
    assert moved.status_code == 404
    assert gateway.warden.session("agent-a", "shared").phase == "EXPLORE"
    # The same id is free for agent-b: sessions are keyed by their agent.
    theirs = _post(gateway, "/v1/sessions", B, {"session_id": "shared"}, key="s")
    assert theirs.status_code == 200 and theirs.json()["agent"] == "agent-b"


def test_a_bad_phase_or_session_id_is_refused(gateway: Gateway) -> None:
    _post(gateway, "/v1/sessions", A, {"session_id": "s1"}, key="s")
    for body in ({"phase": "decide!"}, {"phase": "SHIP"}, {}):
        response = _post(gateway, "/v1/sessions/s1/advance", A, body, key=str(body))
        assert response.status_code == 422, response.text
    bad = _post(gateway, "/v1/sessions", A, {"session_id": "has space"}, key="bad")
    assert bad.status_code == 422
    assert gateway.warden.session("agent-a", "s1").phase == "EXPLORE"


def test_the_session_phase_gates_payments_under_a_required_policy(tmp_path: Any) -> None:
    from rest_support import POLICY, open_gateway

    with open_gateway(tmp_path, POLICY + "sessions: {required: true}\n") as gw:
        body = intent_body("10.00", session_id="s1")
        first = gw.client.post("/v1/authorizations", json=body, headers=gw.auth(A)).json()
        assert first["reason_code"] == "phase_required"
        _post(gw, "/v1/sessions", A, {"session_id": "s1"}, key="s")
        _post(gw, "/v1/sessions/s1/advance", A, {"phase": "DECIDE"}, key="d")
        _post(gw, "/v1/sessions/s1/advance", A, {"phase": "COMMIT"}, key="c")
        last = gw.client.post("/v1/authorizations", json=body, headers=gw.auth(A)).json()
        assert last["outcome"] == "allow", last
