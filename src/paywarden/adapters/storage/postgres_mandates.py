"""PostgreSQL repository of AP2 mandate nonces and budgets (migration 5; SQL in mandates_sql).

The claim's `INSERT ... ON CONFLICT DO NOTHING` makes a second transaction inserting the same
nonce wait for the first, then insert nothing. The reservation's conditional UPDATE takes the
row's lock and re-checks its condition on the committed row (READ COMMITTED).
"""

from __future__ import annotations

from typing import Final

from paywarden.adapters.storage import mandates_sql as sql
from paywarden.adapters.storage.facts_sql import for_postgres
from paywarden.adapters.storage.postgres_rows import PostgresRepository
from paywarden.ports.mandates import Reservation

_CLAIM: Final = for_postgres(sql.CLAIM)
_DELETE: Final = for_postgres(sql.DELETE)
_USAGE: Final = for_postgres(sql.USAGE)
_CREATE_USAGE: Final = for_postgres(sql.CREATE_USAGE)
_RESERVE: Final = for_postgres(sql.RESERVE)
_RELEASE: Final = for_postgres(sql.RELEASE)
_DROP_UNUSED: Final = for_postgres(sql.DROP_UNUSED)


class PostgresMandates(PostgresRepository):
    __slots__ = ()

    def claim(
        self, audience: str, nonce: str, mandate_id: str, digest: str, created_us: int
    ) -> bool:
        params = sql.claim_params(audience, nonce, mandate_id, digest, created_us)
        return self._rowcount(_CLAIM, params) == 1

    def delete(self, audience: str, nonce: str, digest: str) -> None:
        self._execute(_DELETE, {"audience": audience, "nonce": nonce, "digest": digest})

    def get_usage(self, mandate_id: str) -> tuple[int, int] | None:
        row = self._execute(_USAGE, {"id": mandate_id}).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def reserve(self, reservation: Reservation) -> bool:
        params = sql.reserve_params(reservation)
        self._execute(_CREATE_USAGE, params)
        if self._rowcount(_RESERVE, params) == 1:
            return True
        self._execute(_DROP_UNUSED, params)
        return False

    def release(self, mandate_id: str, amount_minor: int) -> None:
        params = {"id": mandate_id, "amount": amount_minor}
        self._execute(_RELEASE, params)
        self._execute(_DROP_UNUSED, params)
