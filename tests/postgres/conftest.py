"""Fixtures of the PostgreSQL tests: a real server, and a schema of its own for each test.

The server is `PAYWARDEN_TEST_POSTGRES` (default `postgresql://postgres@127.0.0.1:5432/test`,
trust auth). Without one these tests are skipped, except in CI (`CI=true`), where they fail:
the PostgreSQL store must be tested there (`.ci/run` starts the server).

- `postgres_url`: the server's URL, checked once per session;
- `pg_database`: a URL naming a fresh, uniquely named schema (`?schema=pw_...`), dropped with
  everything in it when the test ends;
- `key_secret`: `PAYWARDEN_KEY_SECRET` set for the test (a PostgreSQL store needs one);
- `pg_connect`: a plain psycopg connection on the test's schema, as a witness outside paywarden.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

try:
    import psycopg
except ImportError:  # the `postgres` extra is not installed
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("psycopg is not installed", allow_module_level=True)

POSTGRES_URL = os.environ.get(
    "PAYWARDEN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
KEY_SECRET = "k" * 48


def drop_schema(schema: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="session")
def postgres_url() -> str:
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.OperationalError as error:
        message = f"PostgreSQL unavailable at {POSTGRES_URL}: {error}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return POSTGRES_URL


def new_schema() -> str:
    return f"pw_{uuid.uuid4().hex[:16]}"


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    schema = new_schema()
    yield schema
    drop_schema(schema)


@pytest.fixture
def pg_database(postgres_url: str, pg_schema: str) -> str:
    return f"{postgres_url}?schema={pg_schema}"


@pytest.fixture
def key_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("PAYWARDEN_KEY_SECRET", KEY_SECRET)
    return KEY_SECRET


@pytest.fixture
def pg_connect(postgres_url: str, pg_schema: str) -> Iterator[Callable[[], Any]]:
    """Open plain connections (autocommit) on the test's schema; closed when the test ends."""
    opened: list[Any] = []

    def connect() -> Any:
        connection = psycopg.connect(postgres_url, autocommit=True)
        connection.execute(f'SET search_path TO "{pg_schema}"')
        opened.append(connection)
        return connection

    yield connect
    for connection in opened:
        connection.close()
