"""The `mandate` body field of `/v1/authorizations` and `/v1/payments`: an AP2 mandate chain,
verified with the gateway's `MandateVerifier` (settings `ap2_audience`, `ap2_trusted_keys`,
`ap2_skew_seconds`; docs/ap2.md). The verifier is built on first use and kept on the app; a
request that carries a mandate to a gateway without one is denied `mandate_invalid`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Request

from paywarden.entrypoints.rest.settings import Settings
from paywarden.mandates import MandateRefusal, Presented

if TYPE_CHECKING:
    from paywarden.ap2 import MandateVerifier

_log = logging.getLogger("paywarden")
_NOT_CONFIGURED = (
    "this gateway verifies no AP2 mandates (set `ap2_audience` and `ap2_trusted_keys`)"
)


def mandate_of(request: Request, presentation: str | None, settings: Settings) -> Presented | None:
    """The verified mandate (or refusal) of a request body's `mandate`; None when absent."""
    if presentation is None:
        return None
    state = request.app.state
    verifier: MandateVerifier | MandateRefusal | None = getattr(state, "mandate_verifier", None)
    if verifier is None:
        verifier = state.mandate_verifier = _load(settings)
    if isinstance(verifier, MandateRefusal):
        return verifier
    return verifier.verify(presentation)


def _load(settings: Settings) -> MandateVerifier | MandateRefusal:
    """The gateway's verifier, or the refusal every mandate gets when there is none."""
    if settings.ap2_audience is None or settings.ap2_trusted_keys is None:
        return MandateRefusal("mandate_invalid", _NOT_CONFIGURED)
    try:
        from paywarden.ap2 import MandateVerifier

        keys = json.loads(Path(settings.ap2_trusted_keys).read_text(encoding="utf-8"))
        return MandateVerifier(
            audience=settings.ap2_audience,
            trusted_keys=keys,
            skew_seconds=settings.ap2_skew_seconds,
        )
    except (ImportError, OSError, ValueError) as error:
        _log.error("AP2 verifier not configured: %s", error)
        # the agent is told no file path or key detail: those stay in the operator's log
        return MandateRefusal("mandate_invalid", "the gateway's AP2 settings are unusable")
