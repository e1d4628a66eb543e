"""AP2 mandate chains made and signed in the tests, with throwaway keys.

The format is the reference SDK's (google-agentic-commerce/AP2 `ap2.sdk.sdjwt`): the root is an
SD-JWT whose one `delegate_payload` item is an array-element disclosure; each key-binding hop is
an SD-JWT of the same shape signed by the previous hop's `cnf.jwk`, with `sd_hash` over the
previous hop (`issuer_jwt~disclosures~`), `iat`, `aud` and `nonce`; hops are joined by `~~`
with the trailing `~` of every hop but the last dropped.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jwcrypto.jwk import JWK
from sd_jwt.common import SDObj
from sd_jwt.issuer import SDJWTIssuer

NOW = 1_767_614_400  # 2026-01-05T12:00:00Z, the `clock` fixture's START
AUDIENCE = "https://pay.example.com"
MERCHANT = {"id": "shop.example.com", "name": "Example Shop", "website": "https://shop.example.com"}
INSTRUMENT = {"id": "card-1", "type": "card", "description": "Visa 4242"}


def new_key(kid: str | None = None) -> JWK:
    key = JWK.generate(kty="EC", crv="P-256")
    if kid is not None:
        key = JWK(**{**key.export(as_dict=True), "kid": kid})
    return key


def public(key: JWK) -> dict[str, Any]:
    return {k: v for k, v in key.export_public(as_dict=True).items() if k != "kid"}


def sign(claims: Mapping[str, Any], item: Mapping[str, Any], key: JWK, typ: str | None) -> str:
    """One hop: `item` as the disclosed `delegate_payload` element, `claims` beside it."""
    header = {"typ": typ} if typ else {}
    if key.get("kid"):
        header["kid"] = key.get("kid")
    user_claims = {"delegate_payload": [SDObj(dict(item))], **claims}
    return str(SDJWTIssuer(user_claims, key, extra_header_parameters=header).sd_jwt_issuance)


def sd_hash(token: str) -> str:
    digest = hashlib.sha256(token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def join(*tokens: str) -> str:
    return "~~".join([t.removesuffix("~") for t in tokens[:-1]] + [tokens[-1]])


def open_mandate(agent_key: JWK, constraints: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "vct": "mandate.payment.open.1",
        "constraints": constraints,
        "cnf": {"jwk": public(agent_key)},
        "iat": NOW - 60,
        "exp": NOW + 3600,
    }
    item.update(extra)
    return {k: v for k, v in item.items() if v is not None}


def closed_mandate(amount: int = 1999, currency: str = "USD", **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "vct": "mandate.payment.1",
        "transaction_id": "tx-hash-1",
        "payee": MERCHANT,
        "payment_amount": {"amount": amount, "currency": currency},
        "payment_instrument": INSTRUMENT,
        "iat": NOW - 5,
    }
    item.update(extra)
    return {k: v for k, v in item.items() if v is not None}


def usd_range(high: int = 5000, low: int | None = None, currency: str = "USD") -> dict[str, Any]:
    found: dict[str, Any] = {"type": "payment.amount_range", "currency": currency, "max": high}
    if low is not None:
        found["min"] = low
    return found


@dataclass
class Chain:
    """Everything one test may want to change in a two-hop chain before signing it."""

    user_key: JWK = field(default_factory=lambda: new_key("user-1"))
    agent_key: JWK = field(default_factory=new_key)
    constraints: list[dict[str, Any]] = field(default_factory=lambda: [usd_range()])
    open_extra: dict[str, Any] = field(default_factory=dict)
    closed: dict[str, Any] = field(default_factory=closed_mandate)
    aud: str | None = AUDIENCE
    nonce: str | None = "nonce-1"
    iat: int | None = NOW - 5
    typ: str = "kb+sd-jwt"
    signer: JWK | None = None  # signs the closed hop instead of the agent key
    root_signer: JWK | None = None  # signs the root instead of the user key

    def root(self) -> str:
        item = open_mandate(self.agent_key, self.constraints, **self.open_extra)
        return sign({}, item, self.root_signer or self.user_key, None)

    def present(self, root: str | None = None) -> str:
        root = root or self.root()
        claims = {"sd_hash": sd_hash(root), "iat": self.iat, "aud": self.aud, "nonce": self.nonce}
        claims = {k: v for k, v in claims.items() if v is not None}
        closed = sign(claims, self.closed, self.signer or self.agent_key, self.typ)
        return join(root, closed)


def tamper_signature(token: str) -> str:
    """Flip one character of the token's signature (its third dot-separated part)."""
    header, payload, rest = token.split(".", 2)
    signature, sep, tail = rest.partition("~")
    flipped = ("A" if signature[5] != "A" else "B").join([signature[:5], signature[6:]])
    return f"{header}.{payload}.{flipped}{sep}{tail}"


def tamper_payload(token: str, change: Mapping[str, Any]) -> str:
    """Rewrite the issuer JWT's payload (keeping the old signature)."""
    header, payload, rest = token.split(".", 2)
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(change)
    encoded = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{encoded}.{rest}"
