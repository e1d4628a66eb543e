"""The x402 client guard: paywarden decides every payment an x402 client would sign.

`X402Guard.attach(client)` turns the SDK's own spend controls off and registers four hooks and
one requirement filter on an `x402Client` or `x402ClientSync`:

1. filter (before selection): of the server's `accepts`, only options the policy would allow are
   candidates, and the cheapest of them wins (all options stay when none is allowed, so the
   refusal is decided and audited);
2. before creation: the selected requirement is snapshotted, mapped into an `x402.pay` intent and
   authorized (and held) by the Warden; deny or require_approval aborts, so nothing is signed;
3. after creation: the signed payload must pay exactly what was authorized, or the payment is
   aborted before anything is sent;
4. on a creation failure: the hold is voided;
5. on the payment response: a settlement captures the settled amount; a refusal or no
   settlement leaves the payment `unknown` with its hold, since the server holds a signed
   authorization it can settle until `validBefore` (see docs/x402.md).

The URL the agent actually called is known only to the HTTP layer: the guarded HTTP clients in
`paywarden.x402.clients` pass it in (`call`), and a payment outside such a call is refused.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from x402 import AbortResult
from x402.extensions.payment_identifier import (
    PAYMENT_IDENTIFIER,
    append_payment_identifier_to_extensions,
)

from paywarden.errors import InvalidInputError, PaywardenError
from paywarden.intent import PaymentIntent
from paywarden.money import Money
from paywarden.policy.decision import Decision
from paywarden.policy.evaluator import evaluate
from paywarden.policy.facts import EMPTY_STATE
from paywarden.rails import Receipt
from paywarden.warden import Warden
from paywarden.x402 import ledger, mapping
from paywarden.x402.mapping import Requirement, X402RefusedError

_log = logging.getLogger("paywarden.x402")
_INTENTS_CACHED_MAX = 256
# A chain's block time may trail this clock: an authorization is in doubt this much past its
# `validBefore` too (the same minute of skew the payload check allows).
_CHAIN_SKEW_SECONDS = 60


class PaymentNotRecordedError(Exception):
    """The ledger would not take the signed payment (hold expired, `x402` breaker open); the
    payload is never sent."""


@dataclass(slots=True)
class Entry:
    """One logical payment: its key, the snapshot decided on, the decision and the payload."""

    key: str
    requirement: Requirement
    decision: Decision
    intent: PaymentIntent
    payment_id: str | None = None  # once recorded on the `x402` rail
    payload: Any = None
    checked: str = ""  # the signed part of the payload as checked (`mapping.frozen`)
    valid_before: int = 0
    state: str = "authorized"  # signed, settled, pending, unknown, voided
    settled_minor: int | None = None


@dataclass(slots=True)
class Call:
    """One guarded HTTP request that was answered 402."""

    url: str
    entry: Entry | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_CALL: ContextVar[Call | None] = ContextVar("paywarden_x402_call", default=None)


class X402Guard:
    """Guards the payments of one agent through one Warden (see the module docstring).

    `fields` are extra intent fields (`environment`, `session_id`, `category`, `purpose`).
    A signed payload is reused for a retry of the same request with the same requirements
    while it stays valid for `reuse_margin_seconds` more.
    """

    def __init__(
        self,
        warden: Warden,
        *,
        agent: str,
        fields: Mapping[str, Any] | None = None,
        reuse_margin_seconds: int = 30,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.warden = warden
        self.agent = agent
        self.fields = dict(fields or {})
        self.reuse_margin_seconds = reuse_margin_seconds
        self._now = now
        self._entries: dict[tuple[str, str], Entry] = {}
        self._intents: dict[tuple[str, str], PaymentIntent] = {}
        self._lock = threading.Lock()

    # Wiring -------------------------------------------------------------------------------

    def attach(self, client: Any) -> Any:
        """Register the guard on an `x402Client` / `x402ClientSync`; returns the client. A
        client is guarded by one guard, once: attaching it again is a no-op, and to another
        guard a `ValueError` (two guards would decide and hold every payment twice)."""
        owner = getattr(client, "_paywarden_guard", None)
        if owner is self:
            return client
        if owner is not None:
            raise ValueError("this x402 client is already guarded by another X402Guard")
        client._paywarden_guard = self
        client.set_spend_controls(False)
        client.register_extension(PaymentIdentifier())
        client.register_policy(self.candidates)
        client.on_before_payment_creation(self.before_creation)
        client.on_after_payment_creation(self.after_creation)
        client.on_payment_creation_failure(self.creation_failed)
        client.on_payment_response(self.payment_response)
        return client

    @contextmanager
    def call(self, url: str) -> Iterator[Call]:
        """Mark the request to `url` as the one being paid for (the HTTP clients do this)."""
        current = Call(url)
        token = _CALL.set(current)
        try:
            yield current
        finally:
            _CALL.reset(token)
            self.finish(current)

    def entries(self) -> list[Entry]:
        """Open payments: authorized, signed, pending or unknown (not yet settled or voided)."""
        with self._lock:
            return list(self._entries.values())

    # The requirement filter -------------------------------------------------------------------

    def candidates(self, version: int, requirements: list[Any]) -> list[Any]:
        """The cheapest option the policy's rules would allow (budgets are checked when it is
        authorized); all options when none is, so the refusal is decided and audited."""
        current = _CALL.get()
        policy = self.warden.policy
        if version != 2 or current is None or policy is None or len(requirements) < 2:
            return requirements
        now = self.warden.runtime.now()
        ranked: list[tuple[tuple[int, Fraction, int], Any]] = []
        for index, requirement in enumerate(requirements):
            try:
                intent = self._intent(mapping.snapshot(requirement), current.url, None)
            except (X402RefusedError, PaywardenError):
                continue
            if evaluate(policy, intent, EMPTY_STATE, now).outcome == "deny":
                continue
            ranked.append(((*_price(self.warden, intent.amount), index), requirement))
        if not ranked:
            return requirements
        return [min(ranked, key=lambda pair: pair[0])[1]]

    # The hooks --------------------------------------------------------------------------------

    def before_creation(self, ctx: Any) -> AbortResult | None:
        """Authorize (and hold) the selected requirement; abort unless allowed."""
        current = _CALL.get()
        if current is None:
            return AbortResult("x402_unguarded_call", "use a paywarden.x402 guarded client")
        resource = getattr(getattr(ctx.payment_required, "resource", None), "url", None)
        try:
            requirement = mapping.snapshot(ctx.selected_requirements, resource)
            slot = (current.url, requirement.digest())
            with self._lock:
                previous = self._entries.get(slot)
            key = previous.key if previous is not None else _new_key()
            intent = self._intent(requirement, current.url, key)
        except InvalidInputError as error:
            self._refuse(current.url, error)
            return AbortResult(error.code, f"{error} (decision {error.decision_id})")
        if previous is not None and previous.state != "authorized":
            if previous.valid_before + _CHAIN_SKEW_SECONDS > int(self._now()):
                # It was sent and may still settle: a new signature could pay twice.
                return AbortResult("x402_payment_in_doubt", f"payment {key} may still settle")
            # Expired: it can no longer settle, and stays `unknown` in the ledger for an
            # operator; this is a new payment (a new key, decision and hold).
            previous, key = None, _new_key()
            intent = intent.with_fields(idempotency_key=key)
        decision = self.warden.authorize(intent)
        if not decision.allowed:
            with self._lock:
                self._entries.pop(slot, None)  # a new try is a new decision (and approval)
            detail = f" approval {decision.approval_id}" if decision.approval_id else ""
            return AbortResult(
                decision.reason_code,
                f"{decision.reason} (decision {decision.decision_id}{detail})",
            )
        entry = previous if previous is not None else Entry(key, requirement, decision, intent)
        entry.decision = decision
        with self._lock:
            self._entries[slot] = entry
        current.entry = entry
        return None

    def after_creation(self, ctx: Any) -> None:
        """Check the signed payload against the snapshot; raise (so nothing is sent) if not."""
        entry = self._entry()
        mapping.check_payload(entry.requirement, ctx.payment_payload, int(self._now()))
        row, send = ledger.record(self.warden, entry.decision, entry.intent)
        entry.payment_id = row.payment_id
        if not send:
            entry.state = "voided"
            raise PaymentNotRecordedError(f"x402 payment not sent: {row.error}")
        entry.payload = ctx.payment_payload
        entry.checked = mapping.frozen(ctx.payment_payload)
        entry.valid_before = mapping.valid_before(ctx.payment_payload)
        entry.state = "signed"

    def creation_failed(self, ctx: Any) -> None:
        """Signing failed or the payload was refused: release the hold."""
        current = _CALL.get()
        if current is not None and current.entry is not None:
            self._void(current.url, current.entry, "x402 payment not created")

    def payment_response(self, ctx: Any) -> None:
        """Capture what the facilitator settled, void what it refused, keep what is pending."""
        current = _CALL.get()
        if current is None or current.entry is None:
            return
        entry, answer = current.entry, ctx.settle_response
        if answer is not None and answer.success:
            self._settle(current.url, entry, Receipt("settled", answer.transaction or None))
            if answer.amount is not None and answer.amount != str(entry.requirement.amount):
                _log.error(
                    "x402 %s settled %s, not the authorized amount", entry.key, answer.amount
                )
        elif answer is not None and answer.error_reason == "settlement_pending":
            self._settle(current.url, entry, Receipt("pending", answer.transaction or None))
        else:
            reason = answer.error_reason if answer is not None else "payment refused (402)"
            # A refusal proves nothing: the server holds a signed authorization it can still
            # settle until `validBefore` (a hostile one refuses and settles anyway; a resent
            # payload may have settled the first time). The hold stays: never released.
            self._settle(current.url, entry, Receipt("unknown", error=f"x402 refused: {reason}"))

    # Reuse and the end of a call --------------------------------------------------------------

    def sent_as_checked(self, payload: Any) -> Any:
        """The payload about to be sent, if it pays what `after_creation` checked (later hooks
        and client extensions may change only `extensions`); else the payment is failed in the
        ledger and nothing is sent."""
        current = _CALL.get()
        entry = current.entry if current is not None else None
        if current is None or entry is None or entry.payload is None:
            # Not checked: created outside a decision, or recovered by another failure hook
            # after `after_creation` refused it.
            self.not_sent(current)
            raise mapping.PayloadMismatchError("a payload paywarden did not check is not sent")
        # Compared by value, never by identity: a hook that ran after `after_creation` may
        # have changed the very object that was checked.
        same = mapping.frozen(payload) == entry.checked
        if not same or not mapping.same_requirement(payload.accepted, entry.requirement):
            self._settle(current.url, entry, Receipt("failed", error="payload changed after check"))
            raise mapping.PayloadMismatchError("a client hook changed the signed payload")
        entry.payload = payload
        return payload

    def not_sent(self, current: Call | None) -> None:
        """Creating the payload failed before it could leave (a client extension raised, the
        payload was refused): a recorded payment is failed, a bare hold voided."""
        entry = current.entry if current is not None else None
        if current is None or entry is None:
            return
        if entry.state == "signed":
            self._settle(current.url, entry, Receipt("failed", error="x402 payload not sent"))
        elif entry.state == "authorized":
            self._void(current.url, entry, "x402 payload not sent")

    def reusable(self, url: str, payment_required: Any) -> Entry | None:
        """A signed payload for the same URL and one of the same requirements that was sent
        without a known outcome, still valid: a retry sends it again instead of a new one."""
        if not self._entries:
            return None  # nothing open: nothing to resend
        resource = getattr(getattr(payment_required, "resource", None), "url", None)
        deadline = int(self._now()) + self.reuse_margin_seconds
        for requirement in getattr(payment_required, "accepts", ()):
            try:
                slot = (url, mapping.snapshot(requirement, resource).digest())
            except X402RefusedError:
                continue
            with self._lock:
                entry = self._entries.get(slot)
            usable = entry is not None and entry.state in ("signed", "unknown", "pending")
            if usable and entry is not None and entry.valid_before > deadline:
                return entry
        return None

    def finish(self, current: Call) -> None:
        """A payment sent without a settlement answer stays `unknown` with its hold; a hold
        taken for a payload never signed (another hook aborted) is voided."""
        entry = current.entry
        if entry is not None and entry.state == "authorized":
            self._void(current.url, entry, "x402 payment not created")
        if entry is not None and entry.state == "signed":
            self._settle(current.url, entry, Receipt("unknown", error="no settlement response"))
            _log.warning(
                "x402 payment %s to %s has no settlement answer; its hold %s stays open",
                entry.key,
                mapping.payee_url(current.url),
                entry.decision.hold_id,
            )

    # Internals --------------------------------------------------------------------------------

    def _intent(self, requirement: Requirement, url: str, key: str | None) -> PaymentIntent:
        """The intent for `requirement` at `url`, validated once per pair (then only the
        idempotency key, which the guard makes itself, changes)."""
        slot = (url, requirement.digest())
        with self._lock:
            base = self._intents.get(slot)
        if base is None:
            base = mapping.intent_for(
                requirement, agent=self.agent, called_url=url, fields=self.fields
            )
            with self._lock:
                if len(self._intents) >= _INTENTS_CACHED_MAX:
                    self._intents.pop(next(iter(self._intents)))
                self._intents[slot] = base
        return base if key is None else base.with_fields(idempotency_key=key)

    def _entry(self) -> Entry:
        current = _CALL.get()
        if current is None or current.entry is None:
            raise mapping.PayloadMismatchError("a payload was signed without a paywarden decision")
        return current.entry

    def _refuse(self, url: str, error: InvalidInputError) -> None:
        try:
            recipient = mapping.payee_url(url)
        except X402RefusedError:
            recipient = "unreadable-url"
        fields = {"agent": self.agent, "action": mapping.ACTION, "recipient": recipient}
        self.warden.refuse(agent=self.agent, fields=fields, error=error)

    def _settle(self, url: str, entry: Entry, receipt: Receipt) -> None:
        """Apply the server's answer to the recorded payment (it captures or voids the hold)."""
        row = ledger.settle(self.warden, str(entry.payment_id), receipt)
        entry.state = {"settled": "settled", "failed": "voided"}.get(row.state, row.state)
        if receipt.status == "pending":
            entry.state = "pending"
        if entry.state in ("settled", "voided"):
            self._forget(url, entry)

    def _void(self, url: str, entry: Entry, why: str) -> None:
        if entry.state in ("settled", "voided") or entry.payment_id is not None:
            self._forget(url, entry)
            return  # nothing held any more, or the payment's own state releases it
        try:
            self.warden.void(str(entry.decision.hold_id), actor=f"agent:{self.agent}")
        except PaywardenError as error:  # already resolved (expired): nothing is held
            _log.info("x402 hold %s not voided (%s): %s", entry.decision.hold_id, why, error)
        entry.state = "voided"
        self._forget(url, entry)

    def _forget(self, url: str, entry: Entry) -> None:
        with self._lock:
            self._entries.pop((url, entry.requirement.digest()), None)


class PaymentIdentifier:
    """The `payment-identifier` extension, when the server declares it: the payment's logical
    key travels as its id, so a resent payload is recognised as the same payment."""

    key = PAYMENT_IDENTIFIER

    def enrich_payment_payload(self, payload: Any, payment_required: Any) -> Any:
        current = _CALL.get()
        declared = getattr(payment_required, "extensions", None) or {}
        if current is None or current.entry is None or PAYMENT_IDENTIFIER not in declared:
            return payload
        extensions = dict(payload.extensions or declared)
        append_payment_identifier_to_extensions(extensions, current.entry.key)
        return payload.model_copy(update={"extensions": extensions})


def _new_key() -> str:
    return f"x402_{secrets.token_hex(16)}"


def _price(warden: Warden, amount: Money) -> tuple[int, Fraction]:
    """Sort key of a price: its value in the policy's currency when `fx` converts it."""
    policy = warden.policy
    if policy is None:
        return (1, Fraction(amount.amount_minor))
    target = policy.currency
    value = policy.fx.convert_minor(
        amount.amount_minor,
        amount.currency,
        amount.exponent,
        target,
        policy.currencies.exponent(target),
    )
    return (1, Fraction(amount.amount_minor)) if value is None else (0, value)
