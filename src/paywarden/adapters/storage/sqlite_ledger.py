"""SQLite repositories of the money path: decisions, budget counters (and velocity), holds.

Every money statement is one atomic SQL statement: a reservation is a conditional UPDATE
(`... AND spent + held + amount <= limit`), a release or restore checks the counter still
holds what it gives back, and a hold is resolved by a compare-and-set on its state.
"""

from __future__ import annotations

from collections.abc import Sequence

from paywarden.adapters.storage.facts_sql import fact_values
from paywarden.adapters.storage.sqlite_rows import (
    SQLiteRepository,
    bind,
    columns,
    fetch_all,
    fetch_one,
)
from paywarden.audit.body_codec import decode_text
from paywarden.errors import StoreError
from paywarden.ports import (
    ChargeRow,
    CounterRow,
    HoldRow,
    HoldState,
    NewDecision,
    RollingUsage,
    StoredDecision,
    VelocityUsage,
)

ROLLING_WINDOW_US = -1  # the counter window of a rolling budget: summed from its charges
FACT_INSERT = (
    "INSERT INTO decision_facts (decision_id, created_us, agent, action, category, currency,"
    " amount_minor, recipient, outcome, reason_code, hold_id, anomalous)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_HOLD = columns(HoldRow)
_CHARGE = columns(ChargeRow)
_COUNTER = columns(CounterRow)


class SQLiteDecisions(SQLiteRepository):
    """A decision is its audit entry; its index row holds only what lookups need: the id and
    the entry's seq, and, under an idempotency key, the key and the intent's fingerprint
    (`decision_keys`). Everything else is read from the entry's body."""

    __slots__ = ()

    def get_by_key(self, agent: str, idempotency_key: str) -> StoredDecision | None:
        row = self._db.execute(
            "SELECT k.decision_id, k.fingerprint, a.body FROM decision_keys k"
            " JOIN decisions d ON d.decision_id = k.decision_id"
            " JOIN audit_log a ON a.seq = d.audit_seq"
            " WHERE k.agent = ? AND k.idempotency_key = ?",
            (agent, idempotency_key),
        ).fetchone()
        if row is None:
            return None
        return StoredDecision(row[0], row[1], decode_text(row[2]))

    def get_body(self, decision_id: str) -> str | None:
        row = self._db.execute(
            "SELECT a.body FROM decisions d JOIN audit_log a ON a.seq = d.audit_seq"
            " WHERE d.decision_id = ?",
            (decision_id,),
        ).fetchone()
        return decode_text(row[0]) if row else None

    def insert(self, row: NewDecision) -> None:
        """The index row, the decision's fact row (`decision_facts`: analytics and anomaly
        facts) and the idempotency key's row, in the caller's transaction."""
        self._db.execute(
            "INSERT INTO decisions (decision_id, audit_seq) VALUES (?, ?)",
            (row.decision_id, row.audit_seq),
        )
        self._db.execute(FACT_INSERT, fact_values(row))
        if row.idempotency_key is not None:
            self._db.execute(
                "INSERT INTO decision_keys (agent, idempotency_key, decision_id, fingerprint)"
                " VALUES (?, ?, ?, ?)",
                (row.agent, row.idempotency_key, row.decision_id, row.fingerprint),
            )


class SQLiteBudgets(SQLiteRepository):
    __slots__ = ()

    def lock_counter(
        self, budget_id: str, scope_key: str, window_start_us: int, currency: str
    ) -> CounterRow:
        """Create the counter row if needed and read it (the write lock is already held)."""
        self._db.execute(
            "INSERT INTO budget_counters (budget_id, scope_key, window_start_us, currency)"
            " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (budget_id, scope_key, window_start_us, currency),
        )
        cursor = self._db.execute(
            f"SELECT {_COUNTER} FROM budget_counters"
            " WHERE budget_id = ? AND scope_key = ? AND window_start_us = ?",
            (budget_id, scope_key, window_start_us),
        )
        row = fetch_one(cursor, CounterRow)
        if row is None:  # only a broken store loses the row it just inserted
            raise StoreError(f"counter of budget `{budget_id}` could not be created")
        return row

    def reserve(
        self,
        budget_id: str,
        scope_key: str,
        window_start_us: int,
        amount_minor: int,
        limit_minor: int,
    ) -> bool:
        """The atomic conditional reservation: true only when the amount still fits."""
        cursor = self._db.execute(
            "UPDATE budget_counters SET held_minor = held_minor + ?"
            " WHERE budget_id = ? AND scope_key = ? AND window_start_us = ?"
            " AND spent_minor + held_minor + ? <= ?",
            (amount_minor, budget_id, scope_key, window_start_us, amount_minor, limit_minor),
        )
        return cursor.rowcount == 1

    def release(self, charge: ChargeRow, captured_minor: int) -> None:
        """Move a charge out of `held`: `captured_minor` becomes spent, the rest is freed."""
        if charge.window_start_us == ROLLING_WINDOW_US:
            return  # rolling budgets are summed from the charges themselves
        cursor = self._db.execute(
            "UPDATE budget_counters SET held_minor = held_minor - ?, spent_minor = spent_minor + ?"
            " WHERE budget_id = ? AND scope_key = ? AND window_start_us = ? AND held_minor >= ?",
            (
                charge.amount_minor,
                captured_minor,
                charge.budget_id,
                charge.scope_key,
                charge.window_start_us,
                charge.amount_minor,
            ),
        )
        if cursor.rowcount != 1:
            raise StoreError(f"counter for hold `{charge.hold_id}` is missing or inconsistent")

    def restore(self, charge: ChargeRow, amount_minor: int) -> None:
        """Give `amount_minor` of a captured charge back to its budget (a refund)."""
        cursor = self._db.execute(
            "UPDATE hold_charges SET restored_minor = restored_minor + ?"
            " WHERE hold_id = ? AND budget_id = ? AND state = 'captured'"
            " AND restored_minor + ? <= amount_minor",
            (amount_minor, charge.hold_id, charge.budget_id, amount_minor),
        )
        if cursor.rowcount != 1:
            raise StoreError(f"charge of hold `{charge.hold_id}` cannot give back {amount_minor}")
        if charge.window_start_us == ROLLING_WINDOW_US:
            return  # rolling budgets are summed from the charges themselves
        cursor = self._db.execute(
            "UPDATE budget_counters SET spent_minor = spent_minor - ?"
            " WHERE budget_id = ? AND scope_key = ? AND window_start_us = ? AND spent_minor >= ?",
            (
                amount_minor,
                charge.budget_id,
                charge.scope_key,
                charge.window_start_us,
                amount_minor,
            ),
        )
        if cursor.rowcount != 1:
            raise StoreError(f"counter for hold `{charge.hold_id}` is missing or inconsistent")

    def get_rolling_usage(self, budget_id: str, scope_key: str, since_us: int) -> RollingUsage:
        """(spent, held) of a rolling budget's charges created after `since_us`."""
        spent, held = self._db.execute(
            "SELECT COALESCE(SUM(CASE WHEN state = 'captured'"
            " THEN amount_minor - restored_minor END), 0),"
            " COALESCE(SUM(CASE WHEN state = 'held' THEN amount_minor END), 0)"
            " FROM hold_charges WHERE budget_id = ? AND scope_key = ? AND window_start_us = -1"
            " AND created_us > ?",
            (budget_id, scope_key, since_us),
        ).fetchone()
        return RollingUsage(int(spent), int(held))

    def get_velocity_usage(self, velocity_id: str, scope_key: str, since_us: int) -> VelocityUsage:
        count = self._db.execute(
            "SELECT COUNT(*) FROM velocity_events"
            " WHERE velocity_id = ? AND scope_key = ? AND created_us > ?",
            (velocity_id, scope_key, since_us),
        ).fetchone()[0]
        last = self._db.execute(
            "SELECT MAX(created_us) FROM velocity_events WHERE velocity_id = ? AND scope_key = ?",
            (velocity_id, scope_key),
        ).fetchone()[0]
        return VelocityUsage(int(count), int(last) if last is not None else None)

    def insert_velocity_event(
        self, velocity_id: str, scope_key: str, created_us: int, hold_id: str | None
    ) -> None:
        self._db.execute(
            "INSERT INTO velocity_events (velocity_id, scope_key, created_us, hold_id)"
            " VALUES (?, ?, ?, ?)",
            (velocity_id, scope_key, created_us, hold_id),
        )

    def list_counters(self) -> list[CounterRow]:
        cursor = self._db.execute(
            f"SELECT {_COUNTER} FROM budget_counters ORDER BY budget_id, scope_key, window_start_us"
        )
        return fetch_all(cursor, CounterRow)


class SQLiteHolds(SQLiteRepository):
    __slots__ = ()

    def get(self, hold_id: str) -> HoldRow | None:
        cursor = self._db.execute(f"SELECT {_HOLD} FROM holds WHERE hold_id = ?", (hold_id,))
        return fetch_one(cursor, HoldRow)

    def insert(self, hold: HoldRow, charges: Sequence[ChargeRow]) -> None:
        self._db.execute(
            "INSERT INTO holds (hold_id, decision_id, agent, amount_minor, currency, state,"
            " created_us, expires_us) VALUES (:hold_id, :decision_id, :agent, :amount_minor,"
            " :currency, 'held', :created_us, :expires_us)",
            bind(hold),
        )
        self._db.executemany(
            "INSERT INTO hold_charges (hold_id, budget_id, scope_key, window_start_us,"
            " amount_minor, created_us, state) VALUES (?, ?, ?, ?, ?, ?, 'held')",
            [
                (
                    c.hold_id,
                    c.budget_id,
                    c.scope_key,
                    c.window_start_us,
                    c.amount_minor,
                    hold.created_us,
                )
                for c in charges
            ],
        )

    def transition(
        self, hold_id: str, target: HoldState, now_us: int, captured_minor: int | None
    ) -> bool:
        """Compare-and-set `held` -> `target`; false when the hold was already resolved."""
        cursor = self._db.execute(
            "UPDATE holds SET state = ?, resolved_us = ?, captured_minor = ?"
            " WHERE hold_id = ? AND state = 'held'",
            (target, now_us, captured_minor, hold_id),
        )
        if cursor.rowcount != 1:
            return False
        self._db.execute("UPDATE hold_charges SET state = ? WHERE hold_id = ?", (target, hold_id))
        return True

    def set_expiry(self, hold_id: str, expires_us: int) -> None:
        """Move a held hold's deadline (an approved request, once used, gets the normal TTL)."""
        self._db.execute(
            "UPDATE holds SET expires_us = ? WHERE hold_id = ? AND state = 'held'",
            (expires_us, hold_id),
        )

    def list_due(self, now_us: int, limit: int) -> list[str]:
        rows = self._db.execute(
            "SELECT hold_id FROM holds WHERE state = 'held' AND expires_us <= ?"
            " ORDER BY expires_us LIMIT ?",
            (now_us, limit),
        ).fetchall()
        return [str(row[0]) for row in rows]

    def list_charges(self, hold_id: str) -> list[ChargeRow]:
        cursor = self._db.execute(
            f"SELECT {_CHARGE} FROM hold_charges WHERE hold_id = ? ORDER BY budget_id", (hold_id,)
        )
        return fetch_all(cursor, ChargeRow)

    def set_charge_amount(self, hold_id: str, budget_id: str, amount_minor: int) -> None:
        self._db.execute(
            "UPDATE hold_charges SET amount_minor = ? WHERE hold_id = ? AND budget_id = ?",
            (amount_minor, hold_id, budget_id),
        )
