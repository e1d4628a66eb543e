"""API keys: create, authenticate and revoke the keys of agents, operators and admins.

A key is shown once, when it is created, and stored only as a keyed hash under the server
secret (`paywarden.keys`); creating and revoking a key each append an audit entry in the same
transaction as the change.
"""

from __future__ import annotations

from paywarden import keys
from paywarden.audit import records
from paywarden.errors import (
    AuthenticationError,
    InvalidInputError,
    NotFoundError,
    StateConflictError,
)
from paywarden.keys import Principal, Role
from paywarden.ports import KeyRow
from paywarden.runtime import Runtime

_IDENTIFIER_CHARS_MAX = 128


def _identifier(field: str, value: str | None) -> str | None:
    if value is None:
        return None
    plain = value.replace("-", "").replace("_", "").replace(".", "").replace("@", "")
    if len(value) > _IDENTIFIER_CHARS_MAX or not (plain.isascii() and plain.isalnum()):
        raise InvalidInputError(f"{field} `{value}` must be a short ASCII identifier")
    return value


def create_key(
    rt: Runtime,
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
    now_us = rt.now_us()
    row = KeyRow(
        key_id=new.key_id,
        prefix=new.prefix,
        digest=keys.digest(rt.secret.get(), new.secret),
        role=checked,
        agent=agent,
        operator=operator,
        environment=environment.lower() if environment else None,
        created_by=actor,
        created_us=now_us,
    )
    with rt.store.write() as tx:
        if operator is not None:
            found = tx.operators.get(operator)
            if found is None or found.disabled_us is not None:
                raise InvalidInputError(f"`{operator}` is not a registered operator")
        tx.keys.insert(row)
        records.append(tx, now_us, "key.created", row.key_id, _key_body(row, actor))
    return new.secret, row


def authenticate(rt: Runtime, secret: str) -> Principal:
    """The principal of a presented key. Unknown, malformed and revoked keys all raise the
    same `AuthenticationError`, so a caller cannot tell them apart."""
    key_id = keys.key_id_of(secret)
    with rt.store.read() as tx:
        row = tx.keys.get(key_id)
    server_secret = rt.secret.get()
    if row is None:
        keys.matches(server_secret, secret, "0" * 64)  # the same work as a real check
        raise AuthenticationError(keys.UNKNOWN_KEY)
    if not keys.matches(server_secret, secret, row.digest) or row.revoked_us is not None:
        raise AuthenticationError(keys.UNKNOWN_KEY)
    return Principal(row.key_id, row.role, row.agent, row.environment, row.operator)


def revoke_key(rt: Runtime, key_id: str, *, actor: str) -> KeyRow:
    """Revoke a key at once: the next request made with it is refused."""
    now_us = rt.now_us()
    with rt.store.write() as tx:
        row = tx.keys.get(key_id)
        if row is None:
            raise NotFoundError(f"no key `{key_id}`")
        if not tx.keys.revoke(key_id, now_us):
            raise StateConflictError(f"key `{key_id}` was already revoked")
        body = {**_key_body(row, actor), "revoked_by": actor}
        records.append(tx, now_us, "key.revoked", key_id, body)
        revoked = tx.keys.get(key_id)
    assert revoked is not None  # read back in the same transaction
    return revoked


def list_keys(rt: Runtime) -> list[KeyRow]:
    with rt.store.read() as tx:
        return tx.keys.list_all()


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
