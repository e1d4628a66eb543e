"""Gateway settings: defaults, then a config file (TOML or YAML), then `PAYWARDEN_*` variables,
then command-line options. Read once, then frozen. An unknown key or a value of the wrong type
refuses to start, because a typo in a security setting must not be silently ignored.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from paywarden import limits
from paywarden.errors import InvalidInputError

ENV_PREFIX = "PAYWARDEN_"
CONFIG_ENV = "PAYWARDEN_CONFIG"
# Settings that name files; a relative path in a config file is relative to that file.
PATH_SETTINGS = (
    "database",
    "policy",
    "audit_signing_key",
    "audit_checkpoint_dir",
    "ap2_trusted_keys",
)
# The longest header, body or keep-alive timeout: longer ones would let idle clients hold
# connections for hours.
HTTP_TIMEOUT_SECONDS_MAX = 3600
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `paywarden serve` needs. The API key secret is not here: it comes from
    `PAYWARDEN_KEY_SECRET` or the file beside the database (see `paywarden.keys`)."""

    host: str = "127.0.0.1"
    port: int = 8000
    database: str = "paywarden.db"
    policy: str | None = None
    environment: str | None = None
    # Audit checkpoints: the Ed25519 key that signs them (`paywarden audit keygen`; never in
    # the store), where signed checkpoints are written, and every how many entries.
    audit_signing_key: str | None = None
    audit_checkpoint_dir: str | None = None
    audit_checkpoint_every: int = 1000
    hold_ttl_seconds: int = limits.hold_ttl_seconds
    busy_timeout_seconds: float = limits.store_busy_timeout_seconds
    # How often the policy file is checked for changes (0 turns the watch off).
    policy_poll_seconds: float = 2.0
    # Request bodies above this are refused with 413 before they are parsed.
    body_bytes_max: int = 65_536
    # A request left in progress this long under an Idempotency-Key (its process crashed) may
    # be retried; the Warden's own idempotency still prevents a second payment.
    idempotency_stale_seconds: int = 120
    reconcile_on_start: bool = True
    workers: int = 1
    log_level: str = "info"
    access_log: bool = True
    # Open connections (idle ones included) above this get 503 for each request until some close.
    connections_max: int = 1000
    # A request's line and headers must arrive within this time of its first byte (or of the
    # connection opening), else the connection is closed: a slow client cannot hold it.
    header_timeout_seconds: float = 10.0
    # A request's whole body must arrive within this time of its headers, else 408.
    body_timeout_seconds: float = 30.0
    # An idle keep-alive connection is closed after this many seconds without a new request.
    keep_alive_timeout_seconds: int = 5
    # A write (not GET, HEAD or OPTIONS) under /v1/ gets 503 with Retry-After, before it is
    # taken, while this many writes or more wait for the store (0: never refused).
    store_backlog_max: int = 256
    # MCP over HTTP: open sessions one API key may hold, and how long an idle one lives.
    mcp_sessions_per_key_max: int = 16
    mcp_session_idle_seconds: float = 1800.0
    # `GET /metrics` (Prometheus text, operator or admin key); off: 404 and nothing counted.
    metrics_enabled: bool = True
    # `text` (one line per record) or `json` (one JSON object per line) for every log record.
    log_format: str = "text"
    # The operator console (/console): the URL people open it at (`https://...` marks its
    # session cookie `Secure` and is the only origin whose form posts count), the proxies whose
    # `X-Forwarded-Proto`/`X-Forwarded-For` count (comma-separated IPs), and how long a
    # signed-in session lives idle and at most.
    public_url: str | None = None
    trusted_proxies: str = ""
    console_session_idle_seconds: int = 1800
    console_session_max_seconds: int = 43_200
    # AP2 mandates (docs/ap2.md, the `ap2` extra): the audience agents' mandates must name, and
    # a JSON file of the trusted issuer keys ({kid: public JWK}); both unset: no verifier.
    ap2_audience: str | None = None
    ap2_trusted_keys: str | None = None
    ap2_skew_seconds: int = 300

    def with_values(self, values: Mapping[str, object]) -> Settings:
        """A copy with `values` (already typed) applied; None values are skipped."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInputError(f"unknown setting(s): {', '.join(unknown)}")
        changes = {name: value for name, value in values.items() if value is not None}
        return dataclasses.replace(self, **_typed(changes))

    def to_environ(self) -> dict[str, str]:
        """The settings as `PAYWARDEN_*` variables (how worker processes receive them)."""
        result = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value is not None:
                result[ENV_PREFIX + item.name.upper()] = _text(value)
        return result


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _typed(values: Mapping[str, object]) -> dict[str, Any]:
    kinds = {f.name: f.type for f in fields(Settings)}
    result: dict[str, Any] = {}
    for name, value in values.items():
        kind = str(kinds[name])
        try:
            result[name] = _convert(kind, value)
        except (TypeError, ValueError) as error:
            raise InvalidInputError(f"setting `{name}`: {error}") from None
    return result


def _convert(kind: str, value: object) -> object:
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise ValueError(f"`{value}` is not a boolean")
        return text in ("true", "1", "yes", "on")
    if kind == "int":
        if isinstance(value, bool | float):
            raise ValueError(f"`{value}` is not an integer")
        return int(str(value))
    if kind == "float":
        if isinstance(value, bool):
            raise ValueError(f"`{value}` is not a number")
        return float(str(value))
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ValueError(f"`{value}` is not text")
    return str(value)


def read_config(path: str | Path) -> dict[str, object]:
    """The settings in a TOML (`.toml`) or YAML file, paths made relative to the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"cannot read config `{path}`: {error}") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        raise InvalidInputError(f"config `{path}` is not valid: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidInputError(f"config `{path}` must be a table of settings")
    for name in PATH_SETTINGS:
        value = data.get(name)
        if (
            isinstance(value, str)
            and value != ":memory:"
            and "://" not in value  # a database URL (postgresql://...) is no file
            and not Path(value).is_absolute()
        ):
            data[name] = str(path.parent / value)
    return data


def from_environ(environ: Mapping[str, str]) -> dict[str, object]:
    """The settings named by `PAYWARDEN_<NAME>` variables."""
    known = {f.name for f in fields(Settings)}
    return {
        name: environ[ENV_PREFIX + name.upper()]
        for name in known
        if ENV_PREFIX + name.upper() in environ
    }


def load_settings(
    config: str | Path | None = None,
    environ: Mapping[str, str] = os.environ,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """Defaults < config file (`config`, else `PAYWARDEN_CONFIG`) < environment < overrides."""
    settings = Settings()
    config = config or environ.get(CONFIG_ENV) or None
    if config is not None:
        settings = settings.with_values(read_config(config))
    settings = settings.with_values(from_environ(environ))
    settings = settings.with_values(overrides or {})
    if not 0 <= settings.port < 65_536:  # 0: the system picks a free port
        raise InvalidInputError(f"setting `port`: {settings.port} is not a TCP port")
    if settings.workers < 1 or settings.body_bytes_max < 1024:
        raise InvalidInputError("settings `workers` >= 1 and `body_bytes_max` >= 1024")
    _check_http_limits(settings)
    _check_audit(settings)
    _check_ap2(settings)
    return settings


def _check_ap2(settings: Settings) -> None:
    """AP2 verification needs both the audience and the trusted keys, and a positive skew; a
    half-configured gateway refuses to start instead of denying every mandate later."""
    audience, keys = settings.ap2_audience, settings.ap2_trusted_keys
    if (audience is None) != (keys is None):
        raise InvalidInputError("settings `ap2_audience` and `ap2_trusted_keys` go together")
    if keys is not None and not Path(keys).is_file():
        raise InvalidInputError(f"setting `ap2_trusted_keys`: no file at `{keys}`")
    if not 0 <= settings.ap2_skew_seconds <= HTTP_TIMEOUT_SECONDS_MAX:
        raise InvalidInputError(
            f"setting `ap2_skew_seconds`: {settings.ap2_skew_seconds} is not from 0 to 3600"
        )


def _check_audit(settings: Settings) -> None:
    if settings.audit_checkpoint_every < 1:
        raise InvalidInputError(
            f"setting `audit_checkpoint_every`: {settings.audit_checkpoint_every} is not at least 1"
        )
    key = settings.audit_signing_key
    if key is not None and not Path(key).is_file():
        raise InvalidInputError(f"setting `audit_signing_key`: no key file at `{key}`")


def _check_console(settings: Settings) -> None:
    url = settings.public_url
    parts = urlsplit(url) if url is not None else None
    if parts is not None and (parts.scheme not in ("http", "https") or not parts.netloc):
        raise InvalidInputError(f"setting `public_url`: `{url}` is not an http(s) URL")
    for item in filter(None, (part.strip() for part in settings.trusted_proxies.split(","))):
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise InvalidInputError(
                f"setting `trusted_proxies`: `{item}` is not an IP address or network"
            ) from None
    for name in ("console_session_idle_seconds", "console_session_max_seconds"):
        if getattr(settings, name) < 1:
            value = getattr(settings, name)
            raise InvalidInputError(f"setting `{name}`: {value} is not at least 1")


def _check_http_limits(settings: Settings) -> None:
    for name in ("connections_max", "mcp_sessions_per_key_max"):
        if getattr(settings, name) < 1:
            raise InvalidInputError(
                f"setting `{name}`: {getattr(settings, name)} is not at least 1"
            )
    if settings.store_backlog_max < 0:
        raise InvalidInputError(
            f"setting `store_backlog_max`: {settings.store_backlog_max} is not at least 0"
        )
    if settings.log_format not in LOG_FORMATS:
        raise InvalidInputError(
            f"setting `log_format`: `{settings.log_format}` is not one of {', '.join(LOG_FORMATS)}"
        )
    _check_console(settings)
    if not settings.mcp_session_idle_seconds > 0:
        raise InvalidInputError(
            f"setting `mcp_session_idle_seconds`: {settings.mcp_session_idle_seconds} is not "
            "more than 0"
        )
    for name in ("header_timeout_seconds", "body_timeout_seconds", "keep_alive_timeout_seconds"):
        value = getattr(settings, name)
        if not 0 < value <= HTTP_TIMEOUT_SECONDS_MAX:
            raise InvalidInputError(
                f"setting `{name}`: {value} is not more than 0 and at most "
                f"{HTTP_TIMEOUT_SECONDS_MAX} seconds"
            )
