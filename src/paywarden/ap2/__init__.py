"""AP2: paywarden verifies the Agent Payments Protocol mandates agents present (the `ap2` extra).

See docs/ap2.md. `MandateVerifier.verify(presentation)` checks an AP2 v0.2 payment mandate
chain and returns a `paywarden.mandates.Mandate` (or a `MandateRefusal`), which
`Warden.authorize(intent, mandate=...)` and `Warden.pay(intent, mandate=...)` decide with.
"""

from __future__ import annotations

from paywarden.ap2.verifier import MandateVerifier, public_jwk

__all__ = ["MandateVerifier", "public_jwk"]
