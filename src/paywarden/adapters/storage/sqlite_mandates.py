"""SQLite repository of AP2 mandate nonces and budgets (migration 12; SQL in mandates_sql)."""

from __future__ import annotations

from paywarden.adapters.storage import mandates_sql as sql
from paywarden.adapters.storage.sqlite_rows import SQLiteRepository
from paywarden.ports.mandates import Reservation


class SQLiteMandates(SQLiteRepository):
    __slots__ = ()

    def claim(
        self, audience: str, nonce: str, mandate_id: str, digest: str, created_us: int
    ) -> bool:
        params = sql.claim_params(audience, nonce, mandate_id, digest, created_us)
        return self._db.execute(sql.CLAIM, params).rowcount == 1

    def delete(self, audience: str, nonce: str, digest: str) -> None:
        self._db.execute(sql.DELETE, {"audience": audience, "nonce": nonce, "digest": digest})

    def get_usage(self, mandate_id: str) -> tuple[int, int] | None:
        row = self._db.execute(sql.USAGE, {"id": mandate_id}).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def reserve(self, reservation: Reservation) -> bool:
        params = sql.reserve_params(reservation)
        self._db.execute(sql.CREATE_USAGE, params)
        if self._db.execute(sql.RESERVE, params).rowcount == 1:
            return True
        self._db.execute(sql.DROP_UNUSED, params)
        return False

    def release(self, mandate_id: str, amount_minor: int) -> None:
        params = {"id": mandate_id, "amount": amount_minor}
        self._db.execute(sql.RELEASE, params)
        self._db.execute(sql.DROP_UNUSED, params)
