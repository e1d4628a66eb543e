"""SQLite only: rows are read and written by column name, so a migration that adds a column or
rebuilds a table in another column order cannot shift a field."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest
from contract_stores import T0, charge, hold, payment

from paywarden.adapters.storage import sqlite as sqlite_store
from paywarden.adapters.storage.sqlite import SQLiteStore
from paywarden.adapters.storage.sqlite_rows import bind, columns, fetch_one, insert_statement
from paywarden.adapters.storage.sqlite_schema import MIGRATIONS, SCHEMA_VERSION
from paywarden.ports import HoldRow, PaymentRow

# A later migration: a column appended to `holds`, and `payments` rebuilt with its columns in
# reverse order behind a new first column.
_PAYMENT_COLUMNS = list(reversed(columns(PaymentRow).split(", ")))
_REBUILD = f"""
ALTER TABLE holds ADD COLUMN note TEXT NOT NULL DEFAULT 'added later';
CREATE TABLE payments_rebuilt (
    note TEXT NOT NULL DEFAULT 'first now',
    {", ".join(f"{name} ANY" for name in _PAYMENT_COLUMNS)},
    PRIMARY KEY (payment_id), UNIQUE (decision_id), UNIQUE (rail_key)
) STRICT, WITHOUT ROWID;
INSERT INTO payments_rebuilt ({", ".join(_PAYMENT_COLUMNS)})
    SELECT {", ".join(_PAYMENT_COLUMNS)} FROM payments;
DROP TABLE payments;
ALTER TABLE payments_rebuilt RENAME TO payments;
"""


def test_a_migration_that_adds_and_reorders_columns_shifts_no_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "store.db"
    before = payment("pay_before", state="unknown")
    store = SQLiteStore(database)
    with store.write() as tx:
        tx.payments.insert(before)
        tx.holds.insert(hold("hld_before"), [charge("hld_before")])
    store.close()

    monkeypatch.setattr(sqlite_store, "MIGRATIONS", (*MIGRATIONS, (SCHEMA_VERSION + 1, _REBUILD)))
    monkeypatch.setattr(sqlite_store, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    store = SQLiteStore(database)
    try:
        after = replace(payment("pay_after", state="failed"), rail_payment_id="r-1", error="e")
        with store.write() as tx:
            tx.payments.insert(after)
            tx.holds.insert(hold("hld_after", amount_minor=77), [])
            assert tx.holds.transition("hld_after", "captured", T0 + 2, 70)
        with store.read() as tx:
            assert tx.payments.get("pay_before") == before
            assert tx.payments.get("pay_after") == after
            assert [row.payment_id for row in tx.payments.list_recent(None, None, 5)] == [
                "pay_after",
                "pay_before",
            ]
            assert tx.holds.get("hld_before") == hold("hld_before")
            captured = replace(
                hold("hld_after", 77), state="captured", resolved_us=T0 + 2, captured_minor=70
            )
            assert tx.holds.get("hld_after") == captured
    finally:
        store.close()
    # The test means something only if the stored column order really changed.
    with closing(sqlite3.connect(database)) as db:
        stored = [row[1] for row in db.execute("PRAGMA table_info(payments)")]
        assert stored == ["note", *_PAYMENT_COLUMNS]
        assert [row[1] for row in db.execute("PRAGMA table_info(holds)")][-1] == "note"


def test_columns_are_matched_to_fields_by_name_and_unknown_ones_fail_loudly() -> None:
    with closing(sqlite3.connect(":memory:")) as db:
        db.execute(f"CREATE TABLE holds ({columns(HoldRow)}, note TEXT)")
        db.execute(insert_statement("holds", HoldRow), bind(hold()))
        assert fetch_one(db.execute(f"SELECT {columns(HoldRow)} FROM holds"), HoldRow) == hold()
        backwards = ", ".join(reversed(columns(HoldRow).split(", ")))
        assert fetch_one(db.execute(f"SELECT {backwards} FROM holds"), HoldRow) == hold()
        with pytest.raises(TypeError):
            fetch_one(db.execute("SELECT * FROM holds"), HoldRow)  # `note` is no field
        with pytest.raises(TypeError):
            fetch_one(db.execute("SELECT hold_id, agent FROM holds"), HoldRow)  # fields missing
