"""Holds: reserve -> capture | void | expire, each resolution exactly once.

Everything here runs inside one store write transaction handed in by the Warden. Counters are
read and reserved in the fixed lock-key order; a hold's charges are released with the same
amounts they reserved, so conservation (`spent + held == captured + open holds`) always holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from paywarden.errors import StoreError
from paywarden.ledger.usage import ROLLING_HEAD_US, BudgetClaim, VelocityClaim, budget_trace
from paywarden.policy.decision import BudgetTrace
from paywarden.policy.fx import ceil_fraction
from paywarden.ports import ChargeRow, HoldRow, HoldState, UnitOfWork


class InvariantError(StoreError):
    """A ledger invariant failed; the transaction is rolled back and the request denied."""


def invariant(condition: bool, message: str) -> None:
    """Like `assert`, but survives `python -O`: ledger invariants must always be checked."""
    if not condition:
        raise InvariantError(f"ledger invariant violated: {message}")


def read_budgets(tx: UnitOfWork, claims: list[BudgetClaim]) -> list[BudgetTrace]:
    """Lock each claim's counter row in lock-key order and read its spent and held amounts."""
    traces = []
    for claim in claims:
        spec = claim.spec
        row = tx.budgets.lock_counter(
            spec.budget_id, claim.scope_key, claim.counter_window_us, spec.limit.currency
        )
        # A policy that changes a budget's currency mid-window must not read the old minor
        # units as the new currency's: deny (fail closed) until the budget gets a new id.
        invariant(
            row.currency == spec.limit.currency,
            f"budget `{spec.budget_id}` now counts {spec.limit.currency} but its counter for "
            f"this window holds {row.currency}; give the budget a new id to change its currency",
        )
        if claim.rolling:
            spent, held = tx.budgets.get_rolling_usage(
                spec.budget_id, claim.scope_key, claim.window_start_us
            )
        else:
            spent, held = row.spent_minor, row.held_minor
        traces.append(budget_trace(claim, spent, held))
    return traces


def read_velocity(
    tx: UnitOfWork, claims: list[VelocityClaim], now_us: int
) -> list[tuple[VelocityClaim, int, int | None]]:
    usage = []
    for claim in claims:
        since_us = now_us - claim.spec.window_seconds * 1_000_000
        count, last_us = tx.budgets.get_velocity_usage(
            claim.spec.velocity_id, claim.scope_key, since_us
        )
        usage.append((claim, count, last_us))
    return usage


@dataclass(frozen=True, slots=True)
class NewHold:
    hold_id: str
    decision_id: str
    agent: str
    amount_minor: int
    currency: str
    created_us: int
    expires_us: int


def reserve(
    tx: UnitOfWork,
    hold: NewHold,
    claims: list[BudgetClaim],
    traces: list[BudgetTrace],
    velocity: list[VelocityClaim],
) -> None:
    """Reserve the hold against every claimed counter (already checked under the same lock)."""
    charges = []
    for claim, trace in zip(claims, traces, strict=True):
        amount = claim.amount_minor
        invariant(amount is not None and amount > 0, "a hold needs a converted amount")
        assert amount is not None  # narrowed for the type checker; checked just above
        limit = claim.spec.limit.amount_minor
        invariant(
            trace.spent_minor + trace.held_minor + amount <= limit,
            f"budget `{claim.spec.budget_id}` checked over its limit",
        )
        if not claim.rolling:
            reserved = tx.budgets.reserve(
                claim.spec.budget_id, claim.scope_key, claim.window_start_us, amount, limit
            )
            invariant(reserved, f"budget `{claim.spec.budget_id}` reservation did not fit")
        window = ROLLING_HEAD_US if claim.rolling else claim.window_start_us
        charges.append(
            ChargeRow(hold.hold_id, claim.spec.budget_id, claim.scope_key, window, amount)
        )
    tx.holds.insert(
        HoldRow(
            hold.hold_id,
            hold.decision_id,
            hold.agent,
            hold.amount_minor,
            hold.currency,
            "held",
            hold.created_us,
            hold.expires_us,
            None,
            None,
        ),
        charges,
    )
    for claim_v in velocity:
        tx.budgets.insert_velocity_event(
            claim_v.spec.velocity_id, claim_v.scope_key, hold.created_us, hold.hold_id
        )


def resolve(
    tx: UnitOfWork, hold: HoldRow, state: HoldState, now_us: int, captured_minor: int | None = None
) -> bool:
    """Move a held hold to `state` once; release its charges. False when already resolved."""
    invariant(state != "held", "a hold cannot be resolved back to held")
    if state == "captured":
        invariant(
            captured_minor is not None and 0 < captured_minor <= hold.amount_minor,
            "a capture must be positive and at most the held amount",
        )
    if not tx.holds.transition(hold.hold_id, state, now_us, captured_minor):
        return False
    for charge in tx.holds.list_charges(hold.hold_id):
        captured_charge = 0
        if captured_minor is not None:
            share = Fraction(charge.amount_minor * captured_minor, hold.amount_minor)
            captured_charge = min(ceil_fraction(share), charge.amount_minor)
        tx.budgets.release(charge, captured_charge)
        if charge.window_start_us == ROLLING_HEAD_US and captured_charge:
            tx.holds.set_charge_amount(hold.hold_id, charge.budget_id, captured_charge)
    return True


def expire_due(tx: UnitOfWork, now_us: int, batch_max: int) -> list[HoldRow]:
    """Expire up to `batch_max` holds whose deadline passed (a bounded sweep); return them."""
    expired = []
    for hold_id in tx.holds.list_due(now_us, batch_max):
        hold = tx.holds.get(hold_id)
        if hold is not None and resolve(tx, hold, "expired", now_us):
            expired.append(hold)
    return expired
