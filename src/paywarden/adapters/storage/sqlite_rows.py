"""Rows by column name: the one place where SQLite rows become the port's dataclasses.

A SELECT names its columns (`columns(HoldRow)` lists the dataclass's fields), and each result
row is read by the names in the cursor's description, never by position: a column added by a
migration, or a table rebuilt in another column order, cannot shift a field. Inserts bind
every field by name (`:hold_id`). A column the dataclass does not know, or a field the SELECT
left out, fails loudly (TypeError) instead of filling the wrong field.
"""

from __future__ import annotations

import sqlite3
from dataclasses import fields
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Row = TypeVar("Row", bound="DataclassInstance")


@cache
def field_names(row_type: type[DataclassInstance]) -> tuple[str, ...]:
    return tuple(field.name for field in fields(row_type))


def columns(row_type: type[DataclassInstance], prefix: str = "") -> str:
    """The SELECT list of a row type: `hold_id, decision_id, ...` (each with `prefix`)."""
    return ", ".join(prefix + name for name in field_names(row_type))


def insert_statement(table: str, row_type: type[DataclassInstance]) -> str:
    """`INSERT INTO table (a, b) VALUES (:a, :b)` for every field of the row type."""
    names = field_names(row_type)
    return (
        f"INSERT INTO {table} ({', '.join(names)})"
        f" VALUES ({', '.join(':' + name for name in names)})"
    )


def bind(row: DataclassInstance) -> dict[str, Any]:
    """The named parameters of a row: each field under its own name."""
    return {name: getattr(row, name) for name in field_names(type(row))}


def _names(cursor: sqlite3.Cursor) -> list[str]:
    return [column[0] for column in cursor.description]


def fetch_one(cursor: sqlite3.Cursor, row_type: type[Row]) -> Row | None:
    row = cursor.fetchone()
    if row is None:
        return None
    return row_type(**dict(zip(_names(cursor), row, strict=True)))


def fetch_all(cursor: sqlite3.Cursor, row_type: type[Row]) -> list[Row]:
    rows = cursor.fetchall()
    if not rows:
        return []
    names = _names(cursor)
    return [row_type(**dict(zip(names, row, strict=True))) for row in rows]


class SQLiteRepository:
    """A repository's statements run on the connection of the transaction that made it."""

    __slots__ = ("_db",)

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection
