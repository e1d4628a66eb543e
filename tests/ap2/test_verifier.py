"""`MandateVerifier`: each check of an AP2 chain, on chains signed here with throwaway keys."""

from __future__ import annotations

from typing import Any

import pytest
from ap2_helpers import (
    AUDIENCE,
    NOW,
    Chain,
    closed_mandate,
    join,
    new_key,
    open_mandate,
    public,
    sd_hash,
    sign,
    tamper_payload,
    tamper_signature,
    usd_range,
)

from paywarden.ap2 import MandateVerifier, public_jwk
from paywarden.mandates import Mandate, MandateRefusal, Presented


def verifier(chain: Chain, **options: Any) -> MandateVerifier:
    options.setdefault("clock", lambda: NOW)
    keys = {"user-1": chain.user_key.export_public(as_dict=True)}
    return MandateVerifier(audience=AUDIENCE, trusted_keys=keys, **options)


def verify(chain: Chain, presentation: str | None = None, **options: Any) -> Presented:
    return verifier(chain, **options).verify(presentation or chain.present())


def refused(result: Presented, code: str, words: str) -> None:
    assert isinstance(result, MandateRefusal), result
    assert result.code == code
    assert words in result.reason, result.reason


def test_a_valid_chain_gives_exact_values() -> None:
    chain = Chain()
    root = chain.root()
    mandate = verify(chain, chain.present(root))
    assert isinstance(mandate, Mandate)
    assert (mandate.amount.amount_minor, mandate.amount.currency) == (1999, "USD")
    assert (mandate.audience, mandate.nonce, mandate.payee.id) == (
        AUDIENCE,
        "nonce-1",
        "shop.example.com",
    )
    assert mandate.constraints.amount_max == 5000
    assert mandate.expires_us == (NOW + 3600) * 1_000_000
    # one open mandate, one id: every closed mandate from it shares its budget
    again = Chain(user_key=chain.user_key, agent_key=chain.agent_key, nonce="nonce-2")
    other = verify(again, again.present(root))
    assert isinstance(other, Mandate)
    assert other.mandate_id == mandate.mandate_id
    assert other.digest != mandate.digest and other.content_digest == mandate.content_digest


def test_expired_and_future_hops_are_refused_beyond_the_skew() -> None:
    late = Chain(open_extra={"exp": NOW - 301})
    refused(verify(late), "mandate_expired", "hop 0 expired")
    within = Chain(open_extra={"exp": NOW - 299})
    assert isinstance(verify(within), Mandate)
    refused(verify(Chain(iat=NOW + 301)), "mandate_expired", "hop 1 is issued in the future")
    refused(verify(late, skew_seconds=0, clock=lambda: NOW - 1), "mandate_expired", "expired")
    refused(verify(Chain(open_extra={"exp": None})), "mandate_invalid", "has no `exp`")


def test_wrong_audience_and_missing_aud_nonce_iat() -> None:
    refused(verify(Chain(aud="https://other.example")), "mandate_wrong_audience", "other.example")
    refused(verify(Chain(aud=None)), "mandate_invalid", "no `aud`")
    refused(verify(Chain(nonce=None)), "mandate_invalid", "no `nonce`")
    refused(verify(Chain(nonce="")), "mandate_invalid", "no `nonce`")
    refused(verify(Chain(iat=None)), "mandate_invalid", "no `iat`")
    chain = Chain()
    refused(verifier(chain).verify(chain.present(), nonce="issued-9"), "mandate_invalid", "nonce")


def test_a_broken_signature_in_each_hop_is_refused() -> None:
    chain = Chain()
    root = chain.root()
    presentation = chain.present(root)
    root_part, closed_part = presentation.split("~~")
    refused(
        verify(chain, f"{tamper_signature(root_part)}~~{closed_part}"), "mandate_invalid", "hop 0"
    )
    refused(
        verify(chain, f"{root_part}~~{tamper_signature(closed_part)}"), "mandate_invalid", "hop 1"
    )
    # a payload changed under its signature (a bigger amount range) fails too
    forged = tamper_payload(root_part, {"_sd_alg": "sha-256", "iss": "me"})
    refused(verify(chain, f"{forged}~~{closed_part}"), "mandate_invalid", "hop")


def test_the_closed_hop_must_be_signed_by_the_key_the_open_mandate_bound() -> None:
    refused(verify(Chain(signer=new_key())), "mandate_invalid", "hop 1")
    # and the root by a trusted issuer key
    refused(verify(Chain(root_signer=new_key("user-1"))), "mandate_invalid", "hop 0")
    refused(verify(Chain(root_signer=new_key("stranger"))), "mandate_invalid", "not trusted")


def test_sd_hash_binds_the_closed_hop_to_its_open_mandate() -> None:
    chain = Chain()
    other_root = Chain(user_key=chain.user_key, agent_key=chain.agent_key).root()
    closed_for_other = chain.present(other_root).split("~~")[1]
    spliced = join(chain.root(), closed_for_other)
    refused(verify(chain, spliced), "mandate_invalid", "`sd_hash` does not match")


def test_types_must_go_from_open_to_closed() -> None:
    refused(verify(Chain(typ="kb+sd-jwt+kb")), "mandate_invalid", "terminal hop has `typ`")
    closed_as_open = Chain(closed=closed_mandate(vct="mandate.payment.open.1"))
    refused(verify(closed_as_open), "mandate_invalid", "terminal hop must be `mandate.payment.1`")
    open_as_closed = Chain(open_extra={"vct": "mandate.payment.1"})
    refused(verify(open_as_closed), "mandate_invalid", "delegating hop must be")
    chain = Chain()
    refused(verify(chain, chain.root()), "mandate_invalid", "needs an open and a closed")


def test_an_intermediate_hop_is_signed_by_the_previous_cnf_and_its_constraints_apply() -> None:
    chain = Chain()
    middle_key, agent_key = chain.agent_key, new_key()
    root = chain.root()
    narrower = open_mandate(agent_key, [usd_range(1000)])
    claims = {"sd_hash": sd_hash(root), "iat": NOW, "aud": "agent-b", "nonce": "n-mid"}
    middle = sign(claims, narrower, middle_key, "kb+sd-jwt+kb")
    closed = Chain(agent_key=agent_key).closed
    last_claims = {"sd_hash": sd_hash(middle), "iat": NOW, "aud": AUDIENCE, "nonce": "n-last"}
    presentation = join(root, middle, sign(last_claims, closed, agent_key, "kb+sd-jwt"))
    mandate = verify(chain, presentation)
    assert isinstance(mandate, Mandate) and mandate.hops == 3
    assert [c.amount_max for c in mandate.more if c.amount_max] == [1000]
    wrong_signer = join(root, middle, sign(last_claims, closed, middle_key, "kb+sd-jwt"))
    refused(verify(chain, wrong_signer), "mandate_invalid", "hop 2")


@pytest.mark.parametrize(
    ("constraint", "expected"),
    [
        ({"type": "payment.budget", "max": 12000.0, "currency": "JPY"}, 12000),
        ({"type": "payment.budget", "max": 12000, "currency": "JPY"}, 12000),
        ({"type": "payment.budget", "max": 0.1, "currency": "USDC"}, 100_000),
        ({"type": "payment.budget", "max": 150.75, "currency": "USD"}, 15075),
        ({"type": "payment.budget", "max": 1.005, "currency": "BHD"}, 1005),
    ],
)
def test_budgets_are_exact_in_each_currency_exponent(
    constraint: dict[str, Any], expected: int
) -> None:
    mandate = verify(
        Chain(constraints=[constraint], closed=closed_mandate(currency=constraint["currency"]))
    )
    assert isinstance(mandate, Mandate)
    assert mandate.constraints.budget_max == expected


@pytest.mark.parametrize(
    ("constraint", "words"),
    [
        ({"type": "payment.budget", "max": 10.5, "currency": "JPY"}, "more decimal places"),
        ({"type": "payment.budget", "max": 0.1234567, "currency": "USDC"}, "more decimal places"),
        ({"type": "payment.budget", "max": 123456789012345.67, "currency": "USD"}, "exactly"),
        ({"type": "payment.budget", "max": "10", "currency": "USD"}, "not a number"),
        ({"type": "payment.budget", "max": 10, "currency": "XXX"}, "unknown currency"),
        ({"type": "payment.amount_range", "max": 10.5, "currency": "USD"}, "integer of minor"),
        ({"type": "payment.amount_range", "max": True, "currency": "USD"}, "integer of minor"),
        ({"type": "payment.surprise", "max": 1}, "unknown constraint type"),
        ({"type": "payment.agent_recurrence", "frequency": "HOURLY"}, "frequency"),
    ],
)
def test_malformed_constraints_are_refused(constraint: dict[str, Any], words: str) -> None:
    refused(verify(Chain(constraints=[constraint])), "mandate_invalid", words)


def test_closed_amounts_must_be_integers_of_minor_units() -> None:
    refused(verify(Chain(closed=closed_mandate(amount=19.99))), "mandate_invalid", "integer")  # type: ignore[arg-type]
    refused(verify(Chain(closed=closed_mandate(amount=0))), "mandate_invalid", "zero")
    big = closed_mandate(amount=10**20)
    refused(verify(Chain(closed=big)), "mandate_invalid", "outside 0..")


def test_hostile_input_never_raises() -> None:
    chain = Chain()
    for junk in ("", "~~", "a~~b~", "x.y.z~~x.y.z~", "é~~é~", 42, None, "a" * 70_000):
        result = verifier(chain).verify(junk)
        assert isinstance(result, MandateRefusal) and result.code == "mandate_invalid"
    hop = chain.present().split("~~")[1]
    refused(
        verify(chain, f"{chain.root()}~~{hop.removesuffix('~')}"), "mandate_invalid", "end with"
    )


def test_a_cnf_with_a_private_key_or_another_curve_is_refused() -> None:
    agent = new_key()
    leaky = Chain(agent_key=agent, open_extra={"cnf": {"jwk": agent.export(as_dict=True)}})
    refused(verify(leaky), "mandate_invalid", "private key")
    curve = Chain(open_extra={"cnf": {"jwk": {**public(agent), "crv": "P-384"}}})
    refused(verify(curve), "mandate_invalid", "P-256")


def test_trusted_keys_must_be_public() -> None:
    key = new_key("k")
    with pytest.raises(ValueError, match="public"):
        public_jwk(key)
    assert public_jwk(key.export_to_pem().decode()).thumbprint() == key.thumbprint()
    with pytest.raises(ValueError, match="audience"):
        MandateVerifier(audience="", trusted_keys={"k": public(key)})
    with pytest.raises(ValueError, match="skew"):
        MandateVerifier(audience="a", trusted_keys={"k": public(key)}, skew_seconds=4000)
