"""`MandateVerifier`: an AP2 presentation in, a `Mandate` or a `MandateRefusal` out.

It never raises for what an agent sends: every failed check becomes a `MandateRefusal` with a
reason code, which `Warden.authorize(intent, mandate=...)` records as a denial and audits. The
checks that need the ledger (the nonce used once, the mandate's budget and recurrence) and the
comparison with the intent are made by the Warden, in the decision's transaction.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from jwcrypto.common import JWException
from jwcrypto.jwk import JWK

from paywarden.ap2.chain import ChainError, Expectations, Hop, b64url, invalid, split, verify_chain
from paywarden.ap2.claims import Reader
from paywarden.errors import InvalidInputError
from paywarden.mandates import Mandate, MandateRefusal, Presented
from paywarden.money import DEFAULT_CURRENCIES, CurrencyTable

PRESENTATION_CHARS_MAX = 64 * 1024
SKEW_SECONDS_DEFAULT = 300
SKEW_SECONDS_MAX = 3600

# A jwcrypto JWK, a cryptography EC public key, a JWK as a dict or JSON text, or a PEM.
TrustedKey = object


class MandateVerifier:
    """Verifies AP2 v0.2 payment mandate chains for one audience.

    `trusted_keys` maps a key id (the root token's `kid` header) to the public key of an issuer
    of open mandates (the user's trusted surface or credential provider): a `jwcrypto` JWK, a
    `cryptography` EC public key, a JWK as a dict or JSON text, or a PEM. With one key, a root
    token without `kid` is checked against it. `audience` is what the agent's last hop must name
    in `aud`. `skew_seconds` bounds how far `exp` and `iat` may be off (300 s by default, at
    most 3600). `clock` returns the time in seconds (tests pass a fixed one).
    """

    def __init__(
        self,
        *,
        audience: str,
        trusted_keys: Mapping[str, TrustedKey],
        skew_seconds: int = SKEW_SECONDS_DEFAULT,
        clock: Callable[[], float] = time.time,
        currencies: CurrencyTable = DEFAULT_CURRENCIES,
    ) -> None:
        if not isinstance(audience, str) or not audience:
            raise ValueError("audience must be a non-empty string")
        if type(skew_seconds) is not int or not 0 <= skew_seconds <= SKEW_SECONDS_MAX:
            raise ValueError(f"skew_seconds must be an integer from 0 to {SKEW_SECONDS_MAX}")
        if not trusted_keys:
            raise ValueError("trusted_keys must name at least one issuer key")
        self.audience = audience
        self.skew_seconds = skew_seconds
        self._keys = {kid: public_jwk(key) for kid, key in trusted_keys.items()}
        self._clock = clock
        self._reader = Reader(currencies)

    def verify(self, presentation: object, *, nonce: str | None = None) -> Presented:
        """The verified mandate, or why not. `nonce`: the nonce this verifier handed out for
        the presentation, when it did (any nonce is accepted otherwise, once)."""
        if not isinstance(presentation, str) or not presentation.isascii():
            return MandateRefusal("mandate_invalid", "the mandate is not ASCII text")
        if len(presentation) > PRESENTATION_CHARS_MAX:
            return MandateRefusal(
                "mandate_invalid", f"the mandate is longer than {PRESENTATION_CHARS_MAX} chars"
            )
        digest = b64url(hashlib.sha256(presentation.encode("ascii")).digest())
        try:
            return self._verify(presentation, nonce, digest)
        except ChainError as error:
            return MandateRefusal(error.code, str(error), digest)
        except (InvalidInputError, rfc8785.CanonicalizationError) as error:
            # an amount above paywarden's hard maximum; a number JSON cannot carry exactly
            return MandateRefusal("mandate_invalid", str(error), digest)
        except RecursionError:  # `[[[[...` in a part no signature was checked on yet
            return MandateRefusal("mandate_invalid", "the mandate's JSON nests too deeply", digest)

    def _verify(self, presentation: str, nonce: str | None, digest: str) -> Mandate:
        now = int(self._clock())
        expect = Expectations(self.audience, nonce, now, self.skew_seconds)
        chain = verify_chain(split(presentation), self._root_key, expect)
        *opens, closed = chain.payloads
        constraints, presets = self._reader.open_constraints(opens[0])
        more = [presets]
        for delegated in opens[1:]:
            more.extend(self._reader.open_constraints(delegated))
        fields = self._reader.closed(closed)
        return Mandate(
            mandate_id=chain.root_id,
            digest=digest,
            audience=chain.audience,
            nonce=chain.nonce,
            constraints=constraints,
            more=tuple(more),
            expires_us=None if chain.expires is None else chain.expires * 1_000_000,
            hops=len(chain.payloads),
            content_digest=b64url(hashlib.sha256(rfc8785.dumps(dict(closed))).digest()),
            **fields,
        )

    def _root_key(self, root: Hop) -> JWK:
        kid = root.header.get("kid")
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise invalid(f"the open mandate's key id {str(kid)[:64]!r} is not trusted")
        return key


def public_jwk(key: TrustedKey) -> JWK:
    """A trusted key as a public `jwcrypto` JWK (a private key is refused: keep it elsewhere)."""
    try:
        if isinstance(key, JWK):
            jwk = key
        elif isinstance(key, EllipticCurvePublicKey):
            jwk = JWK.from_pyca(key)
        elif isinstance(key, Mapping):
            jwk = JWK(**dict(key))
        elif isinstance(key, str) and key.lstrip().startswith("{"):
            jwk = JWK(**json.loads(key))
        elif isinstance(key, str | bytes):
            jwk = JWK.from_pem(key.encode("ascii") if isinstance(key, str) else key)
        else:
            raise TypeError(f"a trusted key cannot be a {type(key).__name__}")
    except (JWException, ValueError, TypeError) as error:
        raise ValueError(f"not a usable public key: {error}") from None
    if jwk.has_private:
        raise ValueError("a trusted key must be a public key")
    return jwk
