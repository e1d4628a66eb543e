"""The gateway side of the Warden: API keys, policy reload, readiness, request idempotency
and reading the audit log.

These methods are mixed into `Warden`. Creating or revoking a key and loading (or rejecting) a
policy each append an audit entry in the same transaction as the change. Keys are stored as a
keyed hash only (see `paywarden.keys`); the key itself is returned once, by `create_key`.
"""

from __future__ import annotations

import json
from pathlib import Path

from paywarden import keys
from paywarden.audit import records
from paywarden.audit.chain import AuditEntry
from paywarden.bootstrap import LoadedPolicy, load_policy, record_version
from paywarden.clock import Clock, to_us
from paywarden.errors import (
    AuthenticationError,
    InvalidInputError,
    NotFoundError,
    StateConflictError,
    StoreError,
)
from paywarden.keys import Principal, Role
from paywarden.ports import IdempotencyRow, KeyRow, Store

_IDENTIFIER_CHARS_MAX = 128


def _identifier(field: str, value: str | None) -> str | None:
    if value is None:
        return None
    plain = value.replace("-", "").replace("_", "").replace(".", "").replace("@", "")
    if len(value) > _IDENTIFIER_CHARS_MAX or not (plain.isascii() and plain.isalnum()):
        raise InvalidInputError(f"{field} `{value}` must be a short ASCII identifier")
    return value


class KeyActions:
    """Mixed into Warden, which provides these attributes."""

    _store: Store
    _clock: Clock
    _loaded: LoadedPolicy
    _key_secret: bytes | None = None

    # Keys -------------------------------------------------------------------------------------

    def use_key_secret(self, secret: bytes) -> None:
        """Hash keys under `secret` instead of `PAYWARDEN_KEY_SECRET` or the secret file."""
        if len(secret) < keys.SERVER_SECRET_BYTES_MIN:
            raise InvalidInputError(
                f"the key secret must be at least {keys.SERVER_SECRET_BYTES_MIN} bytes"
            )
        self._key_secret = secret

    def server_secret(self) -> bytes:
        """The deployment's server secret (`PAYWARDEN_KEY_SECRET`, else the file beside the
        database): the key of API key hashes, and the root of paywarden's other keyed digests
        (request fingerprints, secret digests), each derived from it for its own purpose."""
        return self._server_secret()

    def _server_secret(self) -> bytes:
        if self._key_secret is None:
            # The SQLite store knows its file; the secret file lives beside it.
            self._key_secret = keys.server_secret(getattr(self._store, "path", None))
        return self._key_secret

    def create_key(
        self,
        *,
        role: Role | str,
        agent: str | None = None,
        operator: str | None = None,
        environment: str | None = None,
        actor: str,
    ) -> tuple[str, KeyRow]:
        """Create an API key; returns `(key, row)`. The key is shown only here, once.

        An agent key names its agent (and optionally pins an environment); an operator key
        names a registered operator; an admin key names neither.
        """
        checked = keys.parse_role(role)
        agent, operator = _identifier("agent", agent), _identifier("operator", operator)
        environment = _identifier("environment", environment)
        if (checked == "agent") != (agent is not None):
            raise InvalidInputError("an agent key needs --agent, and only an agent key has one")
        if (checked == "operator") != (operator is not None):
            raise InvalidInputError("an operator key needs --operator, and only it has one")
        new = keys.generate(environment)
        now_us = to_us(self._clock.now())
        row = KeyRow(
            key_id=new.key_id,
            prefix=new.prefix,
            digest=keys.digest(self._server_secret(), new.secret),
            role=checked,
            agent=agent,
            operator=operator,
            environment=environment.lower() if environment else None,
            created_by=actor,
            created_us=now_us,
        )
        with self._store.write() as tx:
            if operator is not None:
                found = tx.operator(operator)
                if found is None or found.disabled_us is not None:
                    raise InvalidInputError(f"`{operator}` is not a registered operator")
            tx.key_insert(row)
            records.append(tx, now_us, "key.created", row.key_id, _key_body(row, actor))
        return new.secret, row

    def authenticate(self, secret: str) -> Principal:
        """The principal of a presented key. Unknown, malformed and revoked keys all raise the
        same `AuthenticationError`, so a caller cannot tell them apart."""
        key_id = keys.key_id_of(secret)
        with self._store.read() as tx:
            row = tx.key(key_id)
        server_secret = self._server_secret()
        if row is None:
            keys.matches(server_secret, secret, "0" * 64)  # the same work as a real check
            raise AuthenticationError(keys.UNKNOWN_KEY)
        if not keys.matches(server_secret, secret, row.digest) or row.revoked_us is not None:
            raise AuthenticationError(keys.UNKNOWN_KEY)
        return Principal(row.key_id, row.role, row.agent, row.environment, row.operator)

    def revoke_key(self, key_id: str, *, actor: str) -> KeyRow:
        """Revoke a key at once: the next request made with it is refused."""
        now_us = to_us(self._clock.now())
        with self._store.write() as tx:
            row = tx.key(key_id)
            if row is None:
                raise NotFoundError(f"no key `{key_id}`")
            if not tx.key_revoke(key_id, now_us):
                raise StateConflictError(f"key `{key_id}` was already revoked")
            body = {**_key_body(row, actor), "revoked_by": actor}
            records.append(tx, now_us, "key.revoked", key_id, body)
            revoked = tx.key(key_id)
        assert revoked is not None  # read back in the same transaction
        return revoked

    def keys(self) -> list[KeyRow]:
        with self._store.read() as tx:
            return tx.keys()

    # Policy -----------------------------------------------------------------------------------

    def reload_policy(self, policy: str | Path, *, actor: str) -> LoadedPolicy:
        """Validate a new policy (YAML text or a path) and put it in force.

        A policy with errors is rejected: the rejection and its problems are audited, and the
        returned `LoadedPolicy` has `policy=None` and the report, while the previous policy
        stays in force. A valid policy with a new version is audited as `policy.loaded` in the
        same transaction that records its version, and only then used.
        """
        loaded = load_policy(policy)
        current = self._loaded.policy
        now_us = to_us(self._clock.now())
        if loaded.policy is None:
            body = _policy_body(loaded, actor, current.version if current else None)
            with self._store.write() as tx:
                ref = f"invalid:{loaded.reason_code}"
                records.append(tx, now_us, "policy.rejected", ref, body)
            return loaded
        version = loaded.policy.version
        if current is not None and current.version == version:
            self._loaded = loaded  # same rules; keep the newer source text
            return loaded
        with self._store.write() as tx:
            if tx.meta_get("policy_version") != version:  # another process may have recorded it
                body = _policy_body(loaded, actor, current.version if current else None)
                records.append(tx, now_us, "policy.loaded", version, body)
                record_version(tx, loaded)
            self._loaded = loaded  # in the same transaction: no decision between the two
        return loaded

    # Request idempotency (the REST `Idempotency-Key` header) -------------------------------

    def idempotency_begin(
        self, scope: str, key: str, fingerprint: str, stale_seconds: int
    ) -> IdempotencyRow | None:
        """Claim `key` for a request; None when claimed (go ahead), else the row that holds it:
        a finished response to replay, another request's body, or a request in progress. A
        claim left in progress longer than `stale_seconds` (a crashed request) is taken over."""
        now_us = to_us(self._clock.now())
        stale_before_us = now_us - stale_seconds * 1_000_000
        with self._store.write() as tx:
            if tx.idempotency_claim(scope, key, fingerprint, now_us, stale_before_us):
                return None
            row = tx.idempotency_get(scope, key)
        assert row is not None  # the claim failed because this row exists
        return row

    def idempotency_end(self, scope: str, key: str, status: int, body: str) -> None:
        """Store the response of a claimed request, for replay."""
        with self._store.write() as tx:
            tx.idempotency_finish(scope, key, status, body, to_us(self._clock.now()))

    def idempotency_abandon(self, scope: str, key: str) -> None:
        """Release a claim whose request failed without a response worth replaying."""
        with self._store.write() as tx:
            tx.idempotency_release(scope, key)

    # Audit reading ----------------------------------------------------------------------------

    def audit_entries(self, after_seq: int = 0, limit: int = 100) -> list[AuditEntry]:
        """Audit entries after `after_seq`, oldest first, at most `limit` (1 to 1000)."""
        with self._store.read() as tx:
            return tx.audit_entries(max(after_seq, 0), max(1, min(limit, 1000)))

    def decision_agent(self, decision_id: str) -> str:
        """The agent that asked for a decision (for object-level authorization)."""
        with self._store.read() as tx:
            body = tx.decision_body(decision_id)
        if body is None:
            raise NotFoundError(f"no decision `{decision_id}`")
        return str(json.loads(body)["intent"]["agent"])

    # Readiness --------------------------------------------------------------------------------

    def ready(self) -> list[str]:
        """Why this Warden cannot allow payments now (empty when ready): no usable policy, or a
        store that cannot be read."""
        problems = []
        if self._loaded.policy is None:
            problems.append(f"policy: {self._loaded.report.summary()}")
        try:
            with self._store.read() as tx:
                tx.meta_get("policy_version")
        except StoreError as error:
            problems.append(f"store: {error}")
        return problems


def _key_body(row: KeyRow, actor: str) -> dict[str, object]:
    """An audit body for a key: never the key or its hash."""
    return {
        "actor": actor,
        "key_id": row.key_id,
        "prefix": row.prefix,
        "role": row.role,
        "agent": row.agent,
        "operator": row.operator,
        "environment": row.environment,
    }


def _policy_body(loaded: LoadedPolicy, actor: str, previous: str | None) -> dict[str, object]:
    policy = loaded.policy
    return {
        "actor": actor,
        "source": loaded.source,
        "policy_version": policy.version if policy else f"invalid:{loaded.reason_code}",
        "previous_version": previous,
        "status": "loaded" if policy else "rejected",
        "problems": [p.format(loaded.source) for p in loaded.report.problems[:20]],
    }
