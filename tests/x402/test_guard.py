"""The x402 client guard against the SDK's own resource-server middleware: real EIP-3009
signatures from a throwaway key, a fake facilitator that records every verify and settle call,
a real SQLite ledger. Denied payments are never signed or sent, tampered payloads never leave,
settled amounts reach the budget exactly."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from x402 import AbortResult, x402Client
from x402.http.clients.httpx import PaymentError
from x402.schemas import PaymentPayload, RecoveredPayloadResult
from x402_helpers import POLICY, PRICES, CountingScheme

from paywarden import FrozenClock, Warden
from paywarden.x402 import X402Guard, async_httpx_client
from paywarden.x402.paid_api import NETWORK, PAY_TO, PAYER_TX, FakeFacilitator, paid_app

Get = Callable[[str], Awaitable[httpx.Response]]


def run(
    warden: Warden,
    client: x402Client,
    facilitator: FakeFacilitator,
    body: Callable[[Get], Awaitable[Any]],
    *,
    inner: httpx.AsyncBaseTransport | None = None,
    guard: X402Guard | None = None,
) -> Any:
    app = paid_app(facilitator, PRICES)
    transport = inner or httpx.ASGITransport(app=app)
    guard = guard or X402Guard(warden, agent="research-1")

    async def main() -> Any:
        async with async_httpx_client(
            guard, client, transport=transport, base_url="http://api.local"
        ) as http:
            return await body(http.get)

    return asyncio.run(main())


def decisions(warden: Warden) -> list[dict[str, Any]]:
    bodies = [json.loads(e.body) for e in warden.audit_entries(limit=1000)]
    return [b for b in bodies if "outcome" in b or "reason_code" in b]


def daily(warden: Warden) -> tuple[int, int]:
    (budget,) = warden.budgets()
    return budget.spent_minor, budget.held_minor


def test_a_small_call_pays_and_the_settled_amount_reaches_the_budget(
    warden: Warden, async_client: x402Client, scheme: CountingScheme, facilitator: FakeFacilitator
) -> None:
    response = run(warden, async_client, facilitator, lambda get: get("/small"))
    assert response.status_code == 200
    assert response.json() == {"data": "small"}
    assert "payment-response" in response.headers
    assert (scheme.signed, facilitator.count("verify"), facilitator.count("settle")) == (1, 1, 1)
    assert daily(warden) == (1, 0)  # 0.01 USDC = 1 US cent, captured, nothing left held


def test_over_the_per_call_limit_nothing_is_signed_or_sent(
    warden: Warden, async_client: x402Client, scheme: CountingScheme, facilitator: FakeFacilitator
) -> None:
    with pytest.raises(PaymentError, match="denied_by_rule"):
        run(warden, async_client, facilitator, lambda get: get("/big"))
    assert scheme.signed == 0
    assert facilitator.calls == []
    assert daily(warden) == (0, 0)
    denial = warden.audit_entries(limit=100)
    assert any("per-call-limit" in entry.body and "x402_pay_to" in entry.body for entry in denial)


def test_the_daily_budget_stops_a_burst(
    warden: Warden, async_client: x402Client, scheme: CountingScheme, facilitator: FakeFacilitator
) -> None:
    async def burst(get: Get) -> list[str]:
        results = []
        for _ in range(7):
            try:
                results.append(str((await get("/small")).status_code))
            except PaymentError as error:
                results.append("budget_exceeded" if "budget_exceeded" in str(error) else "?")
        return results

    results = run(warden, async_client, facilitator, burst)
    assert results == ["200"] * 5 + ["budget_exceeded"] * 2
    assert scheme.signed == 5 and facilitator.count("settle") == 5
    assert daily(warden) == (5, 0)


def test_a_usdc_budget_counts_atomic_units_exactly(
    tmp_path: Any, async_client: x402Client, facilitator: FakeFacilitator
) -> None:
    policy = """
currency: USDC
rules:
  - id: pay-apis
    effect: allow
    actions: [x402.pay]
budgets:
  - id: daily
    limit: "1.00"
    window: 24h
    scope: agent
"""
    with Warden.open(policy, database=tmp_path / "usdc.db") as warden:

        async def twice(get: Get) -> None:
            await get("/small")
            await get("/choice")

        run(warden, async_client, facilitator, twice)
        assert daily(warden) == (10_000 + 20_000, 0)  # the cheapest option: 0.02


@pytest.mark.parametrize(
    "tamper",
    [{"pay_to": "0x2222222222222222222222222222222222222222"}, {"value": "1000000"}],
    ids=["pay_to", "value"],
)
def test_a_tampered_payload_never_leaves_and_its_hold_is_voided(
    warden: Warden, facilitator: FakeFacilitator, tamper: dict[str, str]
) -> None:
    scheme = CountingScheme(tamper)
    client = x402Client().register(NETWORK, scheme)
    with pytest.raises(PaymentError):
        run(warden, client, facilitator, lambda get: get("/small"))
    assert scheme.signed == 1
    assert facilitator.calls == []
    assert daily(warden) == (0, 0)


def test_several_options_the_cheapest_allowed_one_is_paid(
    warden: Warden, async_client: x402Client, facilitator: FakeFacilitator
) -> None:
    response = run(warden, async_client, facilitator, lambda get: get("/choice"))
    assert response.status_code == 200
    (_, payload) = facilitator.calls[0]
    assert payload.accepted.amount == "20000"  # $0.50 denied by rule, $0.02 beats $0.03
    assert daily(warden) == (2, 0)


def test_a_pay_to_outside_the_hosts_allow_list_is_denied(
    tmp_path: Any, async_client: x402Client, scheme: CountingScheme, facilitator: FakeFacilitator
) -> None:
    policy = f"""
currency: USDC
rules:
  - id: pay-to-allow-list
    effect: deny
    when: 'payee_host == "api.local" && !(x402_pay_to in ["{PAY_TO[:-1]}2"])'
  - id: pay-apis
    effect: allow
    actions: [x402.pay]
    when: 'x402_network == "{NETWORK}" && x402_scheme == "exact"'
"""
    with (
        Warden.open(policy, database=tmp_path / "l.db") as warden,
        pytest.raises(PaymentError, match="denied_by_rule"),
    ):
        run(warden, async_client, facilitator, lambda get: get("/small"))
    assert scheme.signed == 0 and facilitator.calls == []


def test_an_unknown_asset_is_denied_and_audited(
    warden: Warden, async_client: x402Client, scheme: CountingScheme, facilitator: FakeFacilitator
) -> None:
    guard = X402Guard(warden, agent="research-1")

    class OtherAsset(httpx.AsyncBaseTransport):
        """Rewrites the 402's asset to a token paywarden does not know."""

        def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
            self.inner = inner

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await self.inner.handle_async_request(request)
            header = response.headers.get("payment-required")
            if header is None:
                return response
            import base64

            data = json.loads(base64.b64decode(header))
            data["accepts"][0]["asset"] = "0x" + "99" * 20
            headers = dict(response.headers)
            headers["payment-required"] = base64.b64encode(json.dumps(data).encode()).decode()
            return httpx.Response(402, headers=headers, content=b"{}")

    inner = OtherAsset(httpx.ASGITransport(app=paid_app(facilitator, PRICES)))
    with pytest.raises(PaymentError, match="invalid_intent"):
        run(warden, async_client, facilitator, lambda get: get("/small"), inner=inner, guard=guard)
    assert scheme.signed == 0 and facilitator.calls == []
    assert any("asset registry" in entry.body for entry in warden.audit_entries(limit=100))


def test_a_lost_settlement_answer_is_retried_with_the_same_signed_payload(
    warden: Warden, async_client: x402Client, scheme: CountingScheme, facilitator: FakeFacilitator
) -> None:
    class LoseFirstAnswer(httpx.AsyncBaseTransport):
        """Drops the PAYMENT-RESPONSE of the first paid answer (the answer was lost)."""

        def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
            self.inner, self.lost = inner, 0

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await self.inner.handle_async_request(request)
            if "payment-response" in response.headers and self.lost == 0:
                self.lost += 1
                return httpx.Response(504, content=b"gateway timeout")
            return response

    guard = X402Guard(warden, agent="research-1")
    inner = LoseFirstAnswer(httpx.ASGITransport(app=paid_app(facilitator, PRICES)))

    async def twice(get: Get) -> tuple[int, list[str], int]:
        first = await get("/small")
        states = [entry.state for entry in guard.entries()]
        second = await get("/small")
        return first.status_code, states, second.status_code

    first, states, second = run(warden, async_client, facilitator, twice, inner=inner, guard=guard)
    assert (first, states, second) == (504, ["unknown"], 200)
    assert scheme.signed == 1  # the retry resent the payload in doubt: one nonce, one payment
    (_, sent_first), (_, sent_again) = [c for c in facilitator.calls if c[0] == "verify"]
    assert (
        sent_first.payload["authorization"]["nonce"] == sent_again.payload["authorization"]["nonce"]
    )
    assert daily(warden) == (1, 0)
    assert guard.entries() == []
    (payment,) = warden.payments(agent="research-1")
    assert (payment.state, payment.rail, payment.rail_payment_id) == ("settled", "x402", PAYER_TX)


def test_no_settlement_answer_leaves_the_payment_unknown_with_its_hold(
    tmp_path: Any, async_client: x402Client, facilitator: FakeFacilitator
) -> None:
    clock = FrozenClock(datetime.now(UTC))
    warden = Warden.open(POLICY, database=tmp_path / "unknown.db", clock=clock)

    class LoseAnswers(httpx.AsyncBaseTransport):
        def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
            self.inner = inner

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await self.inner.handle_async_request(request)
            if "payment-response" in response.headers:
                return httpx.Response(504, content=b"gateway timeout")
            return response

    inner = LoseAnswers(httpx.ASGITransport(app=paid_app(facilitator, PRICES)))
    response = run(warden, async_client, facilitator, lambda get: get("/small"), inner=inner)
    assert response.status_code == 504
    (payment,) = warden.payments(agent="research-1")
    assert payment.state == "unknown"
    assert daily(warden) == (0, 1)  # the money may have moved: the budget keeps counting it
    clock.advance(3 * 86_400)
    assert warden.expire_due() == 0  # an unknown payment's hold never expires
    assert warden.reconcile() == []  # the x402 rail cannot know: it stays for an operator
    assert warden.payment(payment.payment_id).state == "unknown"
    assert warden.hold(payment.hold_id).state == "held"
    warden.close()


def test_a_refused_settlement_keeps_the_hold_and_so_does_a_pending_one(
    warden: Warden, async_client: x402Client, scheme: CountingScheme, facilitator: FakeFacilitator
) -> None:
    """A refusal proves nothing: the server holds a signed authorization it can settle until
    `validBefore`, so the budget keeps counting it, and a retry resends the same payload."""
    facilitator.settle_answer = "failed"
    run(warden, async_client, facilitator, lambda get: get("/small"))
    assert daily(warden) == (0, 1)
    (refused,) = warden.payments(agent="research-1")
    assert refused.state == "unknown" and "x402 refused" in str(refused.error)
    facilitator.settle_answer = "pending"
    guard = X402Guard(warden, agent="research-1")
    with pytest.raises(ValueError, match="another X402Guard"):
        guard.attach(async_client)
    client = x402Client().register(NETWORK, CountingScheme())
    run(warden, client, facilitator, lambda get: get("/small"), guard=guard)
    assert daily(warden) == (0, 2)
    assert [entry.state for entry in guard.entries()] == ["pending"]
    states = sorted(payment.state for payment in warden.payments(agent="research-1"))
    assert states == ["submitted", "unknown"]  # pending stays submitted, with its hold
    assert scheme.signed == 1


class KeepsSignatures(httpx.AsyncBaseTransport):
    """A hostile paid API: it keeps every signed payment it is sent and answers 402 again, as
    if it had been refused (it could settle each one later, until its `validBefore`)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner, self.kept = inner, []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        signature = request.headers.get("payment-signature")
        if signature is None:
            return await self.inner.handle_async_request(request)
        self.kept.append(signature)
        unpaid = request.headers.copy()
        del unpaid["payment-signature"]
        again = httpx.Request(request.method, request.url, headers=unpaid)
        return await self.inner.handle_async_request(again)


def test_a_server_that_answers_402_to_a_signed_payment_cannot_get_a_second_signature(
    warden: Warden, async_client: x402Client, scheme: CountingScheme, facilitator: FakeFacilitator
) -> None:
    inner = KeepsSignatures(httpx.ASGITransport(app=paid_app(facilitator, PRICES)))

    async def burst(get: Get) -> list[int]:
        return [(await get("/small")).status_code for _ in range(8)]

    statuses = run(warden, async_client, facilitator, burst, inner=inner)
    assert statuses == [402] * 8
    # One signature, resent: the server can settle it at most once; the budget counts it.
    assert scheme.signed == 1 and len(set(inner.kept)) == 1
    assert daily(warden) == (0, 1)
    (payment,) = warden.payments(agent="research-1")
    assert payment.state == "unknown" and warden.hold(payment.hold_id).state == "held"


def test_a_payment_in_doubt_past_its_valid_before_is_replaced_by_a_new_payment(
    tmp_path: Any, async_client: x402Client, scheme: CountingScheme, facilitator: FakeFacilitator
) -> None:
    clock = FrozenClock(datetime.now(UTC))
    now = [clock.now().timestamp()]
    inner = KeepsSignatures(httpx.ASGITransport(app=paid_app(facilitator, PRICES)))
    with Warden.open(POLICY, database=tmp_path / "l.db", clock=clock) as warden:
        guard = X402Guard(warden, agent="research-1", now=lambda: now[0])
        assert (
            run(
                warden,
                async_client,
                facilitator,
                lambda get: get("/small"),
                inner=inner,
                guard=guard,
            ).status_code
            == 402
        )
        now[0] += 3600  # its validBefore has passed: it can no longer settle
        run(warden, async_client, facilitator, lambda get: get("/small"), inner=inner, guard=guard)
        assert scheme.signed == 2
        assert sorted(p.state for p in warden.payments(agent="research-1")) == ["unknown"] * 2
        assert daily(warden) == (0, 2)  # both kept: only the chain knows whether they settled


def test_require_approval_aborts_and_the_approved_retry_pays(
    tmp_path: Any, async_client: x402Client, scheme: CountingScheme, facilitator: FakeFacilitator
) -> None:
    policy = """
currency: USDC
rules:
  - id: ask
    effect: require_approval
    amount: {gt: "0.005"}
  - id: pay-apis
    effect: allow
    actions: [x402.pay]
"""
    with Warden.open(policy, database=tmp_path / "a.db") as warden:
        guard = X402Guard(warden, agent="research-1")
        with pytest.raises(PaymentError, match="approval_required"):
            run(warden, async_client, facilitator, lambda get: get("/small"), guard=guard)
        assert scheme.signed == 0 and facilitator.calls == []
        (pending,) = warden.approvals("pending")
        warden.add_operator("ops-1", name="Ops")
        warden.approve(pending.approval_id, operator="ops-1", reason="known API")
        response = run(warden, async_client, facilitator, lambda get: get("/small"), guard=guard)
        assert response.status_code == 200 and scheme.signed == 1


def test_the_payment_identifier_extension_carries_the_payments_key_when_declared(
    warden: Warden, async_client: x402Client, facilitator: FakeFacilitator
) -> None:
    inner = httpx.ASGITransport(app=paid_app(facilitator, PRICES, payment_identifier=True))
    response = run(warden, async_client, facilitator, lambda get: get("/small"), inner=inner)
    assert response.status_code == 200
    (_, sent) = facilitator.calls[0]
    identifier = sent.extensions["payment-identifier"]["info"]["id"]
    assert identifier.startswith("x402_") and len(identifier) == 37
    other = x402Client().register(NETWORK, CountingScheme())
    plain = run(warden, other, facilitator, lambda get: get("/small"))  # not declared
    assert plain.status_code == 200
    assert "payment-identifier" not in (facilitator.calls[-1][1].extensions or {})


def test_a_client_extension_that_changes_the_checked_payload_stops_it(
    warden: Warden, async_client: x402Client, facilitator: FakeFacilitator
) -> None:
    class Rewrite:
        key = "rewrite"

        def enrich_payment_payload(self, payload: Any, payment_required: Any) -> Any:
            inner = json.loads(json.dumps(payload.payload))
            inner["authorization"]["to"] = "0x" + "33" * 20
            return payload.model_copy(update={"payload": inner})

    async_client.register_extension(Rewrite())
    with pytest.raises(PaymentError, match="changed the signed payload"):
        run(warden, async_client, facilitator, lambda get: get("/small"))
    assert facilitator.calls == []
    (payment,) = warden.payments(agent="research-1")
    assert payment.state == "failed" and daily(warden) == (0, 0)


def test_a_resent_payload_that_is_refused_stays_unknown_never_released(
    warden: Warden, async_client: x402Client, scheme: CountingScheme, facilitator: FakeFacilitator
) -> None:
    class SettleThenLoseThenRefuse(httpx.AsyncBaseTransport):
        """The first paid answer is lost after settling; the resend is refused (nonce spent)."""

        def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
            self.inner, self.paid = inner, 0

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            paid = "payment-signature" in request.headers
            self.paid += paid
            if self.paid == 2:
                facilitator.settle_answer = "failed"
            response = await self.inner.handle_async_request(request)
            return httpx.Response(504, content=b"lost") if paid and self.paid == 1 else response

    guard = X402Guard(warden, agent="research-1")
    inner = SettleThenLoseThenRefuse(httpx.ASGITransport(app=paid_app(facilitator, PRICES)))

    async def twice(get: Get) -> tuple[int, int]:
        return (await get("/small")).status_code, (await get("/small")).status_code

    assert run(warden, async_client, facilitator, twice, inner=inner, guard=guard) == (504, 402)
    assert scheme.signed == 1
    (payment,) = warden.payments(agent="research-1")
    assert payment.state == "unknown" and daily(warden) == (0, 1)


def test_the_payee_url_never_carries_user_info_query_or_fragment(
    warden: Warden, async_client: x402Client, facilitator: FakeFacilitator
) -> None:
    url = "http://bob:hunter2@api.local/small?api_key=sk_live_abcdef#frag"
    assert run(warden, async_client, facilitator, lambda get: get(url)).status_code == 200
    (payment,) = warden.payments(agent="research-1")
    assert json.loads(payment.intent)["recipient"] == "http://api.local/small"
    stored = payment.intent + "".join(entry.body for entry in warden.audit_entries(limit=1000))
    for secret in ("hunter2", "sk_live_abcdef", "frag"):
        assert secret not in stored, stored[stored.index(secret) - 200 : stored.index(secret) + 50]


def test_a_payload_recovered_by_another_failure_hook_is_never_sent(
    warden: Warden, facilitator: FakeFacilitator
) -> None:
    """`after_creation` refuses a tampered payload; a failure hook registered before the guard's
    recovers one anyway: the guard never sends a payload it did not check."""
    scheme = CountingScheme({"pay_to": "0x" + "22" * 20})
    client = x402Client().register(NETWORK, scheme)

    def recover(ctx: Any) -> RecoveredPayloadResult:
        requirements = ctx.selected_requirements
        inner = scheme.create_payment_payload(requirements)
        return RecoveredPayloadResult(payload=PaymentPayload(payload=inner, accepted=requirements))

    client.on_payment_creation_failure(recover)
    with pytest.raises(PaymentError, match="did not check"):
        run(warden, client, facilitator, lambda get: get("/small"))
    assert facilitator.calls == []
    assert daily(warden) == (0, 0)


def test_a_recorded_payload_that_never_left_is_failed_not_left_unknown(
    warden: Warden, async_client: x402Client, facilitator: FakeFacilitator
) -> None:
    class Broken:
        key = "broken"

        def enrich_payment_payload(self, payload: Any, payment_required: Any) -> Any:
            raise RuntimeError("extension broke")

    async_client.register_extension(Broken())
    with pytest.raises(PaymentError, match="extension broke"):
        run(warden, async_client, facilitator, lambda get: get("/small"))
    assert facilitator.calls == []
    (payment,) = warden.payments(agent="research-1")
    assert payment.state == "failed" and daily(warden) == (0, 0)


def test_a_hold_for_a_payment_another_hook_aborted_is_released(
    warden: Warden, async_client: x402Client, scheme: CountingScheme, facilitator: FakeFacilitator
) -> None:
    guard = X402Guard(warden, agent="research-1")
    run(warden, async_client, facilitator, lambda get: get("/small"), guard=guard)
    async_client.on_before_payment_creation(lambda ctx: AbortResult("user_hook_says_no"))
    with pytest.raises(PaymentError, match="user_hook_says_no"):
        run(warden, async_client, facilitator, lambda get: get("/small"), guard=guard)
    assert scheme.signed == 1
    assert daily(warden) == (1, 0)  # the first payment only; the second's hold was voided


def test_a_sub_cent_usdc_payment_counts_as_a_whole_cent_against_a_usd_budget(
    warden: Warden, async_client: x402Client, facilitator: FakeFacilitator
) -> None:
    """0.001 USDC is 0.1 US cent: converted exactly and rounded up, never down to free."""
    assert run(warden, async_client, facilitator, lambda get: get("/tiny")).status_code == 200
    (_, sent) = facilitator.calls[0]
    assert sent.accepted.amount == "1000"
    assert daily(warden) == (1, 0)


@pytest.mark.parametrize("part", ["authorization", "accepted"])
def test_a_hook_that_changes_the_checked_payload_in_place_stops_it(
    warden: Warden, async_client: x402Client, facilitator: FakeFacilitator, part: str
) -> None:
    """A hook after the guard's gets the very object the guard checked: changing it in place
    (same identity) must not slip past the check before sending."""
    guard = X402Guard(warden, agent="research-1")
    guard.attach(async_client)

    def mutate(ctx: Any) -> None:
        payload = ctx.payment_payload
        if part == "authorization":
            payload.payload["authorization"]["to"] = "0x" + "33" * 20
        else:
            payload.accepted.pay_to = "0x" + "33" * 20

    async_client.on_after_payment_creation(mutate)
    with pytest.raises(PaymentError, match="changed the signed payload"):
        run(warden, async_client, facilitator, lambda get: get("/small"), guard=guard)
    assert facilitator.calls == []
    (payment,) = warden.payments(agent="research-1")
    assert payment.state == "failed" and daily(warden) == (0, 0)
