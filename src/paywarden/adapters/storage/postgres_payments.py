"""PostgreSQL repositories of payments, refunds and circuit breakers.

Every state change is a compare-and-set on the current state, so each transition happens once
even when two processes race for it.
"""

from __future__ import annotations

from paywarden.adapters.storage.postgres_rows import (
    PostgresRepository,
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


class PostgresPayments(PostgresRepository):
    __slots__ = ()

    def get(self, payment_id: str) -> PaymentRow | None:
        cursor = self._execute(
            f"SELECT {_PAYMENT} FROM payments WHERE payment_id = %s{self._lock}", (payment_id,)
        )
        return fetch_one(cursor, PaymentRow)

    def get_by_decision(self, decision_id: str) -> PaymentRow | None:
        cursor = self._execute(
            f"SELECT {_PAYMENT} FROM payments WHERE decision_id = %s", (decision_id,)
        )
        return fetch_one(cursor, PaymentRow)

    def insert(self, row: PaymentRow) -> None:
        self._execute(_INSERT_PAYMENT, bind(row))

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
        cursor = self._execute(
            "UPDATE payments SET state = %s, updated_us = %s,"
            " rail_payment_id = COALESCE(%s, rail_payment_id), error = %s"
            " WHERE payment_id = %s AND state = %s",
            (target, now_us, rail_payment_id, error, payment_id, source),
        )
        return self._count(cursor) == 1

    def add_refund(self, payment_id: str, amount_minor: int, now_us: int) -> bool:
        cursor = self._execute(
            "UPDATE payments SET refunded_minor = refunded_minor + %s, updated_us = %s,"
            " state = CASE WHEN refunded_minor + %s = amount_minor THEN 'refunded' ELSE state END"
            " WHERE payment_id = %s AND state = 'settled' AND refunded_minor + %s <= amount_minor",
            (amount_minor, now_us, amount_minor, payment_id, amount_minor),
        )
        return self._count(cursor) == 1

    def list_open(self, limit: int) -> list[PaymentRow]:
        cursor = self._execute(
            f"SELECT {_PAYMENT} FROM payments"
            " WHERE state IN ('authorized', 'submitted', 'unknown')"
            " ORDER BY created_us, payment_id LIMIT %s",
            (limit,),
        )
        return fetch_all(cursor, PaymentRow)

    def list_recent(self, agent: str | None, state: str | None, limit: int) -> list[PaymentRow]:
        """Newest first, optionally for one agent and one state."""
        cursor = self._execute(
            f"SELECT {_PAYMENT} FROM payments WHERE (%(agent)s::text IS NULL OR agent = %(agent)s)"
            " AND (%(state)s::text IS NULL OR state = %(state)s)"
            " ORDER BY created_us DESC, payment_id LIMIT %(limit)s",
            {"agent": agent, "state": state, "limit": limit},
        )
        return fetch_all(cursor, PaymentRow)


class PostgresRefunds(PostgresRepository):
    __slots__ = ()

    def get(self, refund_id: str) -> RefundRow | None:
        cursor = self._execute(
            f"SELECT {_REFUND} FROM refunds WHERE refund_id = %s{self._lock}", (refund_id,)
        )
        return fetch_one(cursor, RefundRow)

    def insert(self, row: RefundRow) -> None:
        self._execute(_INSERT_REFUND, bind(row))

    def transition(
        self,
        refund_id: str,
        source: RefundState,
        target: RefundState,
        now_us: int,
        rail_refund_id: str | None,
        error: str | None,
    ) -> bool:
        cursor = self._execute(
            "UPDATE refunds SET state = %s, updated_us = %s,"
            " rail_refund_id = COALESCE(%s, rail_refund_id), error = %s"
            " WHERE refund_id = %s AND state = %s",
            (target, now_us, rail_refund_id, error, refund_id, source),
        )
        return self._count(cursor) == 1

    def list_by_payment(self, payment_id: str) -> list[RefundRow]:
        cursor = self._execute(
            f"SELECT {_REFUND} FROM refunds WHERE payment_id = %s"
            " ORDER BY created_us, length(rail_key), rail_key",
            (payment_id,),
        )
        return fetch_all(cursor, RefundRow)

    def list_open(self, limit: int) -> list[RefundRow]:
        cursor = self._execute(
            f"SELECT {_REFUND} FROM refunds WHERE state IN ('submitted', 'unknown')"
            " ORDER BY created_us, refund_id LIMIT %s",
            (limit,),
        )
        return fetch_all(cursor, RefundRow)


class PostgresBreakers(PostgresRepository):
    __slots__ = ()

    def get(self, rail: str) -> BreakerRow:
        cursor = self._execute(
            f"SELECT {_BREAKER} FROM breakers WHERE rail = %s{self._lock}", (rail,)
        )
        return fetch_one(cursor, BreakerRow) or BreakerRow(rail, "closed", 0, None)

    def save(self, row: BreakerRow) -> None:
        self._execute(_SAVE_BREAKER, bind(row))
