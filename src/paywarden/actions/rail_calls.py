"""Calling a rail: bounded retries with the same key, and the per-rail circuit breaker.

Only failures the rail marks safe are retried (`limits.rail_retries_max` times, same request,
same key, backed off with jitter); a rail that raises gives an `unknown` receipt, never a
failure: the request may have been sent.

A circuit breaker per rail, kept in the store so every process sees it, opens after
`breaker_failures_max` consecutive rail failures (errors and unknown outcomes; a decline is an
answer, not a failure). While open, payments fail fast without calling the rail, and their
holds are released. After the cool-down exactly one payment goes through as the probe
(half-open) while every other one still fails fast; the rail's next answer closes the breaker
or opens it again. A probe that never answers (its process died) does not wedge the breaker:
one cool-down after the probe was let through, the next payment becomes a new probe. The gate
reads and writes the breaker row inside the payment's write transaction, so across threads and
processes only one payment can win each probe.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import replace

from paywarden import limits
from paywarden.audit import records
from paywarden.payee import parse_payee
from paywarden.ports import BreakerRow, PaymentRow, UnitOfWork
from paywarden.rails import PaymentRail, RailPayment, Receipt


def rail_request(row: PaymentRow) -> RailPayment:
    """What the rail is asked: the canonical payee as authorized (parsing a payee's canonical
    text gives the same payee), never the raw text the agent sent."""
    intent = json.loads(row.intent)
    return RailPayment(
        row.payment_id,
        row.rail_key,
        row.agent,
        intent["action"],
        row.amount_minor,
        row.currency,
        parse_payee(intent["recipient"]),
        intent.get("metadata") or {},
        row.rail_payment_id,
    )


def call(rail: PaymentRail, row: PaymentRow, sleep: Callable[[float], None]) -> Receipt:
    """Pay, retrying only what the rail marks safe, with the same key, bounded, with jitter."""
    request = rail_request(row)
    return with_retries(lambda: rail.pay(request), sleep)


def with_retries(send: Callable[[], Receipt], sleep: Callable[[float], None]) -> Receipt:
    """Send, then resend (same request, same key) while the rail says a failure is safe to
    retry. A rail that raises gives an `unknown` receipt: the request may have been sent."""
    receipt = _guarded(send)
    for attempt in range(1, limits.rail_retries_max + 1):
        if not (receipt.status == "failed" and receipt.retryable):
            break
        delay = limits.rail_retry_backoff_seconds * 2 ** (attempt - 1)
        sleep(delay * random.uniform(0.5, 1.0))
        receipt = _guarded(send)
    return receipt


def _guarded(send: Callable[[], Receipt]) -> Receipt:
    try:
        return send()
    except Exception as error:  # the rail's fault is an unknown outcome, never a failure
        return Receipt("unknown", None, f"rail raised {type(error).__name__}: {error}")


def breaker_gate(tx: UnitOfWork, rail: str, now_us: int) -> bool:
    """Whether the rail may be called now. Closed: yes. Open or half-open: only one probe, once
    a cool-down has passed since the breaker opened or since the last probe was let through.

    While half-open, `opened_us` is when the current probe was let through; a probe whose
    process died before the rail answered is replaced after one more cool-down. Runs in the
    payment's write transaction, so the read and the write below are one compare-and-set."""
    breaker = tx.breakers.get(rail)
    if breaker.state == "closed":
        return True
    if not _cooled_down(breaker, now_us):
        return False  # open, or half-open with its probe still out: fail fast
    replaced = breaker.state == "half_open"
    tx.breakers.save(replace(breaker, state="half_open", opened_us=now_us))
    records.append(
        tx,
        now_us,
        "breaker.half_open",
        rail,
        {"actor": "system", "rail": rail, "probe_replaced": replaced},
    )
    return True


def _cooled_down(breaker: BreakerRow, now_us: int) -> bool:
    since_us = breaker.opened_us if breaker.opened_us is not None else 0
    return now_us - since_us >= limits.breaker_cooldown_seconds * 1_000_000


def breaker_record(tx: UnitOfWork, rail: str, failed: bool, now_us: int) -> None:
    """Count a rail answer: success closes the breaker; a failure while half-open (the probe's,
    or any other call's) opens it again for a full cool-down, as do enough failures in a row."""
    breaker = tx.breakers.get(rail)
    if not failed:
        if breaker.state != "closed" or breaker.consecutive_failures:
            tx.breakers.save(BreakerRow(rail, "closed", 0, None))
            if breaker.state != "closed":
                records.append(
                    tx, now_us, "breaker.closed", rail, {"actor": "system", "rail": rail}
                )
        return
    failures = breaker.consecutive_failures + 1
    opens = breaker.state == "half_open" or failures >= limits.breaker_failures_max
    if opens and breaker.state != "open":
        tx.breakers.save(BreakerRow(rail, "open", failures, now_us))
        records.append(
            tx,
            now_us,
            "breaker.opened",
            rail,
            {"actor": "system", "rail": rail, "consecutive_failures": failures},
        )
    else:
        tx.breakers.save(replace(breaker, consecutive_failures=failures))
