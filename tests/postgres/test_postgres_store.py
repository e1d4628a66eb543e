"""The PostgreSQL store on a real server: selection by URL, schema versions and migrations,
the append-only audit log (triggers and grants), the CLI, and failures that deny."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from paywarden import FrozenClock, Warden
from paywarden.adapters.storage.postgres import PostgresStore, parse_url
from paywarden.adapters.storage.postgres_audit import redact_url, schema_status
from paywarden.adapters.storage.postgres_schema import SCHEMA_VERSION
from paywarden.bootstrap import open_store
from paywarden.errors import InvalidInputError, StoreBusyError, StoreError
from paywarden.testing import example_intent

POLICY = """
currency: USD
rules:
  - id: allow-payments
    effect: allow
    actions: ["payments.*"]
budgets:
  - id: daily
    limit: "100.00"
    currency: USD
    window: day
"""
NOW = "2026-03-10T15:00:00+00:00"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paywarden.entrypoints.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


# Selection and settings ----------------------------------------------------------------------


def test_a_postgres_url_opens_the_postgres_store_and_anything_else_sqlite(
    pg_database: str, tmp_path: Any
) -> None:
    store = open_store(pg_database)
    try:
        assert isinstance(store, PostgresStore)
    finally:
        store.close()
    sqlite = open_store(tmp_path / "ledger.db")
    try:
        assert not isinstance(sqlite, PostgresStore)
    finally:
        sqlite.close()


def test_the_url_carries_the_schema_and_pool_sizes_libpq_never_sees_them() -> None:
    settings = parse_url("postgresql://u:pw@db:5432/pay?schema=pw_1&pool_max_size=20&sslmode=off")
    assert (settings.schema, settings.pool_min_size, settings.pool_max_size) == ("pw_1", 1, 20)
    assert settings.conninfo == "postgresql://u:pw@db:5432/pay?sslmode=off"
    assert redact_url("postgresql://u:secret@db/pay") == "postgresql://u:***@db/pay"
    for bad in ("?pool_max_size=0", "?pool_min_size=5&pool_max_size=2", "?schema=a;drop"):
        with pytest.raises(InvalidInputError):
            parse_url(f"postgresql://db/pay{bad}")


def test_warden_open_on_a_url_needs_the_shared_key_secret(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PAYWARDEN_KEY_SECRET", raising=False)
    with pytest.raises(InvalidInputError, match="PAYWARDEN_KEY_SECRET"):
        Warden.open(POLICY, database=pg_database)


def test_an_unreachable_server_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="cannot connect"):
        PostgresStore("postgresql://postgres@127.0.0.1:1/test", connect_timeout_seconds=1)


# A Warden on PostgreSQL ------------------------------------------------------------------------


def test_a_warden_decides_holds_captures_and_the_audit_verifies(
    pg_database: str, key_secret: str, pg_connect: Callable[[], Any]
) -> None:
    with Warden.open(POLICY, database=pg_database, clock=FrozenClock(NOW)) as warden:
        first = warden.authorize(example_intent("60.00"))
        second = warden.authorize(example_intent("40.00"))
        over = warden.authorize(example_intent("0.01"))
        assert [d.outcome for d in (first, second, over)] == ["allow", "allow", "deny"]
        assert over.reason_code == "budget_exceeded"
        assert first.hold_id is not None
        warden.capture(first.hold_id, "50.00")
        assert warden.verify_audit().ok
    rows = pg_connect().execute("SELECT spent_minor, held_minor FROM budget_counters").fetchall()
    assert rows == [(5_000, 4_000)]
    result = _cli("audit", "verify", "--database", pg_database, "--json")
    assert result.returncode == 0, result.stderr
    verified = json.loads(result.stdout)
    assert verified["ok"] and verified["entries_checked"] >= 4


def test_audit_show_reads_a_decision_from_postgres(pg_database: str, key_secret: str) -> None:
    with Warden.open(POLICY, database=pg_database, clock=FrozenClock(NOW)) as warden:
        decision = warden.authorize(example_intent("10.00"))
    shown = _cli("audit", "show", str(decision.decision_id), "--database", pg_database)
    assert shown.returncode == 0, shown.stderr
    assert str(decision.decision_id) in shown.stdout and '"outcome": "allow"' in shown.stdout


# Schema versions -----------------------------------------------------------------------------


def test_db_status_and_migrate_on_postgres(pg_database: str) -> None:
    before = _cli("db", "status", "--database", pg_database, "--json")
    assert before.returncode == 1  # pending
    assert json.loads(before.stdout)["pending"] == list(range(1, SCHEMA_VERSION + 1))
    migrated = _cli("db", "migrate", "--database", pg_database)
    assert migrated.returncode == 0, migrated.stderr
    after = _cli("db", "status", "--database", pg_database, "--json")
    assert after.returncode == 0
    assert (json.loads(after.stdout)["version"], json.loads(after.stdout)["pending"]) == (
        SCHEMA_VERSION,
        [],
    )
    again = _cli("db", "migrate", "--database", pg_database)
    assert "nothing to do" in again.stdout


def test_db_status_and_migrate_on_sqlite(tmp_path: Any) -> None:
    database = str(tmp_path / "ledger.db")
    assert _cli("db", "status", "--database", database).returncode == 2  # no such file
    assert _cli("db", "migrate", "--database", database).returncode == 0
    status = _cli("db", "status", "--database", database, "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["store"] == "sqlite"


def test_a_schema_newer_than_this_paywarden_is_refused_and_left_alone(
    pg_database: str, pg_connect: Callable[[], Any]
) -> None:
    PostgresStore(pg_database).close()
    newer = SCHEMA_VERSION + 1
    pg_connect().execute(
        "INSERT INTO schema_migrations VALUES (%s, 0, 'from the future')", (newer,)
    )
    with pytest.raises(StoreError, match=f"schema version {newer}, newer than"):
        PostgresStore(pg_database)
    assert schema_status(pg_database).newer
    refused = _cli("db", "migrate", "--database", pg_database)
    assert refused.returncode == 2 and "newer than" in refused.stderr


def test_an_older_schema_is_refused_without_migrate(pg_database: str) -> None:
    with pytest.raises(StoreError, match="paywarden db migrate"):
        PostgresStore(pg_database, migrate=False)


def test_many_stores_opening_an_empty_schema_at_once_migrate_it_once(pg_database: str) -> None:
    import threading

    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            PostgresStore(pg_database).close()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert [v for v, _ in schema_status(pg_database).applied] == list(range(1, SCHEMA_VERSION + 1))


# The audit log is append-only in the database ------------------------------------------------


def _one_entry(pg_database: str, key_secret: str) -> None:
    with Warden.open(POLICY, database=pg_database, clock=FrozenClock(NOW)) as warden:
        warden.authorize(example_intent("10.00"))


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET kind = 'edited'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ],
)
def test_even_the_owner_cannot_update_delete_or_truncate_audit_rows(
    pg_database: str, key_secret: str, pg_connect: Callable[[], Any], statement: str
) -> None:
    _one_entry(pg_database, key_secret)
    connection = pg_connect()
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        connection.execute(statement)
    assert connection.execute("SELECT count(*) FROM audit_log").fetchone()[0] >= 1


def test_the_gateway_role_may_append_but_not_change_audit_rows(
    pg_database: str, pg_schema: str, key_secret: str, pg_connect: Callable[[], Any]
) -> None:
    _one_entry(pg_database, key_secret)
    role = f"gw_{pg_schema}"
    admin = pg_connect()
    admin.execute(f'CREATE ROLE "{role}" NOLOGIN')
    try:
        granted = _cli("db", "grant", role, "--database", pg_database)
        assert granted.returncode == 0, granted.stderr
        assert 'GRANT SELECT, INSERT ON "audit_log"' in granted.stdout
        admin.execute(f'SET ROLE "{role}"')
        admin.execute("SELECT count(*) FROM audit_log")  # reads
        admin.execute("UPDATE meta SET value = value")  # writes other tables
        for statement in ("UPDATE audit_log SET kind = 'x'", "DELETE FROM audit_log"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                admin.execute(statement)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            admin.execute("TRUNCATE audit_log")
    finally:
        admin.execute("RESET ROLE")
        admin.execute(f'DROP OWNED BY "{role}"')
        admin.execute(f'DROP ROLE "{role}"')


def test_a_gateway_connected_as_the_granted_role_decides_without_ddl_rights(
    pg_database: str, pg_schema: str, key_secret: str, pg_connect: Callable[[], Any]
) -> None:
    PostgresStore(pg_database).close()  # migrated by the owner
    role = f"gwl_{pg_schema}"
    admin = pg_connect()
    admin.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        assert _cli("db", "grant", role, "--database", pg_database).returncode == 0
        as_gateway = pg_database.replace("postgresql://postgres@", f"postgresql://{role}@")
        with Warden.open(POLICY, database=as_gateway, clock=FrozenClock(NOW)) as warden:
            decision = warden.authorize(example_intent("10.00"))
            assert decision.outcome == "allow" and decision.hold_id is not None
            warden.capture(decision.hold_id)
            assert warden.verify_audit().ok
        with psycopg.connect(as_gateway.partition("?")[0]) as gateway:
            gateway.execute(f'SET search_path TO "{pg_schema}"')
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                gateway.execute("CREATE TABLE sneaky (x int)")
    finally:
        admin.execute(f'DROP OWNED BY "{role}"')
        admin.execute(f'DROP ROLE "{role}"')


# Failing closed --------------------------------------------------------------------------------


def test_no_free_connection_within_the_timeout_is_store_busy(pg_database: str) -> None:
    store = PostgresStore(f"{pg_database}&pool_max_size=1", busy_timeout_seconds=0.3)
    try:
        with store.write(), pytest.raises(StoreBusyError), store.read():
            pass  # the only connection is taken by the write
        assert store.run(lambda tx: tx.meta.get("k")) is None  # free again
    finally:
        store.close()


def test_a_lock_held_past_the_timeout_denies_store_busy_and_is_audited_after(
    pg_database: str, key_secret: str, pg_connect: Callable[[], Any]
) -> None:
    with Warden.open(
        POLICY, database=pg_database, clock=FrozenClock(NOW), busy_timeout_seconds=0.5
    ) as warden:
        warden.authorize(example_intent("1.00"))
        blocker = pg_connect()
        blocker.execute("BEGIN")
        blocker.execute("SELECT * FROM audit_head FOR UPDATE")
        try:
            busy = warden.authorize(example_intent("2.00"))
        finally:
            blocker.execute("ROLLBACK")
        assert (busy.outcome, busy.reason_code) == ("deny", "store_busy")
        after = warden.authorize(example_intent("3.00"))
        assert after.outcome == "allow"
        counters = warden.budgets()
    held = pg_connect().execute("SELECT held_minor FROM budget_counters").fetchone()[0]
    assert held == 400  # the busy decision held nothing
    assert counters  # the budgets are readable
