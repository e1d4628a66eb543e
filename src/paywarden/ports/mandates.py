"""The store's port for AP2 mandates: single-use nonces and per-mandate budgets.

Every method is one atomic statement (or two, the first idempotent), never read-then-check:
`claim` is an INSERT that does nothing when the nonce is there, and `reserve` a
conditional UPDATE, so two processes racing on one database cannot both win.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Reservation:
    """One use of an open mandate: `amount_minor` of `currency` and one use, within
    `budget_max` and `uses_max` (None: no limit), at `now_us`."""

    mandate_id: str
    currency: str
    amount_minor: int
    budget_max: int | None
    uses_max: int | None
    now_us: int


class MandateRepository(Protocol):
    """AP2 mandate claims (`paywarden.ledger.mandate_claims`; SQLite migration 12,
    PostgreSQL migration 5)."""

    def claim(
        self, audience: str, nonce: str, mandate_id: str, digest: str, created_us: int
    ) -> bool:
        """Record `(audience, nonce)` as used; False when it was used before (nothing done)."""
        ...

    def delete(self, audience: str, nonce: str, digest: str) -> None:
        """Undo `claim` of this presentation, in the same transaction (a refusal)."""
        ...

    def get_usage(self, mandate_id: str) -> tuple[int, int] | None:
        """(spent minor units, uses) of an open mandate, or None before its first use."""
        ...

    def reserve(self, reservation: Reservation) -> bool:
        """Add the amount and one use to the mandate's usage when the result stays within its
        limits and the currency is the mandate's; False (nothing changed) otherwise. One
        conditional UPDATE."""
        ...

    def release(self, mandate_id: str, amount_minor: int) -> None:
        """Undo `reserve`, in the same transaction (a refusal after the reservation); a usage
        row left with no use is removed, as is one a refused first `reserve` made."""
        ...
