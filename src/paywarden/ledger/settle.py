"""Settling holds: capture (full or partial), void, expire; each audited in the same transaction."""

from __future__ import annotations

from dataclasses import replace

from paywarden.audit import records
from paywarden.errors import NotFoundError, StateConflictError
from paywarden.ledger import holds
from paywarden.money import DEFAULT_CURRENCIES, Money
from paywarden.ports import HoldRow, HoldState, UnitOfWork


def open_hold(tx: UnitOfWork, hold_id: str, now_us: int) -> HoldRow:
    """The hold, expired first if its deadline passed (that expiry is recorded and kept)."""
    hold = tx.holds.get(hold_id)
    if hold is None:
        raise NotFoundError(f"no hold `{hold_id}`")
    if (
        hold.state == "held"
        and hold.expires_us <= now_us
        and holds.resolve(tx, hold, "expired", now_us)
    ):
        _audit_expired(tx, hold, now_us)
        hold = replace(hold, state="expired")
    return hold


def capture_amount(hold: HoldRow, amount: str | int | None) -> int:
    """Minor units to capture: all of the hold, or a smaller amount in its currency."""
    if amount is None:
        return hold.amount_minor
    money = Money.parse(amount, hold.currency)
    if money.amount_minor > hold.amount_minor:
        held = Money(hold.amount_minor, hold.currency, DEFAULT_CURRENCIES.exponent(hold.currency))
        raise StateConflictError(f"cannot capture {money} from hold `{hold.hold_id}` of {held}")
    return money.amount_minor


def settle(
    tx: UnitOfWork,
    hold: HoldRow,
    state: HoldState,
    now_us: int,
    actor: str,
    captured_minor: int | None = None,
) -> HoldRow | None:
    """Resolve a held hold once and audit it; None when it was no longer held."""
    if hold.state != "held" or not holds.resolve(tx, hold, state, now_us, captured_minor):
        return None
    records.append(
        tx,
        now_us,
        f"hold.{state}",
        hold.hold_id,
        records.hold_body(hold, state, actor, captured_minor),
    )
    return tx.holds.get(hold.hold_id)


def expire_due(tx: UnitOfWork, now_us: int, batch_max: int) -> list[HoldRow]:
    """A bounded sweep of overdue holds, each expiry audited; returns the expired holds."""
    expired = holds.expire_due(tx, now_us, batch_max)
    for hold in expired:
        _audit_expired(tx, hold, now_us)
    return expired


def _audit_expired(tx: UnitOfWork, hold: HoldRow, now_us: int) -> None:
    body = records.hold_body(hold, "expired", "system", None)
    records.append(tx, now_us, "hold.expired", hold.hold_id, body)


def already_resolved(hold: HoldRow, target: str) -> StateConflictError:
    return StateConflictError(
        f"hold `{hold.hold_id}` is already {hold.state}; it cannot be {target}"
    )
