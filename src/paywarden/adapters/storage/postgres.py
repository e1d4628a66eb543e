"""The PostgreSQL store: one ledger shared by several gateways on several hosts.

Selected by a database URL (`postgresql://` or `postgres://`; `bootstrap.open_runtime`). Built
on psycopg 3 and a `psycopg_pool` connection pool (the `postgres` extra). Transactions run at
READ COMMITTED, never SERIALIZABLE (retry storms under contention): every money change is one
conditional statement on a row locked in a fixed order, every state change a compare-and-set,
and the few reads SQLite serialises with its single writer take a lock first (see
`postgres_ledger.py` and `postgres_log.py`). Reads run in a REPEATABLE READ READ ONLY snapshot.

Failures fail closed: a pool that has no connection within the busy timeout, a lock not granted
within it (`lock_timeout`), or a deadlock still there after retries is a `StoreBusyError`
(decisions deny `store_busy`); a lost connection or any other database error is a `StoreError`
(`store_unavailable`). A connection the server dropped while it sat in the pool (a restart,
`pg_terminate_backend`) fails at BEGIN, before anything was done; the pool replaces it and the
transaction begins on another, so the next call works again.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from paywarden.adapters.storage.postgres_analytics import PostgresFacts
from paywarden.adapters.storage.postgres_approvals import (
    PostgresApprovals,
    PostgresGrants,
    PostgresHalts,
    PostgresOperators,
)
from paywarden.adapters.storage.postgres_audit import is_url as is_postgres_url
from paywarden.adapters.storage.postgres_audit import redact_url
from paywarden.adapters.storage.postgres_goals import PostgresGoalRuns
from paywarden.adapters.storage.postgres_keys import PostgresIdempotency, PostgresKeys
from paywarden.adapters.storage.postgres_ledger import (
    PostgresBudgets,
    PostgresDecisions,
    PostgresHolds,
)
from paywarden.adapters.storage.postgres_log import PostgresAudit, PostgresMeta, PostgresOutbox
from paywarden.adapters.storage.postgres_mandates import PostgresMandates
from paywarden.adapters.storage.postgres_observe import PostgresAlerts, PostgresGauges
from paywarden.adapters.storage.postgres_payments import (
    PostgresBreakers,
    PostgresPayments,
    PostgresRefunds,
)
from paywarden.adapters.storage.postgres_rows import RetryableError
from paywarden.adapters.storage.postgres_schema import (
    MIGRATIONS,
    MIGRATIONS_TABLE,
    SCHEMA_VERSION,
    column_collation,
    grant_statements,
)
from paywarden.adapters.storage.postgres_workflows import (
    PostgresDisputes,
    PostgresScopes,
    PostgresSessions,
)
from paywarden.errors import InvalidInputError, StoreBusyError, StoreError
from paywarden.ports import UnitOfWork

__all__ = [
    "DEFAULT_POOL_MAX_SIZE",
    "DEFAULT_POOL_MIN_SIZE",
    "PostgresSettings",
    "PostgresStore",
    "PostgresUnitOfWork",
    "is_postgres_url",
    "parse_url",
    "redact_url",
]

DEFAULT_BUSY_TIMEOUT_SECONDS = 5.0
DEFAULT_POOL_MIN_SIZE = 1
DEFAULT_POOL_MAX_SIZE = 10
DEFAULT_CONNECT_TIMEOUT_SECONDS = 10.0
# A work that failed on a unique key runs again this many times (another transaction may have
# inserted the row between the work's read and its insert; the next run sees it).
UNIQUE_RETRIES_MAX = 2
# A session idle inside a transaction (a hung or stopped gateway) is ended by the server after
# this many busy timeouts, so it cannot hold the audit head's lock forever.
_IDLE_IN_TRANSACTION_TIMEOUTS = 6

# Query parameters of a database URL that paywarden reads itself (libpq rejects unknown ones).
_OWN_PARAMETERS = ("schema", "pool_min_size", "pool_max_size")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    """A database URL split into what libpq reads and what paywarden reads."""

    conninfo: str
    schema: str | None
    pool_min_size: int
    pool_max_size: int


def parse_url(url: str) -> PostgresSettings:
    """`postgresql://user@host:5432/db?schema=pw&pool_max_size=20`: libpq's URL, plus the
    schema the store lives in and the pool's sizes (see docs/deployment.md)."""
    if not is_postgres_url(url):
        raise InvalidInputError("a PostgreSQL URL starts with `postgresql://` or `postgres://`")
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    own = {key: value for key, value in query if key in _OWN_PARAMETERS}
    rest = [(key, value) for key, value in query if key not in _OWN_PARAMETERS]
    sizes = {}
    for name, default in (
        ("pool_min_size", DEFAULT_POOL_MIN_SIZE),
        ("pool_max_size", DEFAULT_POOL_MAX_SIZE),
    ):
        text = own.get(name, str(default))
        if not text.isdigit() or int(text) < 1:
            raise InvalidInputError(f"`{name}` in the database URL must be a whole number >= 1")
        sizes[name] = int(text)
    if sizes["pool_min_size"] > sizes["pool_max_size"]:
        raise InvalidInputError("`pool_min_size` must not exceed `pool_max_size`")
    schema = own.get("schema") or None
    if schema is not None and not schema.replace("_", "").isalnum():
        raise InvalidInputError("`schema` in the database URL must be letters, digits and `_`")
    conninfo = urlunsplit(parts._replace(query=urlencode(rest)))
    return PostgresSettings(conninfo, schema, sizes["pool_min_size"], sizes["pool_max_size"])


def store_error(error: BaseException, timeout_seconds: float) -> StoreError:
    """The store error a driver or pool error means: busy, or unavailable."""
    if isinstance(error, PoolTimeout):
        return StoreBusyError(f"no database connection free within {timeout_seconds}s")
    if isinstance(error, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled):
        return StoreBusyError(f"the store stayed locked for {timeout_seconds}s")
    if isinstance(error, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure):
        return RetryableError(f"the store is busy (concurrent transactions): {error}")
    return StoreError(f"store error: {_one_line(error)}")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


class PostgresStore:
    """A store in one PostgreSQL database (in `schema`, or the connection's search path)."""

    def __init__(
        self,
        url: str,
        *,
        busy_timeout_seconds: float = DEFAULT_BUSY_TIMEOUT_SECONDS,
        connect_timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT_SECONDS,
        migrate: bool = True,
    ) -> None:
        self.url = url
        self.settings = parse_url(url)
        self.busy_timeout_seconds = busy_timeout_seconds
        self._closed = threading.Event()
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            self.settings.conninfo,
            min_size=self.settings.pool_min_size,
            max_size=self.settings.pool_max_size,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(connect_timeout_seconds))},
            configure=self._configure,
            timeout=busy_timeout_seconds,
            open=False,
            name="paywarden",
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout_seconds)
        except (PoolTimeout, psycopg.Error) as error:
            self._pool.close(timeout=0)
            raise StoreError(f"cannot connect to `{redact_url(url)}`: {error}") from error
        try:
            self._check_schema(migrate)
        except BaseException:
            self._pool.close(timeout=0)
            raise

    # Connections ----------------------------------------------------------------------------

    def _configure(self, connection: psycopg.Connection[Any]) -> None:
        """Every new connection: the store's schema first on the search path, the busy timeout
        as the lock timeout, and a limit on sessions left idle inside a transaction."""
        timeout_ms = max(1, int(self.busy_timeout_seconds * 1000))
        statements = [
            sql.SQL("SET lock_timeout = {}").format(timeout_ms),
            sql.SQL("SET idle_in_transaction_session_timeout = {}").format(
                timeout_ms * _IDLE_IN_TRANSACTION_TIMEOUTS
            ),
        ]
        if self.settings.schema is not None:
            statements.append(
                sql.SQL("SET search_path TO {}").format(sql.Identifier(self.settings.schema))
            )
        connection.execute(sql.SQL("; ").join(statements))

    def backlog(self) -> int:
        """Callers waiting for a pooled connection in this process (cheap: no round trip)."""
        return int(self._pool.get_stats().get("requests_waiting", 0))

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._pool.close()

    # Transactions ---------------------------------------------------------------------------

    def run(self, work: Callable[[UnitOfWork], T]) -> T:
        """`work` in a write transaction of its own; its result once committed (and durable,
        with the server's `synchronous_commit`).

        Under READ COMMITTED a transaction can lose a race SQLite's single writer never lets
        it enter, and is then rolled back whole: a deadlock the server broke, a setting changed
        under a compare-and-set, or a row another transaction inserted between this one's
        read and its insert (a unique key). The work runs again on what the winner committed:
        after a lost race until the busy timeout (then StoreBusyError), after a unique key
        UNIQUE_RETRIES_MAX more times (then the StoreError: a key taken for good)."""
        deadline = time.monotonic() + self.busy_timeout_seconds
        attempt = unique_retries = 0
        while True:
            attempt += 1
            try:
                with self.write() as tx:
                    return work(tx)
            except RetryableError:
                if time.monotonic() >= deadline:
                    raise
            except StoreError as error:
                unique = isinstance(error.__cause__, psycopg.errors.UniqueViolation)
                if not unique or unique_retries >= UNIQUE_RETRIES_MAX:
                    raise
                unique_retries += 1
            time.sleep(random.uniform(0, min(0.05, 0.0005 * 2**attempt)))

    def write(self) -> AbstractContextManager[PostgresUnitOfWork]:
        """One READ COMMITTED write transaction; commits on success, rolls back on error."""
        return self._transaction(writing=True)

    def read(self) -> AbstractContextManager[PostgresUnitOfWork]:
        """A consistent snapshot for reads only (REPEATABLE READ READ ONLY)."""
        return self._transaction(writing=False)

    @contextmanager
    def _transaction(
        self, *, writing: bool, pipelined: bool = True
    ) -> Iterator[PostgresUnitOfWork]:
        connection = self._begin(writing)
        try:
            if writing:
                status = yield from self._committed(connection, pipelined)
                if status != "COMMIT":  # a statement failed and its error was swallowed
                    raise StoreError("store error: the transaction was rolled back, not committed")
                return
            try:
                with self._translate_errors():
                    yield PostgresUnitOfWork(connection, writing=False)
            finally:
                _rollback(connection)  # a read-only snapshot: nothing to keep
        finally:
            self._pool.putconn(connection)

    def _committed(
        self, connection: psycopg.Connection[Any], pipelined: bool
    ) -> Generator[PostgresUnitOfWork, None, str | None]:
        """The body of a write transaction (in pipeline mode unless told otherwise), then
        COMMIT; the commit's status. Anything raised rolls the transaction back, then
        propagates (driver errors as StoreError)."""
        try:
            with self._translate_errors():
                if not pipelined:
                    yield PostgresUnitOfWork(connection, writing=True)
                    return connection.execute("COMMIT").statusmessage
                with connection.pipeline() as pipeline:
                    yield PostgresUnitOfWork(connection, writing=True, pipeline=pipeline)
                    cursor = connection.execute("COMMIT")
                    pipeline.sync()
                    return cursor.statusmessage
        except BaseException:
            _rollback(connection)
            raise

    def _begin(self, writing: bool) -> psycopg.Connection[Any]:
        """A pooled connection with its transaction begun. BEGIN is the connection's check: a
        connection the server dropped (a restart, `pg_terminate_backend`) fails there, with
        nothing done yet, and the pool replaces it; the next one is tried."""
        begin = "BEGIN" if writing else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
        for attempt in range(self.settings.pool_max_size + 1):
            connection = self._connection()
            try:
                connection.execute(begin)
                return connection
            except psycopg.OperationalError as error:
                self._pool.putconn(connection)  # broken: the pool discards it
                if attempt == self.settings.pool_max_size:
                    raise store_error(error, self.busy_timeout_seconds) from error
            except psycopg.Error as error:
                self._pool.putconn(connection)
                raise store_error(error, self.busy_timeout_seconds) from error
        raise AssertionError("unreachable")  # pragma: no cover

    def _connection(self) -> psycopg.Connection[Any]:
        if self._closed.is_set():
            raise StoreError("the store is closed")
        failed_before = self._pool.get_stats().get("connections_errors", 0)
        try:
            return self._pool.getconn()
        except PoolTimeout as error:
            if self._pool.get_stats().get("connections_errors", 0) > failed_before:
                # No connection could be made while we waited: the server is down or
                # unreachable, not merely busy.
                raise StoreError(f"store error: cannot connect: {error}") from error
            raise store_error(error, self.busy_timeout_seconds) from error
        except (psycopg.Error, OSError) as error:
            raise StoreError(f"store error: {_one_line(error)}") from error

    @contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except psycopg.Error as error:
            raise store_error(error, self.busy_timeout_seconds) from error

    # Schema ---------------------------------------------------------------------------------

    def _check_schema(self, migrate: bool) -> None:
        """Refuse a schema newer than this paywarden knows; bring an older one up to date
        (`migrate`), or refuse it too."""
        current = self.schema_version()
        if current == SCHEMA_VERSION:
            return
        if current > SCHEMA_VERSION:
            raise StoreError(_newer_message(current))
        if not migrate:
            raise StoreError(
                f"the database has schema version {current}, older than this paywarden's "
                f"({SCHEMA_VERSION}); run `paywarden db migrate`"
            )
        self.migrate()

    def schema_version(self) -> int:
        """The last migration applied (0 for an empty schema)."""
        with self.read() as tx:
            connection = tx.connection
            exists = connection.execute("SELECT to_regclass('schema_migrations')").fetchone()
            if exists is None or exists[0] is None:
                return 0
            row = connection.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            version = row.fetchone()
        return int(version[0]) if version else 0

    def applied_migrations(self) -> list[tuple[int, int, str]]:
        """(version, applied_us, description) of every migration applied, in order."""
        if self.schema_version() == 0:
            return []
        with self.read() as tx:
            rows = tx.connection.execute(
                "SELECT version, applied_us, description FROM schema_migrations ORDER BY version"
            ).fetchall()
        return [(int(v), int(us), str(text)) for v, us, text in rows]

    def migrate(self) -> list[int]:
        """Apply every migration not applied yet, in one transaction, one process at a time
        (an advisory lock per schema); the versions applied."""
        applied: list[int] = []
        with self._transaction(writing=True, pipelined=False) as tx:  # several statements each
            connection = tx.connection
            lock = f"paywarden.migrate:{self.settings.schema or ''}"
            connection.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 15))", (lock,))
            if self.settings.schema is not None:
                connection.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                        sql.Identifier(self.settings.schema)
                    )
                )
            connection.execute(MIGRATIONS_TABLE)
            row = connection.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"
            ).fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise StoreError(_newer_message(current))
            for version, description, statements in MIGRATIONS:
                if version <= current:
                    continue
                connection.execute(column_collation(statements))
                connection.execute(
                    "INSERT INTO schema_migrations (version, applied_us, description)"
                    " VALUES (%s, %s, %s)",
                    (version, time.time_ns() // 1000, description),
                )
                applied.append(version)
        return applied

    def grant(self, role: str) -> list[str]:
        """Give the gateway's database role what it needs on this store's schema, and no more:
        read and write every table but the audit log, which it may only read and append to
        (and `schema_migrations`, read only). Run by the schema's owner (`paywarden db
        grant`); the statements run, in order."""
        done: list[str] = []
        with self.write() as tx:
            connection = tx.connection
            quoted_role = sql.Identifier(role).as_string(connection)
            tables = connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                " ORDER BY tablename"
            ).fetchall()
            schema = connection.execute("SELECT current_schema()").fetchone()
            if schema is None or schema[0] is None or not tables:
                raise StoreError("no paywarden schema here: run `paywarden db migrate` first")
            quoted_schema = sql.Identifier(schema[0]).as_string(connection)
            statements = [f"GRANT USAGE ON SCHEMA {quoted_schema} TO {quoted_role}"]
            statements += grant_statements(
                quoted_role,
                {str(name): sql.Identifier(name).as_string(connection) for (name,) in tables},
            )
            statements.append(
                f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {quoted_schema} TO {quoted_role}"
            )
            for statement in statements:
                connection.execute(statement.encode())
                done.append(statement)
        return done


def _newer_message(current: int) -> str:
    return (
        f"the database has schema version {current}, newer than this paywarden knows "
        f"({SCHEMA_VERSION}); refusing to open it (upgrade paywarden)"
    )


def _rollback(connection: psycopg.Connection[Any]) -> None:
    """Roll back, ignoring a connection that is gone (the pool replaces it)."""
    with suppress(psycopg.Error):
        connection.execute("ROLLBACK")


class PostgresUnitOfWork:
    """One transaction's repositories, all on the transaction's connection (see ports.py)."""

    __slots__ = (
        "alerts",
        "approvals",
        "audit",
        "breakers",
        "budgets",
        "connection",
        "decisions",
        "disputes",
        "facts",
        "gauges",
        "goals",
        "grants",
        "halts",
        "holds",
        "idempotency",
        "keys",
        "mandates",
        "meta",
        "operators",
        "outbox",
        "payments",
        "refunds",
        "scopes",
        "sessions",
    )

    def __init__(
        self,
        connection: psycopg.Connection[Any],
        writing: bool,
        pipeline: psycopg.Pipeline | None = None,
    ) -> None:
        self.connection = connection
        self.decisions = PostgresDecisions(connection, writing, pipeline)
        self.budgets = PostgresBudgets(connection, writing, pipeline)
        self.holds = PostgresHolds(connection, writing, pipeline)
        self.audit = PostgresAudit(connection, writing, pipeline)
        self.meta = PostgresMeta(connection, writing, pipeline)
        self.operators = PostgresOperators(connection, writing, pipeline)
        self.approvals = PostgresApprovals(connection, writing, pipeline)
        self.grants = PostgresGrants(connection, writing, pipeline)
        self.halts = PostgresHalts(connection, writing, pipeline)
        self.payments = PostgresPayments(connection, writing, pipeline)
        self.refunds = PostgresRefunds(connection, writing, pipeline)
        self.breakers = PostgresBreakers(connection, writing, pipeline)
        self.sessions = PostgresSessions(connection, writing, pipeline)
        self.scopes = PostgresScopes(connection, writing, pipeline)
        self.disputes = PostgresDisputes(connection, writing, pipeline)
        self.keys = PostgresKeys(connection, writing, pipeline)
        self.idempotency = PostgresIdempotency(connection, writing, pipeline)
        self.outbox = PostgresOutbox(connection, writing, pipeline)
        self.facts = PostgresFacts(connection, writing, pipeline)
        self.alerts = PostgresAlerts(connection, writing, pipeline)
        self.gauges = PostgresGauges(connection, writing, pipeline)
        self.goals = PostgresGoalRuns(connection, writing, pipeline)
        self.mandates = PostgresMandates(connection, writing, pipeline)
