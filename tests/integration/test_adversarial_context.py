"""Adversarial tests, class 3 of issue 12: context is always checked, refusals change nothing.

The attacker holds an agent key and tries to step outside it: a key pinned to `development`
used on a default (production) deployment, another agent's session id, amounts that a lenient
parser would coerce (`true`, `1.0`, `1e2`), arguments that name another agent or environment,
an unknown or unconfigured rail that pins a hold, and Stripe metadata that would choose where
money goes. After each refused attempt the state tables are compared with their state before.

Method: real Wardens on SQLite files; the REST app through TestClient (with its own Warden, as
`paywarden serve` opens it, and with one passed in); the MCP server through the SDK client.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from adversarial_support import REFUSED, RecordingRail, table_state
from click.testing import CliRunner
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_support import open_gateway

from paywarden import Warden
from paywarden.adapters.rails.stripe import StripeRail
from paywarden.entrypoints.cli.main import cli
from paywarden.entrypoints.rest import Settings, create_app
from paywarden.errors import InvalidIntentError
from support.audit import audit_count, new_entries
from support.intents import intent_body, intent_builder
from support.ledger_file import rows
from support.mcp import mcp_call, tool_text
from support.policies import write_policy
from support.wardens import OpenWarden, no_sleep

DEV_ONLY = """
currency: USD
rules:
  - {id: dev-sandbox, effect: allow, environments: [development], actions: ["payments.*"]}
"""
PAY_ALL = """
currency: USD
rules:
  - {id: pay, effect: allow, actions: ["payments.*"]}
budgets:
  - {id: daily, limit: 1000, window: day}
  - {id: per-session, limit: 50, window: lifetime, scope: session}
  - {id: per-agent, limit: 500, window: day, scope: agent}
velocity:
  - {id: burst, max_count: 100, window: 1h, scope: agent}
"""


_intent = intent_builder("10.00")


def _warden(open_warden: OpenWarden, policy: str = PAY_ALL, **options: Any) -> Warden:
    options.setdefault("rails", {"sandbox": RecordingRail()})
    return open_warden(policy, sleep=no_sleep, **options)


def _budgets(warden: Warden) -> list[tuple[str, str, int, int]]:
    return sorted(
        (row.budget_id, row.scope_key, row.spent_minor, row.held_minor) for row in warden.budgets()
    )


# The deployment is production unless it says otherwise --------------------------------------


def test_a_development_key_pays_nothing_on_a_default_gateway(tmp_path: Path) -> None:
    database, policy = tmp_path / "gateway.db", write_policy(tmp_path, DEV_ONLY)
    created = CliRunner().invoke(
        cli,
        ["keys", "create", "--role", "agent", "--agent", "agent-d"]
        + ["--environment", "development", "--database", str(database), "--json"],
    )
    assert created.exit_code == 0, created.output
    dev_key = json.loads(created.output)["key"]
    settings_ = Settings(database=str(database), policy=str(policy), policy_poll_seconds=0)
    with TestClient(create_app(settings_)) as client:  # the gateway opens its own Warden
        headers = {"Authorization": f"Bearer {dev_key}", "Idempotency-Key": "dev-1"}
        answer = client.post("/v1/payments", json=intent_body(), headers=headers)
        assert answer.status_code == 200, answer.text
        outcome = answer.json()
        assert (outcome["decision"]["outcome"], outcome["decision"]["reason_code"]) == (
            "deny",
            "environment_mismatch",
        )
        assert outcome["payment"] is None and outcome["decision"]["hold_id"] is None
    assert rows(database, "SELECT COUNT(*) FROM payments") == [(0,)]
    assert rows(database, "SELECT COUNT(*) FROM holds") == [(0,)]


def test_a_development_key_or_intent_pays_nothing_on_a_default_warden_or_mcp(
    tmp_path: Path, open_warden: OpenWarden
) -> None:
    rail = RecordingRail()
    with _warden(open_warden, DEV_ONLY, rails={"sandbox": rail}) as warden:
        decision = warden.pay(_intent(environment="development")).decision
        assert (decision.outcome, decision.reason_code) == ("deny", "environment_mismatch")
        dev_key, _ = warden.create_key(
            role="agent", agent="agent-d", environment="development", actor="test"
        )
        prod_key, _ = warden.create_key(role="agent", agent="agent-p", actor="test")
        result = mcp_call(warden, dev_key, "request_payment", intent_body())
        assert result.structured_content is not None
        assert (result.structured_content["status"], result.structured_content["reason_code"]) == (
            "denied",
            "environment_mismatch",
        )
        # A production key meets the development-only rule's environment check: no rule allows.
        result = mcp_call(warden, prod_key, "request_payment", intent_body())
        assert result.structured_content is not None
        assert result.structured_content["reason_code"] == "no_rule_matched"
        limits = mcp_call(warden, dev_key, "describe_my_limits", {})
        assert not limits.is_error
    assert rail.paid == []
    # The positive control: the same rule pays on a deployment that says it is development.
    with _warden(
        open_warden, DEV_ONLY, database=tmp_path / "dev.db", environment="development"
    ) as dev_warden:
        assert dev_warden.pay(_intent()).state == "settled"


# Sessions belong to (agent, session) ----------------------------------------------------------


def test_another_agent_naming_my_session_neither_spends_from_it_nor_reads_it(
    open_warden: OpenWarden,
) -> None:
    with _warden(open_warden) as warden:
        key_a, _ = warden.create_key(role="agent", agent="agent-a", actor="test")
        key_b, _ = warden.create_key(role="agent", agent="agent-b", actor="test")

        def pay(key: str, amount: str) -> dict[str, Any]:
            result = mcp_call(
                warden, key, "request_payment", intent_body(amount, session_id="sess-shared")
            )
            content: dict[str, Any] | None = result.structured_content
            assert content is not None, tool_text(result)
            return content

        assert pay(key_a, "30.00")["status"] == "paid"
        # Shared with A, this would be 60.00 of a 50.00 session budget.
        assert pay(key_b, "30.00")["status"] == "paid"
        assert pay(key_a, "20.00")["status"] == "paid"  # A's session: exactly 50.00 now
        over = pay(key_a, "0.01")
        assert (over["status"], over["reason_code"]) == ("denied", "budget_exceeded")
        sessions = [row for row in _budgets(warden) if row[0] == "per-session"]
        assert sessions == [
            ("per-session", "agent-a|sess-shared", 5000, 0),
            ("per-session", "agent-b|sess-shared", 3000, 0),
        ]
        for tool in ("get_budget_status", "describe_my_limits"):
            seen = mcp_call(warden, key_b, tool, {})
            assert not seen.is_error
            text = tool_text(seen)
            assert "agent-a" not in text and '"spent_minor":5000' not in text
        (session_view,) = [
            view
            for view in json.loads(tool_text(mcp_call(warden, key_b, "get_budget_status", {})))[
                "budgets"
            ]
            if view["budget_id"] == "per-session"
        ]
        assert session_view["spent_minor"] in (None, 3000)  # never A's 5000


# Strict MCP arguments: nothing coerced, unknown names refused, every refusal audited ------------

BAD_AMOUNTS: list[Any] = [True, False, 1.0, 100.0, 1e2, "1e2", "1E2", "0x10", "1_000", " 5"]
BAD_AMOUNTS += ["+5", "５", "-1", "0", "NaN", "Infinity", [1], {"x": 1}, None, "", "1,00"]
BAD_ARGUMENTS: list[dict[str, Any]] = [
    {"agent": "agent-b"},
    {"environment": "development"},
    {"operator": "alice"},
    {"approved": True},
    {"hold_id": "hold_x"},
    {"metadata": {"f": 1.5}},
    {"metadata": {"nested": {"x": 1}}},
    {"metadata": {"list": [1]}},
    {"metadata": "not-a-map"},
    {"purpose": 5},
    {"session_id": 7},
    {"recipient": ["a.example"]},
]


def test_mcp_refuses_every_coercible_amount_and_unknown_argument_and_audits_each(
    open_warden: OpenWarden, database: Path
) -> None:
    with _warden(open_warden) as warden:
        key, _ = warden.create_key(role="agent", agent="agent-a", actor="test")
        state = table_state(database)
        for arguments in [intent_body(amount) for amount in BAD_AMOUNTS] + [
            intent_body(**extra) for extra in BAD_ARGUMENTS
        ]:
            before = audit_count(warden)
            result = mcp_call(warden, key, "request_payment", arguments)
            assert result.is_error, arguments
            (entry,) = new_entries(warden, before)
            assert entry.kind == REFUSED, arguments
            assert json.loads(entry.body)["actor"].endswith("agent-a")
            assert entry.ref_id in tool_text(result) or "invalid_amount" in tool_text(result)
        assert table_state(database) == state
        assert warden.payments() == []
        # Decimal text and whole numbers are the accepted forms.
        for amount in ("1.50", 2, "3"):
            paid = mcp_call(warden, key, "request_payment", intent_body(amount))
            assert paid.structured_content is not None
            assert paid.structured_content["status"] == "paid", amount
    assert warden.verify_audit().ok


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 1.0},
        {"amount": True},
        {"amount": "1e2"},
        {"amount": 100},
        {"agent": "agent-b"},
        {"environment": "development"},
        {"metadata": {"f": 1.5}},
        {"metadata": {"nested": {"x": 1}}},
    ],
    ids=str,
)
def test_rest_refuses_the_same_with_an_audited_decision_id(
    tmp_path: Path, change: dict[str, Any]
) -> None:
    with open_gateway(tmp_path, PAY_ALL) as gateway:
        state = table_state(gateway.database)
        before = audit_count(gateway.warden)
        answer = gateway.client.post(
            "/v1/payments",
            json={**intent_body(), **change},
            headers=gateway.auth("agent-a", **{"Idempotency-Key": "k-1"}),
        )
        assert answer.status_code == 422, answer.text
        (entry,) = new_entries(gateway.warden, before)
        assert (entry.kind, entry.ref_id) == (REFUSED, answer.json()["decision_id"])
        assert json.loads(entry.body)["actor"].endswith("agent-a")
        assert table_state(gateway.database) == state
        assert gateway.rail.calls == []


# A rail that cannot pay refuses before anything is held ----------------------------------------


def test_an_unknown_rail_is_denied_before_any_hold_and_frees_the_idempotency_key(
    open_warden: OpenWarden, database: Path
) -> None:
    rail = RecordingRail()
    with _warden(open_warden, rails={"sandbox": rail}) as warden:
        budgets, state = _budgets(warden), table_state(database)
        before = audit_count(warden)
        refused = warden.pay(_intent("40.00", rail="nonesuch", idempotency_key="pay-1"))
        decision = refused.decision
        assert (decision.outcome, decision.reason_code) == ("deny", "rail_refused")
        assert decision.hold_id is None and refused.payment is None
        (entry,) = new_entries(warden, before)
        assert (entry.kind, entry.ref_id) == ("decision", decision.decision_id)
        assert json.loads(entry.body)["decision"]["reason_code"] == "rail_refused"
        assert _budgets(warden) == budgets and table_state(database) == state
        paid = warden.pay(_intent("40.00", rail="sandbox", idempotency_key="pay-1"))
        assert (paid.decision.outcome, paid.state) == ("allow", "settled")
        again = warden.pay(_intent("40.00", rail="sandbox", idempotency_key="pay-1"))
        assert again.decision.replayed and again.payment == paid.payment
    assert len(rail.paid) == 1


def test_stripe_metadata_never_routes_money_and_an_unrouted_payee_is_refused_first(
    open_warden: OpenWarden, database: Path
) -> None:
    routes: dict[str, Any] = {"payees": {"acct_1VendorXyZ": {}}, "agents": {}}
    stripe = StripeRail(api_key="sk_test_" + "x" * 24, api_base="http://127.0.0.1:9", routes=routes)
    steering = {"destination": "acct_1AttackerQ", "customer": "cus_attacker", "account": "x"}
    with stripe, _warden(open_warden, rails={"stripe": stripe}) as warden:
        budgets, state = _budgets(warden), table_state(database)
        for recipient in ("acct_1AttackerQ", "acct_1vendorxyz", "ACCT_1VENDORXYZ", "evil.example"):
            outcome = warden.pay(
                _intent(rail="stripe", recipient=recipient, metadata=steering),
            )
            decision = outcome.decision
            assert (decision.outcome, decision.reason_code) == ("deny", "rail_refused"), recipient
            assert outcome.payment is None
        assert _budgets(warden) == budgets and table_state(database) == state


# A refused request changes no counter ------------------------------------------------------------


def test_no_refused_request_on_any_surface_changes_state(tmp_path: Path) -> None:
    with open_gateway(tmp_path, PAY_ALL) as gateway:
        warden, database = gateway.warden, gateway.database
        assert warden.pay(_intent("5.00", session_id="s-1")).state == "settled"  # some state
        budgets, state = _budgets(warden), table_state(database)
        secret_session = "ghp_" + "Zq8pL2mN4rT6vX1bC3dF5gH7jK9wY0sA2eU4"
        with pytest.raises(InvalidIntentError):
            warden.authorize(_intent(session_id=secret_session))
        warden.authorize(_intent(environment="staging"))
        warden.pay(_intent(rail="nonesuch"))
        for body in (
            intent_body(recipient="https://u:p@evil.example/"),
            intent_body(amount="1e2"),
            intent_body(purpose="pay\u202eevil"),
            intent_body(metadata={"note": "a\u0000b"}),
            intent_body(session_id=secret_session),
        ):
            answer = gateway.client.post(
                "/v1/authorizations", json=body, headers=gateway.auth("agent-a")
            )
            assert answer.status_code == 422, answer.text
        key = gateway.keys["agent-a"]
        assert mcp_call(warden, key, "request_payment", intent_body(True)).is_error
        assert mcp_call(warden, key, "request_payment", intent_body(recipient="evil..x")).is_error
        assert _budgets(warden) == budgets
        assert table_state(database) == state


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "amount": st.one_of(st.text(max_size=8), st.integers(), st.floats(), st.booleans()),
            "currency": st.one_of(st.text(max_size=5), st.integers()),
            "recipient": st.text(max_size=20),
            "session_id": st.text(max_size=12),
            "metadata": st.dictionaries(
                st.text(max_size=6),
                st.one_of(st.text(max_size=6), st.floats(), st.integers(), st.none()),
                max_size=3,
            ),
        },
    )
)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_property_an_arbitrary_mcp_payment_either_decides_or_is_a_refusal_never_a_crash(
    tmp_path_factory: pytest.TempPathFactory, open_warden: OpenWarden, changes: dict[str, Any]
) -> None:
    database = tmp_path_factory.mktemp("mcp-fuzz") / "ledger.db"
    with _warden(open_warden, database=database) as warden:
        key, _ = warden.create_key(role="agent", agent="agent-a", actor="test")
        before = audit_count(warden)
        result = mcp_call(warden, key, "request_payment", {**intent_body(), **changes})
        kinds = [entry.kind for entry in new_entries(warden, before)]
        if result.is_error:
            assert kinds == [REFUSED], tool_text(result)
            assert not tool_text(result).startswith("internal_error")
        else:
            assert result.structured_content is not None
            assert kinds[0] == "decision" and REFUSED not in kinds
        assert warden.verify_audit().ok
