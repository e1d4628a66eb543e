"""An AP2 v0.2 dSD-JWT delegation chain, verified hop by hop (the reference SDK's format).

A presentation is the user's open mandate (a root SD-JWT signed by a key the deployment
trusts), then key-binding hops joined by `~~`: each hop is an SD-JWT signed by the key the
previous hop bound in its `cnf.jwk`, carrying `sd_hash` (or `issuer_jwt_hash`) of the previous
hop. Intermediate hops (`typ` `kb+sd-jwt+kb`) bind a next key; the terminal hop (`kb+sd-jwt`)
binds none and must carry `aud`, `nonce` and `iat` (the reference SDK leaves `aud` and `nonce`
optional; paywarden does not). Every hop's claims and its one `delegate_payload` item are
checked for `exp` and `iat` within the allowed skew; the root must carry `exp`.

Signatures and disclosures are checked by `sd-jwt` (on `jwcrypto`); only ES256 is accepted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jwcrypto.common import JWException
from jwcrypto.jwk import JWK
from sd_jwt.verifier import SDJWTVerifier

from paywarden.json_depth import nests_deeper_than

TYP_TERMINAL = frozenset({"kb+sd-jwt", "kb-sd-jwt"})
TYP_INTERMEDIATE = frozenset({"kb+sd-jwt+kb", "kb-sd-jwt+kb"})
ALGORITHMS = frozenset({"ES256"})
HOPS_MAX = 4
# How deeply a hop's JSON may nest: mandates are shallow; deeper is refused before parsing.
JSON_DEPTH_MAX = 32
_HASHES: Mapping[str, Callable[[bytes], Any]] = {
    "sha-256": hashlib.sha256,
    "sha-384": hashlib.sha384,
    "sha-512": hashlib.sha512,
}


class ChainError(Exception):
    """The chain is refused: `code` is a reason code (`mandate_invalid`, `mandate_expired`,
    `mandate_wrong_audience`), the message says which check failed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def invalid(message: str) -> ChainError:
    return ChainError("mandate_invalid", message)


@dataclass(frozen=True, slots=True)
class Hop:
    """One parsed token of the chain (`issuer_jwt~disclosure~...~`), before verification."""

    issuer_jwt: str
    disclosures: tuple[str, ...]
    header: Mapping[str, Any]
    claims: Mapping[str, Any]

    @property
    def serialized(self) -> str:
        return "".join(f"{part}~" for part in (self.issuer_jwt, *self.disclosures))


@dataclass(frozen=True, slots=True)
class VerifiedChain:
    """Each hop's one `delegate_payload` item (root first), and the terminal hop's claims."""

    payloads: tuple[Mapping[str, Any], ...]
    root_id: str  # base64url SHA-256 of the root's issuer-signed JWT
    audience: str
    nonce: str
    expires: int | None  # the earliest `exp` of the chain


@dataclass(frozen=True, slots=True)
class Expectations:
    audience: str
    nonce: str | None
    now: int
    skew: int


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def split(presentation: str) -> list[Hop]:
    """The hops of a `~~`-joined presentation (a trailing KB-JWT is refused)."""
    segments = presentation.split("~~")
    if len(segments) < 2:
        raise invalid("an AP2 payment mandate chain needs an open and a closed mandate")
    if len(segments) > HOPS_MAX:
        raise invalid(f"the mandate chain has more than {HOPS_MAX} hops")
    if not segments[-1].endswith("~"):
        raise invalid("the last hop must end with `~` (a separate KB-JWT is not used by AP2)")
    return [_parse(segment.removesuffix("~")) for segment in segments]


def _parse(segment: str) -> Hop:
    issuer_jwt, *disclosures = segment.split("~")
    if not issuer_jwt or any(not part for part in disclosures):
        raise invalid("a hop of the mandate chain has an empty part")
    parts = issuer_jwt.split(".")
    if len(parts) != 3:
        raise invalid("a hop's issuer JWT must be header.payload.signature")
    return Hop(issuer_jwt, tuple(disclosures), _segment(parts[0]), _segment(parts[1]))


def _json(text: str, what: str) -> object:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        if nests_deeper_than(raw, JSON_DEPTH_MAX):
            raise invalid("the mandate's JSON nests too deeply")
        return json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise invalid(f"{what} is not base64url JSON") from None


def _segment(text: str) -> Mapping[str, Any]:
    value = _json(text, "a hop's JWT header or payload")
    if not isinstance(value, dict):
        raise invalid("a hop's JWT header or payload is not a JSON object")
    return value


def verify_chain(
    hops: list[Hop], root_key: Callable[[Hop], JWK], expect: Expectations
) -> VerifiedChain:
    """Verify every hop in order; raise `ChainError` at the first failed check."""
    payloads: list[Mapping[str, Any]] = []
    expires: list[int] = []
    key = root_key(hops[0])
    terminal: Mapping[str, Any] = {}
    for index, hop in enumerate(hops):
        last = index == len(hops) - 1
        if index > 0:
            _check_typ(hop, last)
        claims = _signed_claims(hop, key, index)
        _check_disclosed(hop, index)
        if index > 0:
            _check_binding(claims, hops[index - 1], index)
        item = _delegate_item(claims, index)
        for where in (claims, item):
            expires.extend(_check_time(where, index, expect))
        if index == 0 and "exp" not in item and "exp" not in claims:
            raise invalid("the open mandate (root) has no `exp`: it would never expire")
        if last:
            if "cnf" in item:
                raise invalid("the terminal hop must not bind a further key (`cnf`)")
            terminal = claims
        else:
            key = _bound_key(item, index)
        payloads.append(item)
    audience, nonce = _check_terminal(terminal, expect)
    root_id = b64url(hashlib.sha256(hops[0].issuer_jwt.encode("ascii")).digest())
    return VerifiedChain(tuple(payloads), root_id, audience, nonce, min(expires, default=None))


def _check_typ(hop: Hop, last: bool) -> None:
    typ = hop.header.get("typ")
    expected = TYP_TERMINAL if last else TYP_INTERMEDIATE
    if typ not in expected:
        kind = "terminal" if last else "intermediate"
        raise invalid(f"the {kind} hop has `typ` {typ!r}, expected one of {sorted(expected)}")


def _signed_claims(hop: Hop, key: JWK, index: int) -> Mapping[str, Any]:
    """The hop's claims with its disclosures resolved, once its signature verifies."""
    if hop.header.get("alg") not in ALGORITHMS:
        raise invalid(f"hop {index} is signed with {hop.header.get('alg')!r}; only ES256 is")
    try:
        verifier = SDJWTVerifier(hop.serialized, lambda _iss, _header: key)
        claims = verifier.get_verified_payload()
    except (JWException, ValueError, KeyError, TypeError) as error:
        raise invalid(f"hop {index}'s signature or disclosures do not verify ({error})") from None
    if not isinstance(claims, dict):
        raise invalid(f"hop {index}'s claims are not a JSON object")
    return claims


def _check_disclosed(hop: Hop, index: int) -> None:
    """Every digest inside the hop's disclosed `delegate_payload` item has its disclosure.

    An SD-JWT verifier drops a claim or array element whose disclosure is not presented, and
    the presenter chooses what it presents: a constraint the user made selectively
    disclosable could be withheld by the agent and so never enforced. Decoy digests inside
    a mandate are therefore refused too."""
    values: dict[str, Any] = {}
    for text in hop.disclosures:
        decoded = _segment_list(text)
        values[b64url(hashlib.sha256(text.encode("ascii")).digest())] = decoded[-1]
    items = hop.claims.get("delegate_payload")
    for element in items if isinstance(items, list) else ():
        digest = _element_digest(element)
        if digest is None:
            _walk_disclosed(element, values, index)
        elif digest in values:  # an undisclosed item: `_delegate_item` counts the others
            _walk_disclosed(values[digest], values, index)


def _walk_disclosed(value: object, values: Mapping[str, Any], index: int) -> None:
    if isinstance(value, list):
        for element in value:
            digest = _element_digest(element)
            _walk_disclosed(_resolve(digest, values, index) if digest else element, values, index)
    elif isinstance(value, dict):
        digests = value.get("_sd", [])
        for digest in digests if isinstance(digests, list) else [digests]:
            _walk_disclosed(_resolve(digest, values, index), values, index)
        for name, item in value.items():
            if name != "_sd":
                _walk_disclosed(item, values, index)


def _element_digest(element: object) -> str | None:
    if isinstance(element, dict) and len(element) == 1 and isinstance(element.get("..."), str):
        digest: str = element["..."]
        return digest
    return None


def _resolve(digest: object, values: Mapping[str, Any], index: int) -> Any:
    if not isinstance(digest, str) or digest not in values:
        raise invalid(
            f"hop {index} withholds a disclosure inside its mandate: paywarden must see every "
            "constraint (decoy digests are not accepted either)"
        )
    return values[digest]


def _segment_list(text: str) -> list[Any]:
    value = _json(text, "a disclosure")
    if not isinstance(value, list) or len(value) not in (2, 3):
        raise invalid("a disclosure is not a JSON array of 2 or 3 members")
    return value


def _delegate_item(claims: Mapping[str, Any], index: int) -> Mapping[str, Any]:
    items = claims.get("delegate_payload")
    if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict):
        raise invalid(f"hop {index} must disclose exactly one `delegate_payload` object")
    item: Mapping[str, Any] = items[0]
    return item


def _check_binding(claims: Mapping[str, Any], previous: Hop, index: int) -> None:
    """Exactly one of `sd_hash` (the previous hop with its disclosures) and
    `issuer_jwt_hash` (its issuer JWT only), equal to the hash recomputed here."""
    has_sd, has_jwt = "sd_hash" in claims, "issuer_jwt_hash" in claims
    if has_sd == has_jwt:
        raise invalid(f"hop {index} must carry exactly one of `sd_hash` and `issuer_jwt_hash`")
    algorithm = previous.claims.get("_sd_alg", "sha-256")
    digest = _HASHES.get(algorithm) if isinstance(algorithm, str) else None
    if digest is None:
        raise invalid(f"hop {index - 1} uses an unsupported `_sd_alg`")
    name, text = (
        ("sd_hash", previous.serialized) if has_sd else ("issuer_jwt_hash", previous.issuer_jwt)
    )
    if claims[name] != b64url(digest(text.encode("ascii")).digest()):
        raise invalid(f"hop {index}'s `{name}` does not match hop {index - 1}")


def _bound_key(item: Mapping[str, Any], index: int) -> JWK:
    """The next hop's key: `cnf.jwk` of this hop's payload, a public EC P-256 key."""
    cnf = item.get("cnf")
    jwk = cnf.get("jwk") if isinstance(cnf, dict) else None
    if not isinstance(jwk, dict) or jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise invalid(f"hop {index} binds no EC P-256 `cnf.jwk` for the next hop")
    if "d" in jwk:
        raise invalid(f"hop {index}'s `cnf.jwk` contains a private key")
    try:
        return JWK(**{k: jwk[k] for k in ("kty", "crv", "x", "y") if k in jwk})
    except (JWException, ValueError, TypeError) as error:
        raise invalid(f"hop {index}'s `cnf.jwk` is not a usable key ({error})") from None


def _check_time(claims: Mapping[str, Any], index: int, expect: Expectations) -> list[int]:
    """`exp` not past and `iat` and `nbf` not in the future, each within the skew; the `exp`
    found."""
    found = []
    for name in ("exp", "iat", "nbf"):
        value = claims.get(name)
        if value is None:
            continue
        if type(value) is not int:
            raise invalid(f"hop {index}'s `{name}` is not an integer of seconds")
        if name == "exp" and expect.now > value + expect.skew:
            raise ChainError("mandate_expired", f"hop {index} expired at {value}")
        if name == "iat" and value > expect.now + expect.skew:
            raise ChainError("mandate_expired", f"hop {index} is issued in the future ({value})")
        if name == "nbf" and value > expect.now + expect.skew:
            raise ChainError("mandate_expired", f"hop {index} is not valid before {value}")
        if name == "exp":
            found.append(value)
    return found


def _check_terminal(claims: Mapping[str, Any], expect: Expectations) -> tuple[str, str]:
    audience, nonce = claims.get("aud"), claims.get("nonce")
    if not isinstance(audience, str) or not audience:
        raise invalid("the terminal hop has no `aud`: paywarden requires one")
    if not isinstance(nonce, str) or not nonce:
        raise invalid("the terminal hop has no `nonce`: paywarden requires one")
    if type(claims.get("iat")) is not int:
        raise invalid("the terminal hop has no `iat`")
    if audience != expect.audience:
        raise ChainError(
            "mandate_wrong_audience",
            f"the mandate is for audience `{audience[:200]}`, not `{expect.audience}`",
        )
    if expect.nonce is not None and nonce != expect.nonce:
        raise invalid("the terminal hop's `nonce` is not the one this verifier issued")
    return audience, nonce
