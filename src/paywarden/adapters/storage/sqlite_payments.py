"""SQLite repositories of payments, refunds and circuit breakers.

Every state change is a compare-and-set on the current state, so each transition happens once
even when two processes race for it.
"""

from __future__ import annotations

from paywarden.adapters.storage.sqlite_rows import (
    SQLiteRepository,
    bind,
    columns,
    fetch_all,
    fetch_one,
    insert_statement,
)
from paywarden.ports import BreakerRow, PaymentRow, PaymentState, RefundRow, RefundState

_PAYMENT = columns(PaymentRow)
_INSERT_PAYMENT = insert_statement("payments", PaymentRow)
_REFUND = columns(RefundRow)
_INSERT_REFUND = insert_statement("refunds", RefundRow)
_BREAKER = columns(BreakerRow)
_SAVE_BREAKER = insert_statement("breakers", BreakerRow) + (
    " ON CONFLICT (rail) DO UPDATE SET state = excluded.state,"
    " consecutive_failures = excluded.consecutive_failures, opened_us = excluded.opened_us"
)


class SQLitePayments(SQLiteRepository):
    __slots__ = ()

    def get(self, payment_id: str) -> PaymentRow | None:
        cursor = self._db.execute(
            f"SELECT {_PAYMENT} FROM payments WHERE payment_id = ?", (payment_id,)
        )
        return fetch_one(cursor, PaymentRow)

    def get_by_decision(self, decision_id: str) -> PaymentRow | None:
        cursor = self._db.execute(
            f"SELECT {_PAYMENT} FROM payments WHERE decision_id = ?", (decision_id,)
        )
        return fetch_one(cursor, PaymentRow)

    def insert(self, row: PaymentRow) -> None:
        self._db.execute(_INSERT_PAYMENT, bind(row))

    def transition(
        self,
        payment_id: str,
        source: PaymentState,
        target: PaymentState,
        now_us: int,
        rail_payment_id: str | None,
        error: str | None,
    ) -> bool:
        """Compare-and-set `source` -> `target`: each transition happens once."""
        cursor = self._db.execute(
            "UPDATE payments SET state = ?, updated_us = ?,"
            " rail_payment_id = COALESCE(?, rail_payment_id), error = ?"
            " WHERE payment_id = ? AND state = ?",
            (target, now_us, rail_payment_id, error, payment_id, source),
        )
        return cursor.rowcount == 1

    def add_refund(self, payment_id: str, amount_minor: int, now_us: int) -> bool:
        cursor = self._db.execute(
            "UPDATE payments SET refunded_minor = refunded_minor + ?, updated_us = ?,"
            " state = CASE WHEN refunded_minor + ? = amount_minor THEN 'refunded' ELSE state END"
            " WHERE payment_id = ? AND state = 'settled' AND refunded_minor + ? <= amount_minor",
            (amount_minor, now_us, amount_minor, payment_id, amount_minor),
        )
        return cursor.rowcount == 1

    def list_open(self, limit: int) -> list[PaymentRow]:
        cursor = self._db.execute(
            f"SELECT {_PAYMENT} FROM payments"
            " WHERE state IN ('authorized', 'submitted', 'unknown') ORDER BY created_us LIMIT ?",
            (limit,),
        )
        return fetch_all(cursor, PaymentRow)

    def list_recent(self, agent: str | None, state: str | None, limit: int) -> list[PaymentRow]:
        """Newest first, optionally for one agent and one state."""
        cursor = self._db.execute(
            f"SELECT {_PAYMENT} FROM payments WHERE (?1 IS NULL OR agent = ?1)"
            " AND (?2 IS NULL OR state = ?2) ORDER BY created_us DESC, payment_id LIMIT ?3",
            (agent, state, limit),
        )
        return fetch_all(cursor, PaymentRow)


class SQLiteRefunds(SQLiteRepository):
    __slots__ = ()

    def get(self, refund_id: str) -> RefundRow | None:
        cursor = self._db.execute(
            f"SELECT {_REFUND} FROM refunds WHERE refund_id = ?", (refund_id,)
        )
        return fetch_one(cursor, RefundRow)

    def insert(self, row: RefundRow) -> None:
        self._db.execute(_INSERT_REFUND, bind(row))

    def transition(
        self,
        refund_id: str,
        source: RefundState,
        target: RefundState,
        now_us: int,
        rail_refund_id: str | None,
        error: str | None,
    ) -> bool:
        cursor = self._db.execute(
            "UPDATE refunds SET state = ?, updated_us = ?,"
            " rail_refund_id = COALESCE(?, rail_refund_id), error = ?"
            " WHERE refund_id = ? AND state = ?",
            (target, now_us, rail_refund_id, error, refund_id, source),
        )
        return cursor.rowcount == 1

    def list_by_payment(self, payment_id: str) -> list[RefundRow]:
        cursor = self._db.execute(
            f"SELECT {_REFUND} FROM refunds WHERE payment_id = ?"
            " ORDER BY created_us, length(rail_key), rail_key",
            (payment_id,),
        )
        return fetch_all(cursor, RefundRow)

    def list_open(self, limit: int) -> list[RefundRow]:
        cursor = self._db.execute(
            f"SELECT {_REFUND} FROM refunds WHERE state IN ('submitted', 'unknown')"
            " ORDER BY created_us LIMIT ?",
            (limit,),
        )
        return fetch_all(cursor, RefundRow)


class SQLiteBreakers(SQLiteRepository):
    __slots__ = ()

    def get(self, rail: str) -> BreakerRow:
        cursor = self._db.execute(f"SELECT {_BREAKER} FROM breakers WHERE rail = ?", (rail,))
        return fetch_one(cursor, BreakerRow) or BreakerRow(rail, "closed", 0, None)

    def save(self, row: BreakerRow) -> None:
        self._db.execute(_SAVE_BREAKER, bind(row))
