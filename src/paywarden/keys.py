"""API keys: who is calling, in which role, and for which agent.

A key is shown once, when it is created, and stored only as a keyed hash: HMAC-SHA256 under a
server secret that lives outside the database (the `PAYWARDEN_KEY_SECRET` environment variable,
else a 0600 file beside the database). A stolen database therefore yields no usable key and no
way to test guesses offline. Keys carry a non-secret id, so a lookup is one primary-key read
followed by one constant-time comparison.

The format is `pw_<environment>_<key id>_<secret>`: the environment makes a production key
easy to spot in a log or a paste, the 12 hex digits of the key id find the row, and the 48 hex
digits of the secret (192 bits from `secrets`) are what cannot be guessed.

Roles: an `agent` key acts as exactly one agent in one environment (the agent and environment
of every intent come from the key, never from the request body); an `operator` key acts as one
registered human operator, so every approval is attributed to a person; an `admin` key manages
keys and policy.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, get_args

from paywarden.errors import AuthenticationError, InvalidInputError, StoreError

Role = Literal["agent", "operator", "admin"]
ROLES: Final[tuple[Role, ...]] = get_args(Role)

KEY_PREFIX: Final = "pw"
KEY_ID_HEX_CHARS: Final = 12
SECRET_HEX_CHARS: Final = 48  # 192 bits
SERVER_SECRET_BYTES_MIN: Final = 32
SECRET_ENV: Final = "PAYWARDEN_KEY_SECRET"
SECRET_FILE_SUFFIX: Final = ".keysecret"

_KEY = re.compile(
    rf"^{KEY_PREFIX}_(?P<env>[a-z0-9-]{{1,32}})_(?P<id>[0-9a-f]{{{KEY_ID_HEX_CHARS}}})"
    rf"_(?P<secret>[0-9a-f]{{{SECRET_HEX_CHARS}}})$"
)
_ENV_TAG = re.compile(r"[^a-z0-9-]+")
# Every failure reads the same, so a caller cannot tell an unknown key from a revoked one.
UNKNOWN_KEY: Final = "invalid or revoked API key"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller. `agent` is set for agent keys, `operator` for operator keys."""

    key_id: str
    role: Role
    agent: str | None
    environment: str | None
    operator: str | None = None

    @property
    def actor(self) -> str:
        """How the audit log names this caller: `agent:A`, `operator:O` or `admin:key_...`."""
        if self.role == "agent":
            return f"agent:{self.agent}"
        if self.role == "operator":
            return f"operator:{self.operator}"
        return f"admin:{self.key_id}"


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly generated key: the full text (shown once), its id and its stored hash."""

    secret: str
    key_id: str
    prefix: str  # the non-secret head, `pw_<env>_<id>`, safe to show in listings


def parse_role(value: str) -> Role:
    for role in ROLES:
        if value == role:
            return role
    raise InvalidInputError(f"role `{value}` must be one of {', '.join(ROLES)}")


def generate(environment: str | None) -> NewKey:
    tag = _ENV_TAG.sub("-", (environment or "live").lower()).strip("-")[:32] or "live"
    hex_id = secrets.token_hex(KEY_ID_HEX_CHARS // 2)
    prefix = f"{KEY_PREFIX}_{tag}_{hex_id}"
    return NewKey(f"{prefix}_{secrets.token_hex(SECRET_HEX_CHARS // 2)}", f"key_{hex_id}", prefix)


def key_id_of(secret: str) -> str:
    """The key id named inside a presented key; AuthenticationError when it is malformed."""
    match = _KEY.match(secret)
    if match is None:
        raise AuthenticationError(UNKNOWN_KEY)
    return f"key_{match.group('id')}"


def digest(server_secret: bytes, secret: str) -> str:
    """The keyed hash stored for a key."""
    return hmac.new(server_secret, secret.encode("ascii"), hashlib.sha256).hexdigest()


def matches(server_secret: bytes, secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(server_secret, secret), stored_digest)


# The server secret ----------------------------------------------------------------------------


def secret_file(database: str | Path) -> Path:
    return Path(f"{database}{SECRET_FILE_SUFFIX}")


def server_secret(database: str | Path | None, environ: Mapping[str, str] = os.environ) -> bytes:
    """The HMAC key for API key hashes.

    `PAYWARDEN_KEY_SECRET` (at least 32 characters) wins. Otherwise the secret is read from
    `<database>.keysecret`, created with 32 random bytes and mode 0600 on first use. An
    in-memory database gets a random secret for this process only (its keys die with it).
    """
    configured = environ.get(SECRET_ENV)
    if configured is not None:
        if len(configured) < SERVER_SECRET_BYTES_MIN:
            raise InvalidInputError(
                f"{SECRET_ENV} must be at least {SERVER_SECRET_BYTES_MIN} characters"
            )
        return configured.encode("utf-8")
    if database is None or str(database) == ":memory:":
        return secrets.token_bytes(SERVER_SECRET_BYTES_MIN)
    return _secret_from_file(secret_file(database))


def _secret_from_file(path: Path) -> bytes:
    """Read the secret file, creating it atomically (a complete file or none) if absent."""
    if path.exists():
        return _read_secret(path)
    temporary = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(SERVER_SECRET_BYTES_MIN) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process created it first
            os.link(temporary, path)
    except OSError as error:
        raise StoreError(f"cannot create the key secret file `{path}`: {error}") from error
    finally:
        temporary.unlink(missing_ok=True)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise StoreError(f"cannot read the key secret file `{path}`: {error}") from error
    if len(text) < SERVER_SECRET_BYTES_MIN:
        raise StoreError(f"the key secret file `{path}` is empty or too short")
    return text.encode("ascii")
