"""The Stripe rail: charges, vendor payouts and refunds on the official `stripe` SDK.

`StripeRail()` with no arguments (what `load_rail("stripe")` does) reads `STRIPE_API_KEY`
(required: a secret `sk_...` or restricted `rk_...` key) and `PAYWARDEN_STRIPE_API_BASE`
(optional: another API base, such as a fake Stripe server in tests). Arguments win over the
environment. The rail uses its own `stripe.StripeClient`, never the SDK's global settings.

Where money goes comes from the deployment, never from the intent. The rail pays exactly the
canonical payee every check saw, through routes an operator configures (`routes=`, or a YAML
or JSON file named by `PAYWARDEN_STRIPE_ROUTES`):

```yaml
payees:                       # by payee, as paywarden canonicalises it
  acct_1VendorXyZ: {}         # transfers go to this connected account itself
  vendor.example.com: {destination: acct_1VendorXyZ}
  shop.example.com: {}        # charges settle in this (the platform's) account
agents:                       # what each agent may charge
  research-01: {customer: cus_123, payment_method: pm_456}
allow_any_connected_account: false   # true: any `acct_...` payee needs no entry of its own
```

Which Stripe object a payment becomes:

- a Transfer (`POST /v1/transfers`) when the payee is a connected account (`acct_...`) or the
  action contains `payout` or `transfer`; `destination` is the payee's route `destination`,
  else the payee itself when it is an `acct_...` id;
- otherwise a PaymentIntent (`POST /v1/payment_intents`) with `confirm=true`, the agent's
  route `payment_method` and `customer`, `off_session=true` with a customer (a saved payment
  method charged while the customer is away), else `error_on_requires_action=true`; redirect-
  based payment methods are never allowed; with a payee route `destination`, a destination
  charge (`transfer_data[destination]`).

A payee with no route, a charge by an agent with no route, or an amount Stripe cannot take
exactly is refused by `check` before paywarden holds any money (reason code `rail_refused`).
The agent's metadata is never read for any of this.

Amounts are integer minor units already; they are converted only where Stripe's unit differs
from ISO 4217 (ISK is two-decimal in Stripe's API, MGA zero-decimal) and refused, never rounded,
when they cannot be sent exactly (three-decimal amounts must end in 0 on Stripe). The currency is
sent in lower case. Every object carries metadata `paywarden_payment_id` and `paywarden_key`.

Every create sends `Idempotency-Key`: the payment's rail key (`pw_<hold id>`) for the charge or
transfer, on the first try, on the SDK's own retries (`max_network_retries`), on paywarden's
retries and on reconciliation; the refund key for a refund. Stripe stores the first result of a
key and replays it, so no retry can move money twice.

Receipts:

- settled: PaymentIntent `succeeded`, transfer created, refund `succeeded`, reversal created;
- pending: PaymentIntent `processing` or `requires_capture`, refund `pending`;
- failed: PaymentIntent `requires_payment_method` or `canceled`; `requires_action` or
  `requires_confirmation` once the rail has canceled it (an agent cannot do 3-D Secure; unknown
  if the cancel fails); a `CardError` (the endpoint ran and declined; the decline code is kept);
  `InvalidRequestError`, `AuthenticationError`, `PermissionError`;
- failed and retryable: `RateLimitError` (429) and a connection that was never made, since
  Stripe ran nothing;
- unknown: a connection error or timeout after sending, any 5xx, a 409 (another request with
  this key is running), an `IdempotencyError` (the key ran with other parameters), and any error
  but a decline after an earlier attempt of the same call (an SDK retry) was ambiguous.

`status(payment)` finds the Stripe object without creating anything when it can: by
`rail_payment_id`, else by the Search API for PaymentIntents (metadata `paywarden_key`; a hit is
read again by id, as search results lag) or the transfer list filtered by `transfer_group` (the
rail key). When nothing is found it sends
the same create again with the same key: a lookup can never prove a payment absent (search lags
up to a minute, an hour in an outage, and the original request may still be running), but the
key can. If the original ran, Stripe replays it; if it is still running, Stripe answers 409
(unknown, asked again later); if it never arrived, the payment is made now, once. A lookup
error, search unavailable included, answers unknown and sends nothing, and so does a re-send the
routes now refuse (changed since the payment was made). The one gap: Stripe may
forget a key after 24 hours, so a payment older than that which neither the search nor the list
can see could be paid again; search sees objects within a minute.

`refund(payment, amount_minor, refund_key)` refunds a PaymentIntent through the Refunds API and a
transfer through a transfer reversal, with `refund_key` as the idempotency key and in metadata
`paywarden_refund_key`. It first lists the payment's refunds (or reversals) for one made with
that key and, if there is one, answers with its state now instead of sending again: a re-sent
refund is never made twice, even after Stripe forgot the key, and a `pending` one is seen to
settle. A failed lookup answers unknown (an earlier attempt may have refunded). It never creates
a payment: with no Stripe object found for the payment, nothing is refunded.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from dataclasses import replace as dataclass_replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
import stripe
import urllib3
import yaml
from stripe.params import (
    PaymentIntentCreateParams,
    RefundCreateParams,
    TransferCreateParams,
    TransferReversalCreateParams,
)

from paywarden.errors import InvalidInputError
from paywarden.money import ISO_4217_EXPONENTS
from paywarden.payee import Payee, parse_payee
from paywarden.rails import RailPayment, Receipt

API_KEY_ENV = "STRIPE_API_KEY"
API_BASE_ENV = "PAYWARDEN_STRIPE_API_BASE"
ROUTES_ENV = "PAYWARDEN_STRIPE_ROUTES"
# The keys each section's routes take, with the prefix of the Stripe id each one names.
_PAYEE_FIELDS = {"destination": "acct_"}
_AGENT_FIELDS = {"customer": "cus_", "payment_method": "pm_"}

# Stripe's unit for API amounts (docs.stripe.com/currencies): zero-decimal and three-decimal
# currencies are listed; every other currency is two-decimal in the API, ISK included (ISO 4217
# gives ISK no decimals, Stripe keeps two: 100 is 1 krona), while MGA is zero-decimal in Stripe.
_STRIPE_ZERO_DECIMAL = "BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF"
STRIPE_ZERO_DECIMAL = frozenset(_STRIPE_ZERO_DECIMAL.split(" "))
STRIPE_THREE_DECIMAL = frozenset(("BHD", "JOD", "KWD", "OMR", "TND"))
_ERROR_CHARS_MAX = 500

Attempt = Literal["answered", "ambiguous", "not_sent"]
StripeObject = stripe.PaymentIntent | stripe.Transfer


def stripe_amount(amount_minor: int, currency: str) -> int:
    """The `amount` Stripe expects for `amount_minor` ISO 4217 minor units of `currency`.

    Raises `InvalidInputError` when the amount cannot be sent exactly: paywarden never rounds.
    """
    code = currency.upper()
    iso_exponent = ISO_4217_EXPONENTS.get(code)
    if iso_exponent is None:
        raise InvalidInputError(f"currency `{currency}` is not an ISO 4217 currency Stripe takes")
    if code in STRIPE_ZERO_DECIMAL:
        stripe_exponent = 0
    elif code in STRIPE_THREE_DECIMAL:
        stripe_exponent = 3
    else:
        stripe_exponent = 2
    factor = int(10 ** abs(stripe_exponent - iso_exponent))
    if stripe_exponent >= iso_exponent:
        amount = amount_minor * factor
    elif amount_minor % factor:
        raise InvalidInputError(f"Stripe takes whole units of {code}; {amount_minor} is not")
    else:
        amount = amount_minor // factor
    if stripe_exponent == 3 and amount % 10:
        raise InvalidInputError(
            f"Stripe needs three-decimal {code} amounts to end in 0; {amount} does not"
        )
    return amount


@dataclass(frozen=True, slots=True)
class StripeRoute:
    """One configured route: a connected account to pay (`destination`), or the customer and
    payment method an agent charges. Ids are Stripe's, case-sensitive."""

    destination: str | None = None
    customer: str | None = None
    payment_method: str | None = None


@dataclass(frozen=True, slots=True)
class StripeRoutes:
    """The operator's mapping of payees and agents to Stripe objects (see the module doc)."""

    payees: Mapping[str, StripeRoute] = dataclass_field(default_factory=dict)
    agents: Mapping[str, StripeRoute] = dataclass_field(default_factory=dict)
    allow_any_connected_account: bool = False

    @classmethod
    def from_mapping(cls, data: object) -> StripeRoutes:
        """Routes from parsed YAML/JSON; payee keys are canonicalised like any recipient."""
        if not isinstance(data, Mapping) or set(data) - {
            "payees",
            "agents",
            "allow_any_connected_account",
        }:
            raise InvalidInputError(
                "Stripe routes must be a mapping with `payees`, `agents` and/or "
                "`allow_any_connected_account`"
            )
        any_account = data.get("allow_any_connected_account", False)
        if not isinstance(any_account, bool):
            raise InvalidInputError("`allow_any_connected_account` must be true or false")
        payees = _payee_routes(_routes(data.get("payees"), "payees", _PAYEE_FIELDS))
        agents = _routes(data.get("agents"), "agents", _AGENT_FIELDS)
        for agent, route in agents.items():
            if route.customer is None and route.payment_method is None:
                raise InvalidInputError(
                    f"Stripe route for agent `{agent}` needs a `customer` or a `payment_method`"
                )
        return cls(payees, agents, any_account)

    @classmethod
    def load(cls, path: str | Path) -> StripeRoutes:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise InvalidInputError(f"cannot read the Stripe routes `{path}`: {error}") from None
        try:
            data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as error:
            raise InvalidInputError(f"the Stripe routes `{path}` do not parse: {error}") from None
        return cls.from_mapping(data)

    def payee_route(self, payee: Payee) -> StripeRoute | None:
        route = self.payees.get(payee.identity)
        if route is None and self.allow_any_connected_account and _connected(payee):
            return StripeRoute()
        return route


def _routes(value: object, name: str, fields: Mapping[str, str]) -> dict[str, StripeRoute]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"Stripe routes `{name}` must be a mapping")
    routes: dict[str, StripeRoute] = {}
    for key, entry in value.items():
        entry = {} if entry is None else entry
        if not isinstance(key, str) or not isinstance(entry, Mapping):
            raise InvalidInputError(f"Stripe route `{key}` in `{name}` must map to a mapping")
        unknown = {str(item) for item in entry} - set(fields)
        if unknown:
            raise InvalidInputError(
                f"Stripe route `{key}` in `{name}` has unknown key `{min(unknown)}` "
                f"(it takes {', '.join(f'`{known}`' for known in fields)})"
            )
        for field_name, prefix in fields.items():
            item = entry.get(field_name)
            if item is not None and not (isinstance(item, str) and item.startswith(prefix)):
                raise InvalidInputError(
                    f"Stripe route `{key}`: `{field_name}` must be a `{prefix}...` id"
                )
        routes[key] = StripeRoute(**{k: entry.get(k) for k in fields})
    return routes


def _payee_routes(routes: Mapping[str, StripeRoute]) -> dict[str, StripeRoute]:
    """Payee routes keyed by canonical identity; two keys naming one payee are refused, since
    which of them would win is a guess (`Vendor.example.com` and `vendor.example.com.`)."""
    by_identity: dict[str, StripeRoute] = {}
    spelled: dict[str, str] = {}
    for key, route in routes.items():
        try:
            identity = parse_payee(key).identity
        except InvalidInputError as error:
            raise InvalidInputError(f"Stripe route payee `{key}` is not a payee: {error}") from None
        if identity in spelled:
            raise InvalidInputError(
                f"Stripe route payees `{spelled[identity]}` and `{key}` are the same payee "
                f"`{identity}`; keep one"
            )
        by_identity[identity] = route
        spelled[identity] = key
    return by_identity


def _connected(payee: Payee) -> bool:
    return payee.kind == "account" and payee.identity.startswith("acct_")


def _routes_from(value: StripeRoutes | Mapping[str, object] | str | Path | None) -> StripeRoutes:
    if isinstance(value, StripeRoutes):
        return value
    if isinstance(value, Mapping):
        return StripeRoutes.from_mapping(value)
    path = value if value is not None else os.environ.get(ROUTES_ENV)
    return StripeRoutes.load(path) if path else StripeRoutes()


class _Trace(threading.local):
    def __init__(self) -> None:
        self.attempts: list[Attempt] = []


class _TracingHTTPClient(stripe.RequestsClient):
    """The SDK's `requests` client, noting how each attempt of a call ended (the first try and
    every SDK retry), so that an answer after an ambiguous attempt is never taken as proof that
    nothing happened. The notes are per thread, like the client's sessions."""

    def __init__(self, timeout_seconds: float) -> None:
        super().__init__(timeout=timeout_seconds)
        self._trace = _Trace()

    def begin(self) -> None:
        self._trace.attempts = []

    def attempts(self) -> list[Attempt]:
        return list(self._trace.attempts)

    def request(  # type: ignore[override]  # the same signature as the SDK's RequestsClient
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        try:
            body, status, response_headers = super().request(method, url, headers, post_data)
        except stripe.APIConnectionError as error:
            self._trace.attempts.append("not_sent" if _never_sent(error) else "ambiguous")
            raise
        # A 5xx may have run (Stripe stores and replays it); a 409 means a request with this
        # key is running right now. Either leaves the outcome of the key open.
        ambiguous = status >= 500 or status == 409
        self._trace.attempts.append("ambiguous" if ambiguous else "answered")
        return body, status, response_headers


def _never_sent(error: stripe.APIConnectionError) -> bool:
    """Whether the connection failed before the request could reach Stripe."""
    cause = error.__cause__
    if isinstance(cause, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(cause, requests.exceptions.ConnectionError) and cause.args:
        reason = getattr(cause.args[0], "reason", None)
        return isinstance(reason, urllib3.exceptions.NewConnectionError)
    return False


def _api_base(value: str | None) -> str | None:
    if not value:
        return None
    parts = urlsplit(value)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.hostname and (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
        return value.rstrip("/")
    raise InvalidInputError(
        f"the Stripe API base (`{API_BASE_ENV}` or `api_base`) must be an https URL, or http on "
        f"loopback, not `{value}`"
    )


class StripeRail:
    """A payment rail on Stripe: PaymentIntents for charges, Transfers for payouts, Refunds.

    Call `close()` (or use it as a context manager) to close its HTTP connections.
    """

    name = "stripe"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        api_base: str | None = None,
        timeout_seconds: float = 30.0,
        max_network_retries: int = 2,
        stripe_version: str | None = None,
        account: str | None = None,
        routes: StripeRoutes | Mapping[str, object] | str | Path | None = None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")
        if not key:
            raise InvalidInputError(
                f"the Stripe rail needs an API key: set `{API_KEY_ENV}` or pass `api_key`"
            )
        if not key.startswith(("sk_", "rk_")):
            raise InvalidInputError(
                "the Stripe API key must be a secret (`sk_...`) or restricted (`rk_...`) key"
            )
        base = _api_base(api_base if api_base is not None else os.environ.get(API_BASE_ENV))
        if not timeout_seconds > 0:
            raise InvalidInputError("`timeout_seconds` must be positive")
        if max_network_retries < 0:
            raise InvalidInputError("`max_network_retries` must be 0 or more")
        self.api_base = base or stripe.DEFAULT_API_BASE
        self.routes = _routes_from(routes)
        self._http = _TracingHTTPClient(timeout_seconds)
        self._client = stripe.StripeClient(
            key,
            stripe_account=account,
            stripe_version=stripe_version,
            base_addresses={"api": base} if base else None,
            max_network_retries=max_network_retries,
            http_client=self._http,
        )

    def close(self) -> None:
        """Close the HTTP connections this thread opened."""
        self._http.close()  # type: ignore[no-untyped-call]

    def __enter__(self) -> StripeRail:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def check(
        self, *, agent: str, action: str, payee: Payee, amount_minor: int, currency: str
    ) -> str | None:
        """Why this payment cannot go through Stripe (no route, inexact amount), or None."""
        try:
            stripe_amount(amount_minor, currency)
            if _is_transfer(action, payee):
                _destination(self.routes, payee)
            else:
                _charge_route(self.routes, agent, payee)
        except InvalidInputError as refused:
            return str(refused)
        return None

    def pay(self, payment: RailPayment) -> Receipt:
        """Charge (a confirmed PaymentIntent) or pay out (a Transfer), with the payment's key."""
        try:
            return self._create(payment)
        except InvalidInputError as refused:  # checked here: nothing was sent
            return Receipt("failed", None, str(refused))

    def _create(self, payment: RailPayment) -> Receipt:
        """Send the payment's create; raises `InvalidInputError`, sending nothing, when the
        routes or the amount refuse it."""
        options: stripe.RequestOptions = {"idempotency_key": payment.idempotency_key}
        try:
            if _is_transfer(payment.action, payment.payee):
                transfer_params = _transfer_params(self.routes, payment)
                self._http.begin()
                transfer = self._client.v1.transfers.create(transfer_params, options)
                return Receipt("settled", transfer.id)
            charge_params = _charge_params(self.routes, payment)
            self._http.begin()
            intent = self._client.v1.payment_intents.create(charge_params, options)
        except stripe.StripeError as error:
            return self._error_receipt(error)
        return self._intent_receipt(intent, payment.idempotency_key)

    def status(self, payment: RailPayment) -> Receipt:
        """What became of the payment made with this key (see the module docstring)."""
        try:
            self._http.begin()
            found = self._find(payment)
        except stripe.StripeError as error:
            return Receipt("unknown", payment.rail_payment_id, f"lookup: {_describe(error)}")
        if isinstance(found, stripe.Transfer):
            return Receipt("settled", found.id)
        if found is not None:
            return self._intent_receipt(found, payment.idempotency_key)
        try:
            receipt = self._create(payment)  # the same create, the same key: a replay or the run
        except InvalidInputError as refused:
            # Not sent (the routes changed since it was paid): that proves nothing about the
            # original request, which may have run. It stays open until a route takes it.
            return Receipt("unknown", payment.rail_payment_id, f"not sent again: {refused}")
        if receipt.status == "failed" and receipt.retryable:
            return Receipt("unknown", receipt.rail_payment_id, receipt.error)
        if receipt.status == "pending" and receipt.rail_payment_id is not None:
            # A replay repeats the answer stored at creation: ask for the state now.
            return self.status(_with_id(payment, receipt.rail_payment_id))
        return receipt

    def refund(self, payment: RailPayment, amount_minor: int, refund_key: str) -> Receipt:
        """Refund part or all of a settled payment, once per `refund_key`.

        A refund already made with this key is looked up first (the lists are consistent) and
        answered with its state now, so a re-sent refund is never created twice, even after
        Stripe forgot the key, and a pending one is seen to settle. A failed lookup answers
        unknown: an earlier attempt with this key may have refunded.
        """
        try:
            amount = stripe_amount(amount_minor, payment.currency)
        except InvalidInputError as refused:
            return Receipt("failed", None, str(refused))
        try:
            self._http.begin()
            found = self._find(payment)
            earlier = None if found is None else self._refund_made(found, refund_key)
        except stripe.StripeError as error:
            return Receipt("unknown", None, f"lookup: {_describe(error)}")
        if found is None:
            return Receipt("failed", None, "no Stripe payment found for this key; nothing refunded")
        if earlier is not None:
            return earlier
        metadata = {"paywarden_payment_id": payment.payment_id, "paywarden_refund_key": refund_key}
        options: stripe.RequestOptions = {"idempotency_key": refund_key}
        try:
            self._http.begin()
            if isinstance(found, stripe.Transfer):
                reversal: TransferReversalCreateParams = {"amount": amount, "metadata": metadata}
                reversed_ = self._client.v1.transfers.reversals.create(found.id, reversal, options)
                return Receipt("settled", reversed_.id)
            params: RefundCreateParams = {
                "payment_intent": found.id,
                "amount": amount,
                "metadata": metadata,
            }
            refund = self._client.v1.refunds.create(params, options)
        except stripe.StripeError as error:
            return self._error_receipt(error)
        return _refund_receipt(refund)

    def _refund_made(self, found: StripeObject, refund_key: str) -> Receipt | None:
        """The receipt of a refund (or reversal) already made with `refund_key`, if any."""
        if isinstance(found, stripe.Transfer):
            reversals = self._client.v1.transfers.reversals.list(found.id, {"limit": 100})
            for reversal in reversals.auto_paging_iter():
                if _refund_tagged(reversal.metadata, refund_key):
                    return Receipt("settled", reversal.id)
            return None
        refunds = self._client.v1.refunds.list({"payment_intent": found.id, "limit": 100})
        for refund in refunds.auto_paging_iter():
            if _refund_tagged(refund.metadata, refund_key):
                return _refund_receipt(refund)
        return None

    def _find(self, payment: RailPayment) -> StripeObject | None:
        """The Stripe object made with this payment's key, found without creating anything."""
        rail_id = payment.rail_payment_id
        key = payment.idempotency_key
        if _is_transfer(payment.action, payment.payee):
            if rail_id:
                return self._client.v1.transfers.retrieve(rail_id)
            listed = self._client.v1.transfers.list(
                {"transfer_group": payment.idempotency_key, "limit": 100}
            )
            return next((item for item in listed.auto_paging_iter() if _tagged(item, key)), None)
        if rail_id:
            return self._client.v1.payment_intents.retrieve(rail_id)
        quoted = key.replace("\\", "\\\\").replace("'", "\\'")
        found = self._client.v1.payment_intents.search(
            {"query": f"metadata['paywarden_key']:'{quoted}'", "limit": 10}
        )
        hit = next((item for item in found.data if _tagged(item, key)), None)
        # Search results can be stale (they lag writes): read the object itself for its state.
        return None if hit is None else self._client.v1.payment_intents.retrieve(hit.id)

    def _intent_receipt(self, intent: stripe.PaymentIntent, key: str) -> Receipt:
        status = intent.status
        if status == "succeeded":
            return Receipt("settled", intent.id)
        if status in ("processing", "requires_capture"):
            return Receipt("pending", intent.id)
        if status in ("requires_payment_method", "canceled"):
            return Receipt("failed", intent.id, _intent_error(intent))
        if status in ("requires_action", "requires_confirmation"):
            return self._cancel(intent, key)
        return Receipt("unknown", intent.id, f"PaymentIntent status `{status}`")

    def _cancel(self, intent: stripe.PaymentIntent, key: str) -> Receipt:
        """Cancel a PaymentIntent waiting for the customer, so that it can never charge later."""
        waiting = f"PaymentIntent `{intent.status}`: it needs the customer (3-D Secure or a "
        waiting += "redirect), which an agent cannot provide"
        try:
            self._http.begin()
            options: stripe.RequestOptions = {"idempotency_key": f"{key}_cancel"}
            canceled = self._client.v1.payment_intents.cancel(intent.id, None, options)
        except stripe.StripeError as error:
            return Receipt("unknown", intent.id, f"{waiting}; cancel failed: {_describe(error)}")
        if canceled.status != "canceled":
            return Receipt("unknown", intent.id, f"{waiting}; cancel left `{canceled.status}`")
        return Receipt("failed", intent.id, f"{waiting}; canceled")

    def _error_receipt(self, error: stripe.StripeError) -> Receipt:
        """A create's error as a receipt: `failed` only when no money can have moved."""
        attempts = self._http.attempts()
        described = _describe(error)
        if isinstance(error, stripe.CardError):
            # 402: the endpoint ran and the card was declined; a retry replays this decline.
            return Receipt("failed", _error_intent_id(error), described)
        if "ambiguous" in attempts[:-1]:
            # An earlier attempt (the SDK retried it) may have run; errors that Stripe answers
            # before its idempotency layer (429, most 400s) say nothing about that attempt.
            return Receipt("unknown", None, f"{described} (an earlier attempt may have run)")
        if isinstance(error, stripe.RateLimitError):
            # Stripe's rate limiter runs before the idempotency layer: nothing ran.
            return Receipt("failed", None, described, retryable=True)
        if isinstance(error, stripe.APIConnectionError):
            if attempts[-1:] == ["not_sent"]:
                return Receipt("failed", None, described, retryable=True)
            return Receipt("unknown", None, described)
        if isinstance(
            error, stripe.InvalidRequestError | stripe.AuthenticationError | stripe.PermissionError
        ):
            return Receipt("failed", None, described)
        # A 5xx: Stripe saves the result of a key once the endpoint began executing and replays
        # it, "including 500 errors" (docs.stripe.com/idempotency), so a 500 may stand for a
        # payment that ran, and retrying the key cannot tell. A 409: another request with this
        # key is running. An IdempotencyError: the key already ran with other parameters.
        return Receipt("unknown", None, described)


def _is_transfer(action: str, payee: Payee) -> bool:
    lowered = action.lower()
    return _connected(payee) or "payout" in lowered or "transfer" in lowered


def _destination(routes: StripeRoutes, payee: Payee) -> str:
    """The connected account a transfer to `payee` goes to: configured, never the agent's."""
    route = routes.payee_route(payee)
    if route is None:
        raise InvalidInputError(
            f"the Stripe rail has no route for payee `{payee.text}`; an operator adds it to "
            f"the Stripe routes (`{ROUTES_ENV}`)"
        )
    if route.destination is not None:
        return route.destination
    if _connected(payee):
        return payee.identity
    raise InvalidInputError(
        f"a Stripe transfer needs a connected account: payee `{payee.text}` is none and its "
        "route names no `destination`"
    )


def _charge_route(
    routes: StripeRoutes, agent: str, payee: Payee
) -> tuple[StripeRoute, StripeRoute]:
    """(payee route, agent route) of a charge; both must be configured."""
    payee_route = routes.payee_route(payee)
    if payee_route is None:
        raise InvalidInputError(
            f"the Stripe rail has no route for payee `{payee.text}`; an operator adds it to "
            f"the Stripe routes (`{ROUTES_ENV}`)"
        )
    agent_route = routes.agents.get(agent)
    if agent_route is None or agent_route == StripeRoute():
        raise InvalidInputError(
            f"agent `{agent}` has no Stripe payment method to charge; an operator sets its "
            "`customer` and `payment_method` in the Stripe routes"
        )
    return payee_route, agent_route


def _metadata(payment: RailPayment) -> dict[str, str]:
    return {
        "paywarden_payment_id": payment.payment_id,
        "paywarden_key": payment.idempotency_key,
        "paywarden_agent": payment.agent[:500],
        "paywarden_action": payment.action[:500],
        "paywarden_payee": payment.payee.text[:500],
    }


def _transfer_params(routes: StripeRoutes, payment: RailPayment) -> TransferCreateParams:
    return {
        "amount": stripe_amount(payment.amount_minor, payment.currency),
        "currency": payment.currency.lower(),
        "destination": _destination(routes, payment.payee),
        "transfer_group": payment.idempotency_key,
        "metadata": _metadata(payment),
    }


def _charge_params(routes: StripeRoutes, payment: RailPayment) -> PaymentIntentCreateParams:
    payee_route, agent_route = _charge_route(routes, payment.agent, payment.payee)
    params: PaymentIntentCreateParams = {
        "amount": stripe_amount(payment.amount_minor, payment.currency),
        "currency": payment.currency.lower(),
        "confirm": True,
        "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
        "metadata": _metadata(payment),
    }
    if agent_route.payment_method is not None:
        params["payment_method"] = agent_route.payment_method
    if agent_route.customer is not None:
        params["customer"] = agent_route.customer
        params["off_session"] = True  # a saved payment method, charged without the customer
    else:
        params["error_on_requires_action"] = True  # fail rather than wait for the customer
    if payee_route.destination is not None:
        params["transfer_data"] = {"destination": payee_route.destination}
    return params


def _tagged(item: StripeObject, key: str) -> bool:
    metadata = item.metadata
    return "paywarden_key" in metadata and metadata["paywarden_key"] == key


def _refund_tagged(metadata: stripe.StripeObject | None, refund_key: str) -> bool:
    return (
        metadata is not None
        and "paywarden_refund_key" in metadata
        and metadata["paywarden_refund_key"] == refund_key
    )


def _with_id(payment: RailPayment, rail_payment_id: str) -> RailPayment:
    return dataclass_replace(payment, rail_payment_id=rail_payment_id)


def _refund_receipt(refund: stripe.Refund) -> Receipt:
    if refund.status == "succeeded":
        return Receipt("settled", refund.id)
    if refund.status in ("pending", "requires_action"):
        return Receipt("pending", refund.id)
    if refund.status in ("failed", "canceled"):
        reason = refund.failure_reason if "failure_reason" in refund else None
        return Receipt("failed", refund.id, f"refund {refund.status}: {reason or 'no reason'}")
    return Receipt("unknown", refund.id, f"refund status `{refund.status}`")


def _intent_error(intent: stripe.PaymentIntent) -> str:
    error = intent.last_payment_error if "last_payment_error" in intent else None
    if error is None:
        return f"PaymentIntent `{intent.status}`"
    parts = [f"PaymentIntent `{intent.status}`"]
    for field in ("code", "decline_code", "message"):
        if field in error and error[field]:
            parts.append(f"{field}={error[field]}")
    return " ".join(parts)[:_ERROR_CHARS_MAX]


def _error_intent_id(error: stripe.StripeError) -> str | None:
    detail = error.error
    if detail is None or "payment_intent" not in detail or detail["payment_intent"] is None:
        return None
    intent = detail["payment_intent"]
    return str(intent["id"]) if "id" in intent else None


def _describe(error: stripe.StripeError) -> str:
    """A one-line account of a Stripe error: class, HTTP status, codes, message, request id."""
    parts = [type(error).__name__]
    if error.http_status:
        parts.append(f"HTTP {error.http_status}")
    detail = error.error
    for field in ("code", "decline_code"):
        if detail is not None and field in detail and detail[field]:
            parts.append(f"{field}={detail[field]}")
    text = " ".join(parts)
    message = " ".join(str(error.user_message or "").split())
    if message:
        text += f": {message}"
    if error.request_id:
        text += f" ({error.request_id})"
    return text[:_ERROR_CHARS_MAX]
