"""Read-only access to a store's audit log, settings and schema version, by database name: a
PostgreSQL URL is read here, anything else is a SQLite file (`sqlite_audit.py`).

On PostgreSQL every read runs in one REPEATABLE READ READ ONLY transaction (one snapshot, and
the server refuses any write in it), streaming the log through a server-side cursor in
sequence order. psycopg is imported only for a PostgreSQL URL, so the SQLite paths load no
driver (a base install has none).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from paywarden.adapters.storage import sqlite_audit
from paywarden.audit.chain import (
    AuditEntry,
    Checkpoint,
    StoredRow,
    VerifyResult,
    entry_from_stored,
    verify_rows,
)
from paywarden.errors import StoreError

if TYPE_CHECKING:
    import psycopg

_SCHEMES = ("postgresql://", "postgres://")
# Kind and ref_id as UTF-8 bytes: the fast verifier hashes them as read (`chain.scan_rows`).
_STORED_COLUMNS = (
    "seq, created_us, convert_to(kind, 'UTF8'), convert_to(ref_id, 'UTF8'),"
    " parent_hash, entry_hash, body"
)


def is_url(database: object) -> bool:
    """Whether `database` names a PostgreSQL database (anything else is a SQLite path)."""
    return isinstance(database, str) and database.startswith(_SCHEMES)


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def database_missing(database: str | Path) -> bool:
    """Whether a SQLite ledger file does not exist (a PostgreSQL URL is never missing here:
    connecting tells)."""
    return not is_url(database) and not Path(database).exists()


def audit_entries(
    database: str | Path, ref_id: str | None = None, page_entries: int = 20_000
) -> Iterator[AuditEntry]:
    """Every entry (or every entry about `ref_id`), in its hashed form, read-only."""
    if not is_url(database):
        return sqlite_audit.iter_audit_readonly(database, page_entries, ref_id)
    return (entry_from_stored(row) for row in _stored_rows(str(database), page_entries, ref_id))


def verify_database(database: str | Path, checkpoint: Checkpoint | None = None) -> VerifyResult:
    """Verify the whole log read-only (SQLite: `sqlite_audit.verify_file`)."""
    if not is_url(database):
        return sqlite_audit.verify_file(database, checkpoint)
    return verify_rows(_stored_rows(str(database), 20_000, None), checkpoint)


def read_setting(database: str | Path, key: str) -> str | None:
    """One shared setting (`meta`), such as the text of a policy version."""
    if not is_url(database):
        return sqlite_audit.read_meta_readonly(database, key)
    with _snapshot(str(database)) as connection:
        row = connection.execute("SELECT value FROM meta WHERE key = %s", (key,)).fetchone()
    return str(row[0]) if row else None


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """Where a database's schema stands against this paywarden's migrations."""

    kind: str  # "sqlite" or "postgres"
    version: int  # the last migration applied (0: none, an empty database)
    known: int  # the last migration this paywarden knows
    applied: tuple[tuple[int, int], ...]  # (version, applied_us) of each one applied

    @property
    def pending(self) -> tuple[int, ...]:
        return tuple(range(self.version + 1, self.known + 1))

    @property
    def newer(self) -> bool:
        """Written by a newer paywarden: this one refuses to open it."""
        return self.version > self.known


def schema_status(database: str | Path) -> SchemaStatus:
    """The schema version of a database, read-only (nothing is migrated or created)."""
    if is_url(database):
        from paywarden.adapters.storage.postgres_schema import SCHEMA_VERSION as PG_VERSION

        with _snapshot(str(database)) as connection:
            exists = connection.execute("SELECT to_regclass('schema_migrations')").fetchone()
            rows: list[Any] = []
            if exists is not None and exists[0] is not None:
                rows = connection.execute(
                    "SELECT version, applied_us FROM schema_migrations ORDER BY version"
                ).fetchall()
        return _status("postgres", rows, PG_VERSION)
    from paywarden.adapters.storage.sqlite_schema import SCHEMA_VERSION as SQLITE_VERSION

    uri = f"file:{quote(str(Path(database).resolve()))}?mode=ro"
    try:
        with closing(sqlite3.connect(uri, uri=True)) as connection:
            tables = connection.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations'"
            ).fetchall()
            rows = []
            if tables:
                rows = connection.execute(
                    "SELECT version, applied_us FROM schema_migrations ORDER BY version"
                ).fetchall()
    except sqlite3.Error as error:
        raise StoreError(f"cannot read `{database}`: {error}") from error
    return _status("sqlite", rows, SQLITE_VERSION)


def _status(kind: str, rows: list[Any], known: int) -> SchemaStatus:
    applied = tuple((int(version), int(applied_us)) for version, applied_us in rows)
    version = max((v for v, _ in applied), default=0)
    return SchemaStatus(kind, version, known, applied)


def _stored_rows(url: str, page_entries: int, ref_id: str | None) -> Iterator[StoredRow]:
    """Stored rows in sequence order, through a server-side cursor (a page at a time)."""
    import psycopg

    with _snapshot(url) as connection:
        try:
            with connection.cursor(name="paywarden_audit_read") as cursor:
                cursor.itersize = page_entries
                if ref_id is None:
                    cursor.execute(f"SELECT {_STORED_COLUMNS} FROM audit_log ORDER BY seq")
                else:
                    cursor.execute(
                        f"SELECT {_STORED_COLUMNS} FROM audit_log WHERE ref_id = %s ORDER BY seq",
                        (ref_id,),
                    )
                for row in cursor:
                    yield tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
        except psycopg.Error as error:
            raise StoreError(f"cannot read the audit log: {_one_line(error)}") from error


@contextmanager
def _snapshot(url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection in one read-only snapshot, on the store's schema."""
    import psycopg
    from psycopg import sql

    from paywarden.adapters.storage.postgres import parse_url

    settings = parse_url(url)
    try:
        connection = psycopg.connect(settings.conninfo, connect_timeout=10)
    except psycopg.Error as error:
        raise StoreError(f"cannot connect to `{redact_url(url)}`: {_one_line(error)}") from error
    try:
        with connection:
            if settings.schema is not None:
                connection.execute(
                    sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.schema))
                )
                connection.commit()
            connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield connection
    except psycopg.Error as error:
        raise StoreError(f"cannot read `{redact_url(url)}`: {_one_line(error)}") from error


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
