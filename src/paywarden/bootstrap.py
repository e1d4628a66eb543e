"""Composition: the one place outside the entry points that picks adapters.

`open_runtime` builds a `Runtime` from plain settings: the store, the webhook notifier, the
policy. `Warden.open` delegates here (imported when called, so `import paywarden` loads no
adapter); entry points call it directly or through `Warden.open`.

The database names the store (`open_store`): a `postgresql://` or `postgres://` URL is the
PostgreSQL store (the `postgres` extra), anything else a SQLite file (or `:memory:`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from paywarden import extras, keys, limits
from paywarden.actions import policy as policy_actions
from paywarden.adapters.notify.webhook import WebhookNotifier
from paywarden.adapters.storage.postgres_audit import is_url as is_postgres_url
from paywarden.adapters.storage.sqlite import SQLiteStore
from paywarden.audit.service import AuditOptions
from paywarden.clock import Clock, SystemClock
from paywarden.errors import InvalidInputError, StoreError
from paywarden.policy.loading import load_policy
from paywarden.ports import IdSource, Store
from paywarden.rails import PaymentRail
from paywarden.runtime import Runtime, ServerSecret, default_sleep, random_id
from paywarden.webhooks import WebhookOptions


def open_runtime(
    policy: str | Path | None = None,
    *,
    database: str | Path = ":memory:",
    clock: Clock | None = None,
    environment: str | None = None,
    hold_ttl_seconds: int = limits.hold_ttl_seconds,
    busy_timeout_seconds: float = limits.store_busy_timeout_seconds,
    ids: IdSource = random_id,
    audit: AuditOptions | None = None,
    webhook: WebhookOptions | None = None,
    rails: Mapping[str, PaymentRail] | None = None,
    sleep: Callable[[float], None] = default_sleep,
) -> Runtime:
    """A runtime on a policy (path or YAML text) and a database (a SQLite file or a PostgreSQL
    URL); the policy it starts with is audited when it differs from the last one recorded."""
    clock = clock or SystemClock()
    secret = shared_secret() if is_postgres_url(database) else ServerSecret(database)
    store = open_store(database, busy_timeout_seconds=busy_timeout_seconds)
    notifier = WebhookNotifier(store, webhook, clock) if webhook is not None else None
    runtime = Runtime(
        store,
        load_policy(policy),
        clock=clock,
        ids=ids,
        environment=environment,
        hold_ttl_seconds=hold_ttl_seconds,
        rails=rails,
        sleep=sleep,
        secret=secret,
        audit=audit,
        notifier=notifier,
    )
    policy_actions.record_policy_load(runtime)
    return runtime


def open_store(
    database: str | Path,
    *,
    busy_timeout_seconds: float = limits.store_busy_timeout_seconds,
    migrate: bool = True,
) -> Store:
    """The store a database names: PostgreSQL for a `postgresql://` or `postgres://` URL,
    else SQLite. `migrate=False` refuses a PostgreSQL schema that is not up to date instead
    of migrating it (SQLite files always migrate)."""
    if not is_postgres_url(database):
        return SQLiteStore(database, busy_timeout_seconds=busy_timeout_seconds)
    try:
        from paywarden.adapters.storage.postgres import PostgresStore
    except ImportError as error:
        if extras.missing_extra(error, "postgres"):
            message = extras.needs_extra_message("a PostgreSQL database", "postgres")
            raise StoreError(message) from error
        raise
    return PostgresStore(str(database), busy_timeout_seconds=busy_timeout_seconds, migrate=migrate)


class SharedSecret(ServerSecret):
    """The API-key secret of a deployment whose gateways share one PostgreSQL database: every
    host must hash keys under the same secret, so it comes only from configuration that all
    hosts share (`PAYWARDEN_KEY_SECRET`), never from a file beside one host's database."""

    def __init__(self) -> None:
        super().__init__(None)


def shared_secret(environ: Mapping[str, str] = os.environ) -> SharedSecret:
    """The shared secret, checked at start-up: a PostgreSQL database without
    `PAYWARDEN_KEY_SECRET` refuses to open (each host would otherwise invent its own)."""
    if keys.SECRET_ENV not in environ:
        raise InvalidInputError(
            f"a PostgreSQL database needs {keys.SECRET_ENV} (at least "
            f"{keys.SERVER_SECRET_BYTES_MIN} characters, the same on every gateway)"
        )
    secret = SharedSecret()
    secret.use(environ[keys.SECRET_ENV].encode("utf-8"))
    return secret
