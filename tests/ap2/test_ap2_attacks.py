"""An attacker's AP2 chains (security review): each was accepted before its fix.

- a `website` beside an allowed payee `id` named who was paid;
- a constraint the user made selectively disclosable was withheld by the agent;
- a delegated open mandate's own budget was never reserved;
- `nbf` in the future was ignored.
Plus the algorithm-confusion attempts (`none`, `HS256`), refused before a signature is read.
"""

from __future__ import annotations

import base64
import json
from datetime import date
from typing import Any

from ap2_helpers import (
    AUDIENCE,
    MERCHANT,
    NOW,
    Chain,
    closed_mandate,
    join,
    new_key,
    open_mandate,
    sd_hash,
    sign,
    usd_range,
)
from sd_jwt.common import SDObj

from paywarden import PaymentIntent, mandates
from paywarden.ap2 import MandateVerifier
from paywarden.mandates import Mandate, MandateRefusal, Presented
from paywarden.money import CurrencyTable
from support.wardens import OpenWarden

POLICY = """
currency: USD
rules:
  - {id: shop, effect: allow, actions: [purchase]}
"""


def verify(chain: Chain, presentation: str | None = None) -> Presented:
    keys = {"user-1": chain.user_key.export_public(as_dict=True)}
    found = MandateVerifier(audience=AUDIENCE, trusted_keys=keys, clock=lambda: NOW)
    return found.verify(presentation or chain.present())


def refused(result: Presented, code: str, words: str) -> None:
    assert isinstance(result, MandateRefusal), result
    assert (result.code, words in result.reason) == (code, True), result.reason


def test_a_website_beside_an_allowed_payee_id_does_not_choose_the_payee(
    open_warden: OpenWarden,
) -> None:
    allowed = {
        "type": "payment.allowed_payees",
        "allowed": [{"id": "shop.example.com", "name": "S"}],
    }
    evil = {**MERCHANT, "website": "https://evil.example"}
    chain = Chain(constraints=[usd_range(), allowed], closed=closed_mandate(payee=evil))
    mandate = verify(chain)
    assert isinstance(mandate, Mandate)
    warden = open_warden(POLICY)
    asked = PaymentIntent(
        agent="agent-a",
        action="purchase",
        amount="19.99",
        currency="USD",
        recipient="https://evil.example/pay",
    )
    decision = warden.authorize(asked, mandate=mandate)
    assert (decision.outcome, decision.reason_code) == ("deny", "mandate_mismatch")
    # the id binds, in any spelling of the same canonical payee
    assert mandates.mismatch(mandate, mandate.amount, PaymentIntent(
        agent="a", action="purchase", amount="19.99", currency="USD",
        recipient="HTTPS://Shop.Example.com:443/checkout",
    ).payee) is None  # fmt: skip


def _nested_root(chain: Chain, constraint: dict[str, Any]) -> str:
    """A root whose constraints are each selectively disclosable (nested in the item)."""
    item = open_mandate(chain.agent_key, [SDObj(usd_range()), SDObj(constraint)])
    return sign({}, item, chain.user_key, None)


def _without(root: str, constraint_type: str) -> str:
    """The root with the disclosure of one constraint withheld (what a hostile agent sends)."""
    jwt, *disclosures = root.removesuffix("~").split("~")
    kept = []
    for text in disclosures:
        value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))[-1]
        if not (isinstance(value, dict) and value.get("type") == constraint_type):
            kept.append(text)
    assert len(kept) == len(disclosures) - 1
    return "".join(f"{part}~" for part in (jwt, *kept))


def test_a_withheld_constraint_disclosure_is_refused() -> None:
    chain = Chain(closed=closed_mandate(amount=1999))
    payees = {"type": "payment.allowed_payees", "allowed": [{"id": "other.example", "name": "O"}]}
    root = _nested_root(chain, payees)
    whole = verify(chain, chain.present(root))  # everything disclosed: the payee limit holds
    assert isinstance(whole, Mandate)
    assert whole.constraints.allowed_payees is not None
    assert mandates.violation(whole, date(2026, 1, 5)) is not None
    withheld = _without(root, "payment.allowed_payees")
    refused(verify(chain, chain.present(withheld)), "mandate_invalid", "withholds a disclosure")


def test_a_delegated_open_mandates_budget_is_refused_not_ignored() -> None:
    chain = Chain()
    agent_key = new_key()
    root = chain.root()
    budget = {"type": "payment.budget", "max": 1, "currency": "USD"}
    middle_item = open_mandate(agent_key, [usd_range(), budget])
    claims = {"sd_hash": sd_hash(root), "iat": NOW, "aud": "agent-b", "nonce": "n-mid"}
    middle = sign(claims, middle_item, chain.agent_key, "kb+sd-jwt+kb")
    last = {"sd_hash": sd_hash(middle), "iat": NOW, "aud": AUDIENCE, "nonce": "n-last"}
    closed = sign(last, closed_mandate(amount=1999), agent_key, "kb+sd-jwt")
    mandate = verify(chain, join(root, middle, closed))
    assert isinstance(mandate, Mandate)
    problem = mandates.violation(mandate, date(2026, 1, 5))
    assert problem is not None and problem[0] == "mandate_constraint"
    assert "delegated open mandate" in problem[1]


def test_nbf_in_the_future_is_refused() -> None:
    refused(verify(Chain(open_extra={"nbf": NOW + 301})), "mandate_expired", "not valid before")
    assert isinstance(verify(Chain(open_extra={"nbf": NOW + 299})), Mandate)


def _with_header(token: str, header: dict[str, Any], signature: str) -> str:
    _, payload, rest = token.split(".", 2)
    encoded = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    tail = rest.partition("~")[2]
    return f"{encoded}.{payload}.{signature}~{tail}"


def test_algorithm_confusion_is_refused() -> None:
    chain = Chain()
    root, closed = chain.present().split("~~")
    for header, signature in (
        ({"alg": "none", "kid": "user-1"}, ""),
        ({"alg": "HS256", "kid": "user-1"}, "c2lnbmF0dXJl"),
        ({"alg": "ES256", "kid": "user-1", "jwk": chain.agent_key.export_public(as_dict=True)},
         "c2lnbmF0dXJl"),
    ):  # fmt: skip
        forged = _with_header(root + "~", header, signature).removesuffix("~")
        result = verify(chain, f"{forged}~~{closed}")
        assert isinstance(result, MandateRefusal) and result.code == "mandate_invalid", header


def test_the_mandate_and_the_policy_must_agree_on_the_currency_exponent(
    open_warden: OpenWarden,
) -> None:
    # the policy says USDC has 2 decimals; the verifier read 1999 USDC minor units with 6
    chain = Chain(
        constraints=[usd_range(currency="USDC")], closed=closed_mandate(1999, currency="USDC")
    )
    mandate = verify(chain)
    assert isinstance(mandate, Mandate) and mandate.amount.exponent == 6
    warden = open_warden(POLICY.replace("currency: USD", "currency: USDC\ntokens: {USDC: 2}"))
    asked = PaymentIntent(
        agent="agent-a",
        action="purchase",
        amount="19.99",
        currency="USDC",
        recipient="https://shop.example.com",
        currencies=CurrencyTable({"USDC": 2}),
    )
    assert asked.amount.amount_minor == 1999
    decision = warden.authorize(asked, mandate=mandate)
    assert (decision.outcome, decision.reason_code) == ("deny", "mandate_mismatch")
    assert "decimals" in decision.reason


def test_deeply_nested_json_is_a_refusal_not_a_crash() -> None:
    chain = Chain()
    deep = base64.urlsafe_b64encode(b"[" * 10_000 + b"]" * 10_000).rstrip(b"=").decode()
    header = base64.urlsafe_b64encode(b'{"alg":"ES256"}').rstrip(b"=").decode()
    presentation = f"{header}.{deep}.c2ln~~{header}.e30.c2ln~"
    assert len(presentation) < 65_536  # under the size limit: only the nesting is hostile
    refused(verify(chain, presentation), "mandate_invalid", "nests too deeply")


def test_an_execution_date_the_agent_wrote_does_not_move_the_window() -> None:
    # the window closed the day before the decision; the agent backdates its closed mandate
    window = {"type": "payment.execution_date", "not_after": "2026-01-04"}
    chain = Chain(
        constraints=[usd_range(), window], closed=closed_mandate(execution_date="2026-01-03")
    )
    mandate = verify(chain)
    assert isinstance(mandate, Mandate)
    problem = mandates.violation(mandate, date(2026, 1, 5))
    assert problem is not None and "after the mandate's window" in problem[1]
    assert mandates.violation(mandate, date(2026, 1, 4)) is None  # inside it: allowed
