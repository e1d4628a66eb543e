"""Request idempotency for the gateway (the REST `Idempotency-Key` header, Stripe semantics).

A request claims its key in the store, so a retry is answered once across restarts and worker
processes: the stored response is replayed, another body with the same key is refused, and a
claim left by a crashed request is taken over once stale. Fingerprints are keyed HMACs
computed by the caller (`entrypoints.rest.idempotency`), never the body itself.
"""

from __future__ import annotations

from paywarden.ports import IdempotencyRow
from paywarden.runtime import Runtime


def idempotency_begin(
    rt: Runtime, scope: str, key: str, fingerprint: str, stale_seconds: int
) -> IdempotencyRow | None:
    """Claim `key` for a request; None when claimed (go ahead), else the row that holds it:
    a finished response to replay, another request's body, or a request in progress. A
    claim left in progress longer than `stale_seconds` (a crashed request) is taken over."""
    now_us = rt.now_us()
    stale_before_us = now_us - stale_seconds * 1_000_000
    with rt.store.write() as tx:
        if tx.idempotency.claim(scope, key, fingerprint, now_us, stale_before_us):
            return None
        row = tx.idempotency.get(scope, key)
    assert row is not None  # the claim failed because this row exists
    return row


def idempotency_end(rt: Runtime, scope: str, key: str, status: int, body: str) -> None:
    """Store the response of a claimed request, for replay."""
    with rt.store.write() as tx:
        tx.idempotency.finish(scope, key, status, body, rt.now_us())


def idempotency_abandon(rt: Runtime, scope: str, key: str) -> None:
    """Release a claim whose request failed without a response worth replaying."""
    with rt.store.write() as tx:
        tx.idempotency.release(scope, key)
