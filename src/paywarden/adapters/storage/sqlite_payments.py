"""SQLite statements for payments and circuit breakers; every state change is a compare-and-set."""

from __future__ import annotations

import sqlite3

from paywarden.ports import BreakerRow, PaymentRow

_PAYMENT = (
    "payment_id, decision_id, hold_id, agent, rail, rail_key, intent, amount_minor, currency,"
    " state, rail_payment_id, refunded_minor, error, created_us, updated_us"
)


class PaymentStatements:
    """Mixed into SQLiteTx; `_db` is the transaction's connection."""

    __slots__ = ()
    _db: sqlite3.Connection

    def payment_insert(self, row: PaymentRow) -> None:
        self._db.execute(
            f"INSERT INTO payments ({_PAYMENT}) VALUES ({', '.join('?' * 15)})",
            (
                row.payment_id,
                row.decision_id,
                row.hold_id,
                row.agent,
                row.rail,
                row.rail_key,
                row.intent,
                row.amount_minor,
                row.currency,
                row.state,
                row.rail_payment_id,
                row.refunded_minor,
                row.error,
                row.created_us,
                row.updated_us,
            ),
        )

    def payment(self, payment_id: str) -> PaymentRow | None:
        row = self._db.execute(
            f"SELECT {_PAYMENT} FROM payments WHERE payment_id = ?", (payment_id,)
        ).fetchone()
        return PaymentRow(*row) if row else None

    def payment_by_decision(self, decision_id: str) -> PaymentRow | None:
        row = self._db.execute(
            f"SELECT {_PAYMENT} FROM payments WHERE decision_id = ?", (decision_id,)
        ).fetchone()
        return PaymentRow(*row) if row else None

    def payments_open(self, limit: int) -> list[PaymentRow]:
        rows = self._db.execute(
            f"SELECT {_PAYMENT} FROM payments"
            " WHERE state IN ('authorized', 'submitted', 'unknown') ORDER BY created_us LIMIT ?",
            (limit,),
        ).fetchall()
        return [PaymentRow(*row) for row in rows]

    def payments(self, agent: str | None, state: str | None, limit: int) -> list[PaymentRow]:
        """Newest first, optionally for one agent and one state."""
        rows = self._db.execute(
            f"SELECT {_PAYMENT} FROM payments WHERE (?1 IS NULL OR agent = ?1)"
            " AND (?2 IS NULL OR state = ?2) ORDER BY created_us DESC, payment_id LIMIT ?3",
            (agent, state, limit),
        ).fetchall()
        return [PaymentRow(*row) for row in rows]

    def payment_transition(
        self,
        payment_id: str,
        source: str,
        target: str,
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

    def payment_add_refund(self, payment_id: str, amount_minor: int, now_us: int) -> bool:
        cursor = self._db.execute(
            "UPDATE payments SET refunded_minor = refunded_minor + ?, updated_us = ?,"
            " state = CASE WHEN refunded_minor + ? = amount_minor THEN 'refunded' ELSE state END"
            " WHERE payment_id = ? AND state = 'settled' AND refunded_minor + ? <= amount_minor",
            (amount_minor, now_us, amount_minor, payment_id, amount_minor),
        )
        return cursor.rowcount == 1

    def breaker(self, rail: str) -> BreakerRow:
        row = self._db.execute(
            "SELECT rail, state, consecutive_failures, opened_us FROM breakers WHERE rail = ?",
            (rail,),
        ).fetchone()
        return BreakerRow(*row) if row else BreakerRow(rail, "closed", 0, None)

    def breaker_save(self, row: BreakerRow) -> None:
        self._db.execute(
            "INSERT INTO breakers (rail, state, consecutive_failures, opened_us)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (rail) DO UPDATE SET state = excluded.state,"
            " consecutive_failures = excluded.consecutive_failures,"
            " opened_us = excluded.opened_us",
            (row.rail, row.state, row.consecutive_failures, row.opened_us),
        )
