"""x402: paywarden guards the payments an agent's x402 client signs (the `x402` extra).

See docs/x402.md. `X402Guard` decides; `async_httpx_client`, `httpx_client` and
`requests_session` are the one-line guarded clients.
"""

from __future__ import annotations

from paywarden.x402.clients import async_httpx_client, httpx_client, requests_session
from paywarden.x402.guard import X402Guard
from paywarden.x402.mapping import PayloadMismatchError, X402RefusedError

__all__ = [
    "PayloadMismatchError",
    "X402Guard",
    "X402RefusedError",
    "async_httpx_client",
    "httpx_client",
    "requests_session",
]
