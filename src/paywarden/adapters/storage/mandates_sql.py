"""The SQL of AP2 mandate claims (`mandate_nonces`, `mandate_usage`), written once for both
stores in SQLite's named-parameter style (`facts_sql.for_postgres` rewrites it for psycopg).

A nonce is claimed by an INSERT that does nothing when it is there; a reservation is one
conditional UPDATE of the mandate's usage row (created empty first, if need be), so the check
and the change are one statement. A usage row left with no use is deleted: no refusal leaves
one behind. A CAST on each parameter that may be NULL tells PostgreSQL its type.
"""

from __future__ import annotations

from typing import Final

from paywarden.ports.mandates import Reservation

CLAIM: Final = (
    "INSERT INTO mandate_nonces (audience, nonce, mandate_id, digest, created_us)"
    " VALUES (:audience, :nonce, :mandate_id, :digest, :created_us) ON CONFLICT DO NOTHING"
)
DELETE: Final = (
    "DELETE FROM mandate_nonces WHERE audience = :audience AND nonce = :nonce AND digest = :digest"
)
USAGE: Final = "SELECT spent_minor, uses FROM mandate_usage WHERE mandate_id = :id"
CREATE_USAGE: Final = (
    "INSERT INTO mandate_usage (mandate_id, currency, spent_minor, uses, updated_us)"
    " VALUES (:id, :currency, 0, 0, :now) ON CONFLICT DO NOTHING"
)
RESERVE: Final = (
    "UPDATE mandate_usage SET spent_minor = spent_minor + :amount, uses = uses + 1,"
    " updated_us = :now WHERE mandate_id = :id AND currency = :currency"
    " AND (CAST(:budget_max AS BIGINT) IS NULL OR spent_minor + :amount <= :budget_max)"
    " AND (CAST(:uses_max AS BIGINT) IS NULL OR uses < :uses_max)"
)
RELEASE: Final = (
    "UPDATE mandate_usage SET spent_minor = spent_minor - :amount, uses = uses - 1"
    " WHERE mandate_id = :id"
)
DROP_UNUSED: Final = "DELETE FROM mandate_usage WHERE mandate_id = :id AND uses = 0"


def claim_params(
    audience: str, nonce: str, mandate_id: str, digest: str, created_us: int
) -> dict[str, object]:
    return {
        "audience": audience,
        "nonce": nonce,
        "mandate_id": mandate_id,
        "digest": digest,
        "created_us": created_us,
    }


def reserve_params(reservation: Reservation) -> dict[str, object]:
    return {
        "id": reservation.mandate_id,
        "currency": reservation.currency,
        "amount": reservation.amount_minor,
        "budget_max": reservation.budget_max,
        "uses_max": reservation.uses_max,
        "now": reservation.now_us,
    }
