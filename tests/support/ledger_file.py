"""The ledger's SQLite file read with plain sqlite3, outside paywarden, as a test's witness."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import Any


def rows(database: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(database)) as db:
        return db.execute(sql, args).fetchall()


def dict_rows(database: Path, sql: str, *args: object) -> list[dict[str, Any]]:
    """The rows as dicts by column name."""
    with closing(sqlite3.connect(database)) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(sql, args)]


def count(database: Path, table: str) -> int:
    """The number of rows in `table`."""
    return int(rows(database, f"SELECT COUNT(*) FROM {table}")[0][0])


def table_state(database: Path, tables: Iterable[str]) -> dict[str, list[Any]]:
    """Every row of `tables` (each table's rows sorted): compared before and after a refusal."""
    with closing(sqlite3.connect(database)) as db:
        return {
            table: sorted(map(repr, db.execute(f"SELECT * FROM {table}").fetchall()))
            for table in tables
        }


def outbox(database: Path) -> list[dict[str, Any]]:
    """The webhook outbox, oldest event first."""
    return dict_rows(database, "SELECT * FROM outbox ORDER BY event_id")


def tampered_copy(source: Path, target: Path, *statements: str) -> Path:
    """A copy of the ledger file `source` at `target`, changed by raw SQL as an attacker who can
    write the file would: the audit log's append-only triggers dropped, then `statements`."""
    shutil.copy(source, target)
    with closing(sqlite3.connect(target, isolation_level=None)) as db:
        db.execute("DROP TRIGGER audit_log_no_update")
        db.execute("DROP TRIGGER audit_log_no_delete")
        for statement in statements:
            db.execute(statement)
    return target
