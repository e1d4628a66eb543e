"""The runtime: what every use case needs, in one object passed explicitly.

A use case (`paywarden.actions.*`) is a plain function whose first parameter is the `Runtime`:
the store, the clock, the id source, the policy in force, the rails, the deployment's settings
and secret. Nothing is reached through globals or base classes, so each use case shows in its
signature and imports what it depends on. The composition module (`paywarden.bootstrap`) builds
one; `Warden` holds it and delegates every method to a use case.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Protocol

from paywarden import keys, limits
from paywarden.audit.redact import DEFAULT_REDACTOR, Redactor
from paywarden.audit.service import AuditOptions, Checkpointer
from paywarden.clock import Clock, to_us
from paywarden.errors import InvalidInputError
from paywarden.intent import free_text
from paywarden.policy.compiler import CompiledPolicy
from paywarden.policy.decision import Decision
from paywarden.policy.loading import LoadedPolicy
from paywarden.ports import IdSource, Store
from paywarden.rails import PaymentRail, load_rail

DEFAULT_ENVIRONMENT = "production"


def random_id(prefix: str) -> str:
    """A random id such as `dec_1b6ff016089aabfbb8054d08` (96 bits)."""
    return f"{prefix}_{secrets.token_hex(12)}"


def default_sleep(seconds: float) -> None:
    time.sleep(seconds)


class Notifier(Protocol):
    """Delivers the store's outbox (approval events) somewhere; an adapter (webhooks)."""

    def deliver_now(self) -> int: ...

    def close(self) -> None: ...


# (decision, the intent's action, seconds the decision took): metrics count decisions with it.
DecisionObserver = Callable[[Decision, str, float], None]


class Rails:
    """The rails a deployment pays through: instances passed in, else loaded by name from the
    `paywarden.rails` entry points (and closed with the runtime)."""

    def __init__(self, given: Mapping[str, PaymentRail] | None = None) -> None:
        self._rails: dict[str, PaymentRail] = dict(given or {})
        self._owned: set[str] = set()

    def get(self, name: str) -> PaymentRail:
        if name not in self._rails:
            self._rails[name] = load_rail(name)
            self._owned.add(name)
        return self._rails[name]

    def close(self) -> None:
        for name in self._owned:  # rails passed in by the caller are the caller's
            closer = getattr(self._rails[name], "close", None)
            if callable(closer):
                closer()  # e.g. the Stripe rail's HTTP session


class ServerSecret:
    """The deployment's server secret: `PAYWARDEN_KEY_SECRET`, else the file beside the
    database, read on first use (never when no key or digest needs it)."""

    def __init__(self, database: str | Path | None) -> None:
        self._database = database
        self._secret: bytes | None = None

    def use(self, secret: bytes) -> None:
        if len(secret) < keys.SERVER_SECRET_BYTES_MIN:
            raise InvalidInputError(
                f"the key secret must be at least {keys.SERVER_SECRET_BYTES_MIN} bytes"
            )
        self._secret = secret

    def get(self) -> bytes:
        if self._secret is None:
            self._secret = keys.server_secret(self._database)
        return self._secret


class Runtime:
    """Everything a use case reads. `loaded` is the policy in force; it changes when a policy
    is reloaded (by this process, or recorded by another one sharing the store)."""

    def __init__(
        self,
        store: Store,
        loaded: LoadedPolicy,
        *,
        clock: Clock,
        ids: IdSource = random_id,
        environment: str | None = None,
        hold_ttl_seconds: int = limits.hold_ttl_seconds,
        rails: Mapping[str, PaymentRail] | None = None,
        sleep: Callable[[float], None] = default_sleep,
        secret: ServerSecret | None = None,
        audit: AuditOptions | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.store = store
        self.loaded = loaded
        # The version recorded in the store when this process last loaded or adopted a policy:
        # a different one recorded since is another process's upload, adopted at the next read.
        self.policy_seen: str | None = loaded.policy.version if loaded.policy else None
        self.clock = clock
        self.ids = ids
        # Every deployment has an environment: production unless it says otherwise, so a key
        # or intent pinned to another environment is always checked, never waved through.
        self.environment = (environment or DEFAULT_ENVIRONMENT).lower()
        self.hold_ttl_us = hold_ttl_seconds * 1_000_000
        self.rails = Rails(rails)
        self.sleep = sleep  # between rail retries; tests pass a no-op
        self.secret = secret or ServerSecret(None)
        self.checkpoints = Checkpointer(store, audit or AuditOptions(), clock)
        self.notifier = notifier
        # Told of each decision made here, with its action and seconds taken (metrics).
        self.decision_observers: list[DecisionObserver] = []

    @property
    def policy(self) -> CompiledPolicy | None:
        return self.loaded.policy

    @property
    def redactor(self) -> Redactor:
        """The redactor of the policy in force (the built-in one without a policy)."""
        policy = self.loaded.policy
        return policy.redaction if policy is not None else DEFAULT_REDACTOR

    def now(self) -> datetime:
        return self.clock.now()

    def now_us(self) -> int:
        return to_us(self.clock.now())

    def clean_text(self, field: str, text: str) -> str:
        """Free text a caller gives (a refund, dispute, vote or halt reason) as it may be
        stored: at most `limits.free_text_bytes_max` UTF-8 bytes, no invisible characters
        (else `InvalidInputError`), and `[redacted]` when it holds a secret."""
        checked = free_text(field, text, limits.free_text_bytes_max)
        assert checked is not None
        clean, _ = self.redactor.redact(checked)
        return str(clean)

    def close(self) -> None:
        if self.notifier is not None:
            self.notifier.close()
            self.notifier = None
        self.rails.close()
        self.store.close()
