"""The payment rail port, and how rails are found.

A rail moves money: `pay` (with an idempotency key the rail must honour), `status` (what
happened to a payment made with that key, for reconciliation) and `refund`. A receipt says
`settled`, `pending`, `failed` or `unknown`; "unknown" is not "failed": the money may have
moved, so the hold stays and the payment is reconciled later, never re-sent under a new key.

`status` of a key the rail never received may answer `failed` only if a later `pay` with that
key can no longer move money (the rail closes the key); otherwise it must answer `unknown`.
paywarden also leaves a submitted payment without any answer alone for
`limits.reconcile_grace_seconds`, so a reconcile does not race the worker that is sending it.

Rails register through the `paywarden.rails` entry-point group, the built-in sandbox too, so
third-party rails plug in exactly the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Literal, Protocol

from paywarden.errors import InvalidInputError
from paywarden.extras import EXTRA_OF_RAIL, missing_extra, needs_extra_message
from paywarden.payee import Payee

ReceiptStatus = Literal["settled", "pending", "failed", "unknown"]
ENTRY_POINT_GROUP = "paywarden.rails"


@dataclass(frozen=True, slots=True)
class RailPayment:
    """What a rail is asked to pay. `idempotency_key` is stable for the authorization.

    `payee` is the canonical payee every check saw (see `paywarden.payee`); a rail pays
    exactly it, never the raw text the agent sent. `metadata` is the agent's, redacted, and
    informational only: a rail must never let it choose where money goes, how much, or which
    customer or payment method is charged; that comes from the deployment's configuration.
    """

    payment_id: str
    idempotency_key: str
    agent: str
    action: str
    amount_minor: int
    currency: str
    payee: Payee
    metadata: Mapping[str, object] = field(default_factory=dict)
    rail_payment_id: str | None = None  # the rail's own id, once a receipt carried one

    @property
    def recipient(self) -> str:
        """The payee's canonical text."""
        return self.payee.text


@dataclass(frozen=True, slots=True)
class Receipt:
    """A rail's answer. `retryable` marks errors the rail says are safe to retry with the
    same key (a 5xx, a timeout before sending)."""

    status: ReceiptStatus
    rail_payment_id: str | None = None
    error: str | None = None
    retryable: bool = False


class PaymentRail(Protocol):
    name: str

    def pay(self, payment: RailPayment) -> Receipt: ...

    def status(self, payment: RailPayment) -> Receipt: ...

    def refund(self, payment: RailPayment, amount_minor: int, refund_key: str) -> Receipt: ...


class CheckedRail(Protocol):
    """A rail that can tell, before anything is held, that it cannot make a payment."""

    def check(
        self, *, agent: str, action: str, payee: Payee, amount_minor: int, currency: str
    ) -> str | None:
        """Why this rail cannot pay this (a payee with no configured route, an amount it cannot
        send exactly, ...), or None. Called before the decision holds any money."""
        ...


def refusal(
    rail: PaymentRail, *, agent: str, action: str, payee: Payee, amount_minor: int, currency: str
) -> str | None:
    """The rail's reason to refuse a payment up front, for rails that have a `check`."""
    check = getattr(rail, "check", None)
    if not callable(check):
        return None
    reason: str | None = check(
        agent=agent, action=action, payee=payee, amount_minor=amount_minor, currency=currency
    )
    return reason


def available_rails() -> list[str]:
    return sorted(point.name for point in entry_points(group=ENTRY_POINT_GROUP))


def load_rail(name: str, **options: object) -> PaymentRail:
    """Instantiate the rail registered as `name` in the `paywarden.rails` entry points.

    A built-in rail whose extra is not installed (`stripe` without `paywarden[stripe]`) raises
    `InvalidInputError` naming the extra.
    """
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name == name:
            try:
                factory = point.load()
            except ImportError as error:
                extra = EXTRA_OF_RAIL.get(name)
                if extra is None or not missing_extra(error, extra):
                    raise
                message = needs_extra_message(f"rail `{name}`", extra)
                raise InvalidInputError(message) from error
            rail: PaymentRail = factory(**options)
            return rail
    known = ", ".join(available_rails()) or "none"
    raise InvalidInputError(f"unknown rail `{name}` (installed: {known})")
