"""PostgreSQL repositories of the money path: decisions, budget counters (and velocity), holds.

READ COMMITTED, with the same statements as SQLite where they port: a reservation is one
conditional UPDATE (`... AND spent + held + amount <= limit`) on a counter row locked first
(`SELECT ... FOR UPDATE`, in the lock-key order the ledger sorts its claims in), a release or
restore checks the counter still holds what it gives back, and a hold is resolved by a
compare-and-set on its state. Where SQLite relies on its single writer, a transaction lock
stands in: a velocity window and an idempotency key are each serialised by a transaction-scoped
advisory lock taken before they are read, so two gateways can neither both count the same
velocity slot nor both decide under one key (the second waits, then replays the first).
"""

from __future__ import annotations

from collections.abc import Sequence

from paywarden.adapters.storage.facts_sql import fact_values
from paywarden.adapters.storage.postgres_rows import (
    ADVISORY_LOCK,
    PostgresRepository,
    advisory_key,
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
_HOLD = columns(HoldRow)
_CHARGE = columns(ChargeRow)
_COUNTER = columns(CounterRow)


class PostgresDecisions(PostgresRepository):
    """A decision is its audit entry; its index row holds only its id and the entry's seq, and
    under an idempotency key the key and the intent's fingerprint (`decision_keys`)."""

    __slots__ = ()

    def get_by_key(self, agent: str, idempotency_key: str) -> StoredDecision | None:
        if self._writing:  # a second decision under this key waits here, then replays
            self._execute(ADVISORY_LOCK, (advisory_key("decision_key", agent, idempotency_key),))
        row = self._execute(
            "SELECT k.decision_id, k.fingerprint, a.body FROM decision_keys k"
            " JOIN decisions d ON d.decision_id = k.decision_id"
            " JOIN audit_log a ON a.seq = d.audit_seq"
            " WHERE k.agent = %s AND k.idempotency_key = %s",
            (agent, idempotency_key),
        ).fetchone()
        if row is None:
            return None
        return StoredDecision(row[0], row[1], decode_text(row[2]))

    def get_body(self, decision_id: str) -> str | None:
        row = self._execute(
            "SELECT a.body FROM decisions d JOIN audit_log a ON a.seq = d.audit_seq"
            " WHERE d.decision_id = %s",
            (decision_id,),
        ).fetchone()
        return decode_text(row[0]) if row else None

    def insert(self, row: NewDecision) -> None:
        """The decision's fact row (`decision_facts`: analytics and anomaly facts), then the
        index row and the idempotency key's row in one statement (pipelined: no round trip)."""
        self._execute(
            "INSERT INTO decision_facts (decision_id, created_us, agent, action, category,"
            " currency, amount_minor, recipient, outcome, reason_code, hold_id, anomalous)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            fact_values(row),
        )
        if row.idempotency_key is None:
            self._execute(
                "INSERT INTO decisions (decision_id, audit_seq) VALUES (%s, %s)",
                (row.decision_id, row.audit_seq),
            )
            return
        self._execute(
            "WITH decision AS (INSERT INTO decisions (decision_id, audit_seq) VALUES (%s, %s))"
            " INSERT INTO decision_keys (agent, idempotency_key, decision_id, fingerprint)"
            " VALUES (%s, %s, %s, %s)",
            (
                row.decision_id,
                row.audit_seq,
                row.agent,
                row.idempotency_key,
                row.decision_id,
                row.fingerprint,
            ),
        )


class PostgresBudgets(PostgresRepository):
    __slots__ = ()

    def lock_counter(
        self, budget_id: str, scope_key: str, window_start_us: int, currency: str
    ) -> CounterRow:
        """Lock the counter row and read it, creating it first when it does not exist yet."""
        key = (budget_id, scope_key, window_start_us)
        select = (
            f"SELECT {_COUNTER} FROM budget_counters"
            " WHERE budget_id = %s AND scope_key = %s AND window_start_us = %s"
        )
        if self._writing:
            select += " FOR UPDATE"
        row = fetch_one(self._execute(select, key), CounterRow)
        if row is not None:
            return row
        self._execute(
            "INSERT INTO budget_counters (budget_id, scope_key, window_start_us, currency)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (*key, currency),
        )
        row = fetch_one(self._execute(select, key), CounterRow)
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
        return (
            self._rowcount(
                "UPDATE budget_counters SET held_minor = held_minor + %s"
                " WHERE budget_id = %s AND scope_key = %s AND window_start_us = %s"
                " AND spent_minor + held_minor + %s <= %s",
                (amount_minor, budget_id, scope_key, window_start_us, amount_minor, limit_minor),
            )
            == 1
        )

    def release(self, charge: ChargeRow, captured_minor: int) -> None:
        """Move a charge out of `held`: `captured_minor` becomes spent, the rest is freed."""
        if charge.window_start_us == ROLLING_WINDOW_US:
            return  # rolling budgets are summed from the charges themselves
        count = self._rowcount(
            "UPDATE budget_counters SET held_minor = held_minor - %s,"
            " spent_minor = spent_minor + %s WHERE budget_id = %s AND scope_key = %s"
            " AND window_start_us = %s AND held_minor >= %s",
            (
                charge.amount_minor,
                captured_minor,
                charge.budget_id,
                charge.scope_key,
                charge.window_start_us,
                charge.amount_minor,
            ),
        )
        if count != 1:
            raise StoreError(f"counter for hold `{charge.hold_id}` is missing or inconsistent")

    def restore(self, charge: ChargeRow, amount_minor: int) -> None:
        """Give `amount_minor` of a captured charge back to its budget (a refund)."""
        count = self._rowcount(
            "UPDATE hold_charges SET restored_minor = restored_minor + %s"
            " WHERE hold_id = %s AND budget_id = %s AND state = 'captured'"
            " AND restored_minor + %s <= amount_minor",
            (amount_minor, charge.hold_id, charge.budget_id, amount_minor),
        )
        if count != 1:
            raise StoreError(f"charge of hold `{charge.hold_id}` cannot give back {amount_minor}")
        if charge.window_start_us == ROLLING_WINDOW_US:
            return
        count = self._rowcount(
            "UPDATE budget_counters SET spent_minor = spent_minor - %s WHERE budget_id = %s"
            " AND scope_key = %s AND window_start_us = %s AND spent_minor >= %s",
            (
                amount_minor,
                charge.budget_id,
                charge.scope_key,
                charge.window_start_us,
                amount_minor,
            ),
        )
        if count != 1:
            raise StoreError(f"counter for hold `{charge.hold_id}` is missing or inconsistent")

    def get_rolling_usage(self, budget_id: str, scope_key: str, since_us: int) -> RollingUsage:
        """(spent, held) of a rolling budget's charges created after `since_us`; read after
        `lock_counter` locked the budget's head row, in a statement of its own (READ COMMITTED
        takes its snapshot per statement, so it sees every charge committed before the lock)."""
        row = self._execute(
            "SELECT COALESCE(SUM(CASE WHEN state = 'captured'"
            " THEN amount_minor - restored_minor END), 0),"
            " COALESCE(SUM(CASE WHEN state = 'held' THEN amount_minor END), 0)"
            " FROM hold_charges WHERE budget_id = %s AND scope_key = %s"
            " AND window_start_us = -1 AND created_us > %s",
            (budget_id, scope_key, since_us),
        ).fetchone()
        assert row is not None  # an aggregate always returns one row
        return RollingUsage(int(row[0]), int(row[1]))

    def get_velocity_usage(self, velocity_id: str, scope_key: str, since_us: int) -> VelocityUsage:
        """Events after `since_us` and the newest one; in a write transaction the window is
        locked first, so the event this decision may add is counted by the next one."""
        if self._writing:
            self._execute(ADVISORY_LOCK, (advisory_key("velocity", velocity_id, scope_key),))
        row = self._execute(
            "SELECT COUNT(*) FILTER (WHERE created_us > %s), MAX(created_us)"
            " FROM velocity_events WHERE velocity_id = %s AND scope_key = %s",
            (since_us, velocity_id, scope_key),
        ).fetchone()
        assert row is not None
        return VelocityUsage(int(row[0]), int(row[1]) if row[1] is not None else None)

    def insert_velocity_event(
        self, velocity_id: str, scope_key: str, created_us: int, hold_id: str | None
    ) -> None:
        self._execute(
            "INSERT INTO velocity_events (velocity_id, scope_key, created_us, hold_id)"
            " VALUES (%s, %s, %s, %s)",
            (velocity_id, scope_key, created_us, hold_id),
        )

    def list_counters(self) -> list[CounterRow]:
        cursor = self._execute(
            f"SELECT {_COUNTER} FROM budget_counters ORDER BY budget_id, scope_key, window_start_us"
        )
        return fetch_all(cursor, CounterRow)


class PostgresHolds(PostgresRepository):
    __slots__ = ()

    def get(self, hold_id: str) -> HoldRow | None:
        cursor = self._execute(
            f"SELECT {_HOLD} FROM holds WHERE hold_id = %s{self._lock}", (hold_id,)
        )
        return fetch_one(cursor, HoldRow)

    def insert(self, hold: HoldRow, charges: Sequence[ChargeRow]) -> None:
        """The hold and its charges in one statement (one round trip)."""
        values = ", ".join(["(%s, %s, %s, %s, %s, %s, 'held')"] * len(charges))
        params: list[object] = [
            hold.hold_id,
            hold.decision_id,
            hold.agent,
            hold.amount_minor,
            hold.currency,
            hold.created_us,
            hold.expires_us,
        ]
        for c in charges:
            params += [
                c.hold_id,
                c.budget_id,
                c.scope_key,
                c.window_start_us,
                c.amount_minor,
                hold.created_us,
            ]
        insert_hold = (
            "INSERT INTO holds (hold_id, decision_id, agent, amount_minor, currency, state,"
            " created_us, expires_us) VALUES (%s, %s, %s, %s, %s, 'held', %s, %s)"
        )
        if not charges:
            self._execute(insert_hold, tuple(params))
            return
        self._execute(
            f"WITH hold AS ({insert_hold}) INSERT INTO hold_charges (hold_id, budget_id,"
            f" scope_key, window_start_us, amount_minor, created_us, state) VALUES {values}",
            tuple(params),
        )

    def transition(
        self, hold_id: str, target: HoldState, now_us: int, captured_minor: int | None
    ) -> bool:
        """Compare-and-set `held` -> `target` on the hold, then its charges."""
        count = self._rowcount(
            "UPDATE holds SET state = %s, resolved_us = %s, captured_minor = %s"
            " WHERE hold_id = %s AND state = 'held'",
            (target, now_us, captured_minor, hold_id),
        )
        if count != 1:
            return False
        self._execute("UPDATE hold_charges SET state = %s WHERE hold_id = %s", (target, hold_id))
        return True

    def set_expiry(self, hold_id: str, expires_us: int) -> None:
        self._execute(
            "UPDATE holds SET expires_us = %s WHERE hold_id = %s AND state = 'held'",
            (expires_us, hold_id),
        )

    def list_due(self, now_us: int, limit: int) -> list[str]:
        rows = self._execute(
            "SELECT hold_id FROM holds WHERE state = 'held' AND expires_us <= %s"
            " ORDER BY expires_us, hold_id LIMIT %s",
            (now_us, limit),
        ).fetchall()
        return [str(row[0]) for row in rows]

    def list_charges(self, hold_id: str) -> list[ChargeRow]:
        cursor = self._execute(
            f"SELECT {_CHARGE} FROM hold_charges WHERE hold_id = %s ORDER BY budget_id",
            (hold_id,),
        )
        return fetch_all(cursor, ChargeRow)

    def set_charge_amount(self, hold_id: str, budget_id: str, amount_minor: int) -> None:
        self._execute(
            "UPDATE hold_charges SET amount_minor = %s WHERE hold_id = %s AND budget_id = %s",
            (amount_minor, hold_id, budget_id),
        )
