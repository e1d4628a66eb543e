"""Composition: the one place outside the entry points that picks adapters.

`open_runtime` builds a `Runtime` from plain settings: the SQLite store, the webhook notifier,
the policy. `Warden.open` delegates here (imported when called, so `import paywarden` loads no
adapter); entry points call it directly or through `Warden.open`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from paywarden import limits
from paywarden.actions import policy as policy_actions
from paywarden.adapters.notify.webhook import WebhookNotifier
from paywarden.adapters.storage.sqlite import SQLiteStore
from paywarden.audit.service import AuditOptions
from paywarden.clock import Clock, SystemClock
from paywarden.policy.loading import load_policy
from paywarden.ports import IdSource
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
    """A runtime on a policy (path or YAML text) and a SQLite database file; the policy it
    starts with is audited when it differs from the last one recorded."""
    clock = clock or SystemClock()
    store = SQLiteStore(database, busy_timeout_seconds=busy_timeout_seconds)
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
        secret=ServerSecret(database),
        audit=audit,
        notifier=notifier,
    )
    policy_actions.record_policy_load(runtime)
    return runtime
