"""From an x402 payment requirement to a paywarden intent, and the signed payload's check.

A requirement is snapshotted once, at decision time, into a frozen `Requirement` (the SDK's
models are mutable): what was decided is what the signed payload must pay. Amounts are integers in
the asset's atomic units; the asset's currency and decimals come from `paywarden.assets`, never
from the server or a default.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from paywarden.assets import Asset, find_asset
from paywarden.errors import InvalidIntentError
from paywarden.intent import MetadataValue, PaymentIntent
from paywarden.money import Money

ACTION = "x402.pay"
RAIL = "x402"
_ATOMIC = re.compile(r"\A[1-9][0-9]{0,30}\Z", re.ASCII)
_SCHEMES = frozenset({"exact"})


class X402RefusedError(InvalidIntentError):
    """A requirement paywarden cannot map into an intent (unknown asset or network, x402 v1,
    a scheme the guard does not check, a malformed amount): denied, never guessed."""


class PayloadMismatchError(Exception):
    """The signed payload pays something other than what was authorized; it is never sent."""


@dataclass(frozen=True, slots=True)
class Requirement:
    """A snapshot of one `PaymentRequirements`, taken when paywarden decides on it."""

    scheme: str
    network: str
    amount: int
    asset: str
    pay_to: str
    max_timeout_seconds: int
    extra: str  # canonical JSON of `extra`
    resource: str | None

    def digest(self) -> str:
        """SHA-256 of the snapshot: the key of a logical payment (with the URL called)."""
        return _digest(self)


@functools.lru_cache(maxsize=1024)
def _digest(requirement: Requirement) -> str:
    text = json.dumps(asdict(requirement), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def snapshot(requirement: Any, resource: str | None = None) -> Requirement:
    """Copy the fields the guard decides on out of an SDK requirement (v2 only)."""
    if not _is_v2(requirement):
        raise X402RefusedError("x402 version 1 requirements are not supported; ask for v2")
    amount = str(requirement.amount)
    if not _ATOMIC.match(amount):
        raise X402RefusedError(f"x402 amount `{amount:.40}` is not a positive integer")
    extra = requirement.extra or {}
    return Requirement(
        scheme=str(requirement.scheme),
        network=str(requirement.network),
        amount=int(amount),
        asset=str(requirement.asset).lower(),
        pay_to=str(requirement.pay_to).lower(),
        max_timeout_seconds=int(requirement.max_timeout_seconds),
        extra=json.dumps(extra, sort_keys=True, separators=(",", ":"), default=str),
        resource=payee_url(resource) if resource else None,  # the server's words: no secrets
    )


def _is_v2(requirement: Any) -> bool:
    """A v2 requirement (`amount`), not v1 (`maxAmountRequired`). Pydantic models are asked
    through their declared fields: `hasattr` on a missing field raises inside, slowly."""
    fields = getattr(type(requirement), "model_fields", None)
    if isinstance(fields, dict):
        return "amount" in fields and "max_amount_required" not in fields
    return hasattr(requirement, "amount") and not hasattr(requirement, "max_amount_required")


def asset_of(requirement: Requirement) -> Asset:
    """The registered asset the requirement pays in, or `X402RefusedError`."""
    if requirement.scheme not in _SCHEMES:
        raise X402RefusedError(f"x402 scheme `{requirement.scheme:.40}` is not supported")
    asset = find_asset(requirement.network, requirement.asset)
    if asset is None:
        raise X402RefusedError(
            f"asset `{requirement.asset:.60}` on network `{requirement.network:.40}` is not in "
            "paywarden's asset registry"
        )
    return asset


def metadata_of(requirement: Requirement) -> dict[str, MetadataValue]:
    """What the audit record and the policy see of the requirement (CEL `x402_*`)."""
    return {
        "x402_scheme": requirement.scheme,
        "x402_network": requirement.network,
        "x402_asset": requirement.asset,
        "x402_pay_to": requirement.pay_to,
        "x402_resource": requirement.resource,
        "x402_requirement": requirement.digest(),
        "x402_max_timeout_seconds": requirement.max_timeout_seconds,
    }


def payee_url(url: str) -> str:
    """The URL called as the payee: scheme, host, port and path only. The user info, query and
    fragment are dropped: they may carry secrets (`?api_key=`), which the ledger and the audit
    log must never hold, and `user@host` must not pass for another host."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise X402RefusedError("a URL of this payment is not one paywarden can read") from error
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", "", ""))


def intent_for(
    requirement: Requirement,
    *,
    agent: str,
    called_url: str,
    idempotency_key: str | None = None,
    fields: Mapping[str, Any] | None = None,
) -> PaymentIntent:
    """The intent of paying `requirement` for a request to `called_url`: action `x402.pay`,
    rail `x402`, the payee the URL actually called (`payee_url`), `payTo` and the rest in
    metadata (so both are bound into the fingerprint and any approval)."""
    asset = asset_of(requirement)
    return PaymentIntent(
        agent=agent,
        action=ACTION,
        amount=Money(requirement.amount, asset.currency, asset.decimals),
        recipient=payee_url(called_url),
        rail=RAIL,
        idempotency_key=idempotency_key,
        metadata=metadata_of(requirement),
        **dict(fields or {}),
    )


def check_payload(requirement: Requirement, payload: Any, now_s: int) -> None:
    """Raise `PayloadMismatchError` unless the signed `exact` payload pays exactly
    `requirement`: the same accepted requirement, an EIP-3009 authorization to `payTo` of the
    amount, valid no longer than `maxTimeoutSeconds` (a minute of clock skew allowed)."""
    if not same_requirement(payload.accepted, requirement):
        raise PayloadMismatchError("the signed payload accepts other requirements than decided")
    inner = payload.payload if isinstance(payload.payload, dict) else {}
    authorization = inner.get("authorization")
    if not isinstance(authorization, dict):
        raise PayloadMismatchError("the signed payload carries no EIP-3009 authorization")
    if str(authorization.get("to", "")).lower() != requirement.pay_to:
        raise PayloadMismatchError("the signed authorization pays another address than payTo")
    if str(authorization.get("value")) != str(requirement.amount):
        raise PayloadMismatchError("the signed authorization moves another amount than decided")
    valid_before = int(str(authorization.get("validBefore", "0")))
    if valid_before > now_s + requirement.max_timeout_seconds + 60:
        raise PayloadMismatchError("the signed authorization outlives maxTimeoutSeconds")


def frozen(payload: Any) -> str:
    """The signed part of a payload (`payload`: the authorization and its signature) as
    canonical JSON, to compare what is sent with what was checked."""
    return json.dumps(payload.payload, sort_keys=True, separators=(",", ":"), default=str)


def same_requirement(accepted: Any, requirement: Requirement) -> bool:
    """Whether the payload's `accepted` is the snapshot decided on, field by field."""
    try:
        return (
            str(accepted.scheme) == requirement.scheme
            and str(accepted.network) == requirement.network
            and str(accepted.amount) == str(requirement.amount)
            and str(accepted.asset).lower() == requirement.asset
            and str(accepted.pay_to).lower() == requirement.pay_to
            and int(accepted.max_timeout_seconds) == requirement.max_timeout_seconds
            and (accepted.extra or {}) == json.loads(requirement.extra)
        )
    except (AttributeError, TypeError, ValueError):
        return False


def valid_before(payload: Any) -> int:
    """The EIP-3009 `validBefore` of a signed payload (0 when absent)."""
    inner = payload.payload if isinstance(payload.payload, dict) else {}
    authorization = inner.get("authorization") or {}
    try:
        return int(str(authorization.get("validBefore", "0")))
    except ValueError:
        return 0
