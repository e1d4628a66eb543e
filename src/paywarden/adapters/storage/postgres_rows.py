"""Rows by column name on PostgreSQL: the one place where result rows become the port's
dataclasses (the PostgreSQL twin of `sqlite_rows.py`).

A SELECT names its columns (`columns(HoldRow)`), and each row is read by the names in the
cursor's description, never by position; inserts bind every field by name (`%(hold_id)s`).
A column the dataclass does not know, or a field the SELECT left out, fails loudly (TypeError).
"""

from __future__ import annotations

from dataclasses import fields
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

from psycopg import Connection, Cursor, Pipeline

from paywarden.errors import StoreBusyError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Row = TypeVar("Row", bound="DataclassInstance")
# A transaction-scoped advisory lock: one transaction at a time per key, released at commit.
ADVISORY_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 15))"
Params = tuple[Any, ...] | dict[str, Any]


@cache
def field_names(row_type: type[DataclassInstance]) -> tuple[str, ...]:
    return tuple(field.name for field in fields(row_type))


def columns(row_type: type[DataclassInstance], prefix: str = "") -> str:
    """The SELECT list of a row type: `hold_id, decision_id, ...` (each with `prefix`)."""
    return ", ".join(prefix + name for name in field_names(row_type))


def insert_statement(table: str, row_type: type[DataclassInstance]) -> str:
    """`INSERT INTO table (a, b) VALUES (%(a)s, %(b)s)` for every field of the row type."""
    names = field_names(row_type)
    return (
        f"INSERT INTO {table} ({', '.join(names)})"
        f" VALUES ({', '.join(f'%({name})s' for name in names)})"
    )


def bind(row: DataclassInstance) -> dict[str, Any]:
    """The named parameters of a row: each field under its own name."""
    return {name: getattr(row, name) for name in field_names(type(row))}


def advisory_key(*parts: str) -> str:
    """The text an advisory lock is keyed on: the parts, unambiguously joined."""
    return "\x1f".join(f"{len(part)}:{part}" for part in parts)


def _names(cursor: Cursor[Any]) -> list[str]:
    return [column.name for column in cursor.description or ()]


def fetch_one(cursor: Cursor[Any], row_type: type[Row]) -> Row | None:
    row = cursor.fetchone()
    if row is None:
        return None
    return row_type(**dict(zip(_names(cursor), row, strict=True)))


def fetch_all(cursor: Cursor[Any], row_type: type[Row]) -> list[Row]:
    rows = cursor.fetchall()
    if not rows:
        return []
    names = _names(cursor)
    return [row_type(**dict(zip(names, row, strict=True))) for row in rows]


class RetryableError(StoreBusyError):
    """The server rolled the transaction back to break a deadlock, or a value it read changed
    before it could write: running the work again is safe (`PostgresStore.run` does)."""


class LostUpdateError(RetryableError):
    """A compare-and-set found the value changed since this transaction read it."""


class PostgresRepository:
    """A repository's statements run on the connection of the transaction that made it;
    `_writing` says whether that transaction may write.

    In a write transaction, `get` of an aggregate by its id locks the row until commit
    (`_lock`: `FOR UPDATE`): what a use case read of an aggregate before changing it (a
    payment's refunds so far, an approval's votes) cannot change under it, as under SQLite's
    single writer. Lists never lock; every change is still a compare-and-set of its own.

    A write transaction runs in pipeline mode (`_pipeline`): a statement is sent when the next
    one whose result is needed is, so an insert costs no round trip of its own. The server runs
    them in order, each with its own snapshot, exactly as if each had waited; an error surfaces
    at the next result read (or the commit) and fails the transaction.
    """

    __slots__ = ("_db", "_lock", "_pipeline", "_writing")

    def __init__(
        self, connection: Connection[Any], writing: bool, pipeline: Pipeline | None = None
    ) -> None:
        self._db = connection
        self._writing = writing
        self._lock = " FOR UPDATE" if writing else ""
        self._pipeline = pipeline

    def _execute(self, query: str, params: Params | None = None) -> Cursor[Any]:
        return self._db.execute(query, params)

    def _count(self, cursor: Cursor[Any]) -> int:
        """The rows a statement changed (in pipeline mode, once its result has arrived)."""
        if self._pipeline is not None:
            self._pipeline.sync()
        return cursor.rowcount

    def _rowcount(self, query: str, params: Params | None = None) -> int:
        return self._count(self._execute(query, params))
