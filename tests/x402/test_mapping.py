"""Mapping a requirement into an intent, and checking a signed payload against it."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from x402.schemas import PaymentRequirements

from paywarden import Warden
from paywarden.assets import ASSETS, find_asset
from paywarden.money import DEFAULT_TOKEN_EXPONENTS
from paywarden.x402 import mapping
from paywarden.x402.mapping import PayloadMismatchError, X402RefusedError

USDC_BASE = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
PAY_TO = "0x1111111111111111111111111111111111111111"


def requirement(**changes: Any) -> PaymentRequirements:
    fields: dict[str, Any] = {
        "scheme": "exact",
        "network": "eip155:8453",
        "asset": USDC_BASE,
        "amount": "10000",
        "pay_to": PAY_TO,
        "max_timeout_seconds": 300,
        "extra": {"name": "USD Coin", "version": "2"},
    }
    fields.update(changes)
    return PaymentRequirements(**fields)


def test_registry_decimals_agree_with_the_currency_table() -> None:
    assert ASSETS and all(
        a.decimals == DEFAULT_TOKEN_EXPONENTS[a.currency] for a in ASSETS.values()
    )
    assert find_asset("eip155:8453", USDC_BASE.upper().replace("0X", "0x")) is not None
    assert find_asset("eip155:8453", "0x" + "00" * 20) is None
    assert find_asset("eip155:999", USDC_BASE) is None  # the right address on another network


def test_a_requirement_becomes_an_x402_pay_intent_in_atomic_units() -> None:
    snap = mapping.snapshot(requirement(), "https://api.example.com/declared")
    intent = mapping.intent_for(snap, agent="bot", called_url="https://API.example.com/v1?q=1")
    assert (intent.action, intent.rail, intent.currency) == ("x402.pay", "x402", "USDC")
    assert intent.amount_minor == 10_000 and str(intent.amount) == "0.010000 USDC"
    assert intent.recipient == "https://api.example.com/v1"  # the URL called, not the declared
    assert intent.metadata["x402_pay_to"] == PAY_TO
    assert intent.metadata["x402_resource"] == "https://api.example.com/declared"
    other = mapping.snapshot(requirement(pay_to="0x" + "22" * 20))
    moved = mapping.intent_for(other, agent="bot", called_url="https://api.example.com/v1")
    assert moved.fingerprint() != intent.fingerprint()  # payTo is bound in


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"asset": "0x" + "99" * 20}, "asset registry"),
        ({"network": "eip155:10"}, "asset registry"),
        ({"scheme": "upto"}, "scheme `upto`"),
        ({"amount": "0"}, "positive integer"),
        ({"amount": "1.5"}, "positive integer"),
        ({"amount": "-5"}, "positive integer"),
    ],
)
def test_what_paywarden_cannot_map_is_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(X402RefusedError, match=message):
        mapping.intent_for(
            mapping.snapshot(requirement(**changes)), agent="bot", called_url="https://a.example/"
        )


def test_v1_requirements_are_refused() -> None:
    v1 = SimpleNamespace(max_amount_required="10000", scheme="exact")
    with pytest.raises(X402RefusedError, match="version 1"):
        mapping.snapshot(v1)


def payload(req: PaymentRequirements, **authorization: Any) -> Any:
    fields = {"to": PAY_TO, "value": "10000", "validBefore": str(int(time.time()) + 300)}
    fields.update(authorization)
    return SimpleNamespace(accepted=req, payload={"authorization": fields, "signature": "0x"})


@pytest.mark.parametrize(
    ("accepted", "authorization", "message"),
    [
        ({"amount": "20000"}, {}, "other requirements"),
        ({"pay_to": "0x" + "22" * 20}, {}, "other requirements"),
        ({"extra": {"name": "Other", "version": "2"}}, {}, "other requirements"),
        ({}, {"to": "0x" + "22" * 20}, "another address"),
        ({}, {"value": "10001"}, "another amount"),
        ({}, {"validBefore": str(int(time.time()) + 86_400)}, "outlives"),
    ],
)
def test_a_payload_that_pays_anything_else_is_stopped(
    accepted: dict[str, Any], authorization: dict[str, Any], message: str
) -> None:
    snap = mapping.snapshot(requirement())
    mapping.check_payload(snap, payload(requirement()), int(time.time()))  # the honest one
    with pytest.raises(PayloadMismatchError, match=message):
        mapping.check_payload(
            snap, payload(requirement(**accepted), **authorization), int(time.time())
        )


def test_warden_pay_never_pays_on_the_x402_rail(tmp_path: Any) -> None:
    policy = "currency: USDC\nrules: [{id: all, effect: allow}]\n"
    with Warden.open(policy, database=tmp_path / "l.db") as warden:
        snap = mapping.snapshot(requirement())
        intent = mapping.intent_for(snap, agent="bot", called_url="https://api.example.com/")
        outcome = warden.pay(intent)
        assert outcome.decision.reason_code == "rail_refused" and outcome.payment is None
