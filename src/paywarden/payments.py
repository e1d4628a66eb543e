"""Executing an allowed payment on a rail: submit, settle, and reconcile what is unknown.

The rail is called outside any store transaction, with a stable idempotency key derived from
the authorization (`pw_<hold id>`), reused on every retry and every reconciliation. A settled
receipt captures the hold; a definite failure voids it; `pending` and `unknown` keep the hold
(its expiry is lifted, so budget money can never leak while the outcome is open) until
`reconcile` asks the rail with the same key. Each payment transition is a compare-and-set.

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
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from paywarden import limits
from paywarden.audit import records
from paywarden.audit.canonical import canonical_text
from paywarden.intent import PaymentIntent
from paywarden.ledger import settle
from paywarden.payee import parse_payee
from paywarden.policy.decision import Decision
from paywarden.ports import BreakerRow, LedgerTx, PaymentRow, PaymentState
from paywarden.rails import PaymentRail, RailPayment, Receipt

NEVER_US = 2**62


@dataclass(frozen=True, slots=True)
class PaymentOutcome:
    """`decision` always; `payment` and `receipt` when the rail was (or would have been) used."""

    decision: Decision
    payment: PaymentRow | None = None
    receipt: Receipt | None = None

    @property
    def state(self) -> str:
        return self.payment.state if self.payment is not None else "not_submitted"


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


def begin(
    tx: LedgerTx,
    decision: Decision,
    intent: PaymentIntent,
    rail: str,
    payment_id: str,
    now_us: int,
) -> tuple[PaymentRow, bool]:
    """The payment row for an allowed decision, and whether the rail should be called now."""
    existing = tx.payment_by_decision(str(decision.decision_id))
    if existing is not None:
        return existing, False  # a replayed decision never pays again
    # A hold that expired (a worker died after authorize) can no longer back a payment: money
    # moved against it would be counted by no budget. The agent must authorize again.
    hold = settle.open_hold(tx, str(decision.hold_id), now_us)
    breaker = hold.state == "held" and _breaker_gate(tx, rail, now_us)
    state: PaymentState = "submitted" if breaker else "failed"
    if hold.state != "held":
        refusal = f"hold `{hold.hold_id}` is {hold.state}: authorize again"
    else:
        refusal = f"circuit breaker for `{rail}` is open (or its one probe is in flight)"
    row = PaymentRow(
        payment_id=payment_id,
        decision_id=str(decision.decision_id),
        hold_id=str(decision.hold_id),
        agent=intent.agent,
        rail=rail,
        rail_key=f"pw_{decision.hold_id}",
        intent=canonical_text(intent.canonical()),
        amount_minor=intent.amount_minor,
        currency=intent.currency,
        state=state,
        rail_payment_id=None,
        refunded_minor=0,
        error=None if breaker else refusal,
        created_us=now_us,
        updated_us=now_us,
    )
    tx.payment_insert(row)
    if breaker:
        tx.hold_set_expiry(row.hold_id, NEVER_US)  # held until the outcome is known
    else:
        _release(tx, row, "voided", now_us)
    records.append(
        tx,
        now_us,
        f"payment.{state}",
        payment_id,
        {
            "actor": f"agent:{intent.agent}",
            "payment_id": payment_id,
            "rail": rail,
            "decision_id": row.decision_id,
            "error": row.error,
        },
    )
    return row, breaker


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


def finish(
    tx: LedgerTx,
    row: PaymentRow,
    receipt: Receipt,
    now_us: int,
    *,
    count_for_breaker: bool = True,
) -> PaymentRow:
    """Apply a rail's answer to a submitted or unknown payment, once.

    A live payment's answer counts for the rail's breaker. Reconciliation passes
    `count_for_breaker=False`: a rail that cannot know an old payment's outcome says nothing
    about whether it can take new ones, and must not open (or close) the breaker."""
    targets: dict[str, PaymentState] = {
        "settled": "settled",
        "failed": "failed",
        "unknown": "unknown",
    }
    target = targets.get(receipt.status)
    rail_failure = receipt.status == "unknown" or (receipt.status == "failed" and receipt.retryable)
    if count_for_breaker:
        _breaker_record(tx, row.rail, failed=rail_failure, now_us=now_us)
    if target is None and receipt.rail_payment_id and row.rail_payment_id is None:
        # Pending: the rail has it. Record its id, so reconcile knows the rail answered.
        tx.payment_transition(
            row.payment_id, row.state, row.state, now_us, receipt.rail_payment_id, None
        )
        return replace(row, rail_payment_id=receipt.rail_payment_id, updated_us=now_us)
    if target is None or target == row.state:
        return row  # pending stays submitted; the same answer again changes nothing
    if not tx.payment_transition(
        row.payment_id, row.state, target, now_us, receipt.rail_payment_id, receipt.error
    ):
        current = tx.payment(row.payment_id)
        return current if current is not None else row
    if target == "settled":
        _release(tx, row, "captured", now_us)
    elif target == "failed":
        _release(tx, row, "voided", now_us)
    records.append(
        tx,
        now_us,
        f"payment.{target}",
        row.payment_id,
        {
            "actor": "system",
            "payment_id": row.payment_id,
            "rail": row.rail,
            "rail_payment_id": receipt.rail_payment_id,
            "error": receipt.error,
        },
    )
    return replace(
        row,
        state=target,
        rail_payment_id=receipt.rail_payment_id or row.rail_payment_id,
        error=receipt.error,
        updated_us=now_us,
    )


def _release(tx: LedgerTx, row: PaymentRow, state: str, now_us: int) -> None:
    hold = tx.hold(row.hold_id)
    if hold is not None and hold.state == "held":
        captured = hold.amount_minor if state == "captured" else None
        settle.settle(
            tx, hold, "captured" if state == "captured" else "voided", now_us, "system", captured
        )


def _breaker_gate(tx: LedgerTx, rail: str, now_us: int) -> bool:
    """Whether the rail may be called now. Closed: yes. Open or half-open: only one probe, once
    a cool-down has passed since the breaker opened or since the last probe was let through.

    While half-open, `opened_us` is when the current probe was let through; a probe whose
    process died before the rail answered is replaced after one more cool-down. Runs in the
    payment's write transaction, so the read and the write below are one compare-and-set."""
    breaker = tx.breaker(rail)
    if breaker.state == "closed":
        return True
    if not _cooled_down(breaker, now_us):
        return False  # open, or half-open with its probe still out: fail fast
    replaced = breaker.state == "half_open"
    tx.breaker_save(replace(breaker, state="half_open", opened_us=now_us))
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


def _breaker_record(tx: LedgerTx, rail: str, failed: bool, now_us: int) -> None:
    """Count a rail answer: success closes the breaker; a failure while half-open (the probe's,
    or any other call's) opens it again for a full cool-down, as do enough failures in a row."""
    breaker = tx.breaker(rail)
    if not failed:
        if breaker.state != "closed" or breaker.consecutive_failures:
            tx.breaker_save(BreakerRow(rail, "closed", 0, None))
            if breaker.state != "closed":
                records.append(
                    tx, now_us, "breaker.closed", rail, {"actor": "system", "rail": rail}
                )
        return
    failures = breaker.consecutive_failures + 1
    opens = breaker.state == "half_open" or failures >= limits.breaker_failures_max
    if opens and breaker.state != "open":
        tx.breaker_save(BreakerRow(rail, "open", failures, now_us))
        records.append(
            tx,
            now_us,
            "breaker.opened",
            rail,
            {"actor": "system", "rail": rail, "consecutive_failures": failures},
        )
    else:
        tx.breaker_save(replace(breaker, consecutive_failures=failures))


def default_sleep(seconds: float) -> None:
    time.sleep(seconds)
