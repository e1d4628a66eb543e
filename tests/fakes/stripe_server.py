"""A fake Stripe API on loopback: the parts the Stripe rail uses, over real HTTP.

`FakeStripe` is a `ThreadingHTTPServer` on 127.0.0.1 (a free port) run in a thread; use it as a
context manager, which shuts the server down and closes its socket. Point the SDK at `url`.

What it emulates, as documented by Stripe:

- form-encoded bodies (`metadata[key]=value` nested), `Authorization: Bearer <key>` (401 else);
- Stripe-shaped JSON objects (`payment_intent`, `transfer`, `refund`, `transfer_reversal`,
  `list`, `search_result`) and error bodies (`{"error": {"type", "code", "message", ...}}`);
- idempotency, per account: the first result of a key is stored once the endpoint ran, and the
  same key with the same body replays it with `Idempotent-Replayed: true`; the same key with
  another body is a 400 `idempotency_error`; a 429, a 401 or a parameter error runs nothing and
  stores nothing;
- `POST /v1/payment_intents` (confirm=true), `GET /v1/payment_intents/{id}`,
  `GET /v1/payment_intents/search` (`metadata['k']:'v'` queries),
  `POST /v1/payment_intents/{id}/cancel`, `POST /v1/transfers`, `GET /v1/transfers`
  (`transfer_group`, `destination`), `GET /v1/transfers/{id}`,
  `POST /v1/transfers/{id}/reversals`, `GET /v1/transfers/{id}/reversals`, `POST /v1/refunds`,
  `GET /v1/refunds` (`payment_intent`);
- Stripe's test payment methods: `pm_card_visa` succeeds, `pm_card_chargeDeclined` and
  `pm_card_chargeDeclinedInsufficientFunds` decline (402), `pm_card_authenticationRequired`
  needs 3-D Secure (a 402 `authentication_required` with `off_session` or
  `error_on_requires_action`, else `requires_action`), `pm_usBankAccount` stays `processing`
  until it is retrieved, then `succeeded`.

Faults for the next requests (`inject(fault, times)`), in the order they are injected:

| fault | the next request |
| --- | --- |
| `500` | a 500 before anything ran; nothing is stored, a retry runs it |
| `500_stored` | runs (money moves), answers 500, and the 500 is what the key replays |
| `429` | a 429 rate limit; nothing ran |
| `conflict` | a 409 `idempotency_key_in_use`: another request with the key is running |
| `drop_before` | the connection is closed before anything ran |
| `drop_after` | runs and stores the result, then the connection is closed with no answer |
| `slow` | runs and stores the result, then answers only after `slow_seconds` (a client timeout) |
| `card_declined` | the next PaymentIntent is declined (402 `card_declined`) |
| `processing` | the next PaymentIntent is `processing`, `succeeded` once retrieved |
| `requires_action` | the next PaymentIntent is left in `requires_action` |
| `refund_pending` | the next refund is `pending`, `succeeded` once read again |

Every request is recorded (`requests`: method, path, query, lower-cased headers, parsed form,
the status answered, whether it was a replay), and `moved(key)` counts how many times money
really moved (a charge, transfer, refund or reversal ran) under an idempotency key.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

Fault = Literal[
    "500",
    "500_stored",
    "429",
    "conflict",
    "drop_before",
    "drop_after",
    "slow",
    "card_declined",
    "processing",
    "requires_action",
    "refund_pending",
]
TRANSPORT_FAULTS = frozenset(
    ("500", "500_stored", "429", "conflict", "drop_before", "drop_after", "slow")
)
THREE_DECIMAL = frozenset(("bhd", "jod", "kwd", "omr", "tnd"))
DECLINES = {
    "pm_card_chargeDeclined": "generic_decline",
    "pm_card_chargeDeclinedInsufficientFunds": "insufficient_funds",
}
_SEARCH = re.compile(r"\Ametadata\['([^']+)'\]:'((?:[^'\\]|\\.)*)'\Z")
Json = dict[str, Any]
Reply = tuple[int, Json, bool] | None  # (status, body, replayed); None: drop the connection


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    form: dict[str, Any]
    status: int | None  # None: the connection was dropped
    replayed: bool

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


@dataclass
class _Stored:
    fingerprint: tuple[str, str, str]
    status: int
    body: Json


class _Invalid(Exception):
    """A request Stripe refuses before running anything (nothing is stored)."""

    def __init__(self, status: int, error: Json) -> None:
        super().__init__(error.get("message"))
        self.status = status
        self.error = error


class _Declined(Exception):
    """An endpoint that ran and failed (stored and replayed, like Stripe's 402s)."""

    def __init__(self, status: int, error: Json) -> None:
        super().__init__(error.get("message"))
        self.status = status
        self.error = error


def _error(kind: str, message: str, code: str | None = None, **extra: Any) -> Json:
    return {"type": kind, "message": message, "code": code, **extra}


def parse_form(body: str) -> dict[str, Any]:
    """Decode a Stripe form body: `a[b][c]=v` nests, `a[]=v` appends to a list."""
    result: dict[str, Any] = {}
    for name, value in parse_qsl(body, keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+|\[\]", name)
        node: Any = result
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if part == "[]":
                continue
            appending = not last and parts[index + 1] == "[]"
            if last or (appending and index + 1 == len(parts) - 1):
                if appending:
                    node.setdefault(part, []).append(value)
                else:
                    node[part] = value
                break
            node = node.setdefault(part, {})
    return result


@dataclass
class _State:
    objects: dict[str, Json] = field(default_factory=dict)
    stored: dict[tuple[str, str], _Stored] = field(default_factory=dict)
    moved: Counter[str] = field(default_factory=Counter)
    faults: list[Fault] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)


class FakeStripe:
    """A fake Stripe API server; see the module docstring."""

    def __init__(self, api_key: str = "sk_test_x") -> None:
        self.api_key = api_key
        self.search_visible = True  # False: new objects are not searchable yet (search lag)
        self.search_enabled = True  # False: the Search API is unavailable (400)
        self.slow_seconds = 2.0  # how long a `slow` answer waits (cut short when the server stops)
        self._stopping = threading.Event()
        self._delay = 0.0
        self._state = _State()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,))

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeStripe:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # What tests look at -----------------------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._state.requests)

    def posts(self, path: str) -> list[Recorded]:
        """The POST requests to `path` exactly (such as `/v1/payment_intents`)."""
        return [r for r in self.requests if r.method == "POST" and r.path == path]

    def moved(self, key: str) -> int:
        """How many times money really moved under this idempotency key."""
        with self._lock:
            return self._state.moved[key]

    def object(self, object_id: str) -> Json:
        with self._lock:
            return json.loads(json.dumps(self._state.objects[object_id]))

    def objects(self, kind: str) -> list[Json]:
        with self._lock:
            return [dict(o) for o in self._state.objects.values() if o["object"] == kind]

    def inject(self, fault: Fault, times: int = 1) -> None:
        with self._lock:
            self._state.faults.extend([fault] * times)

    # Request handling -------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: str
    ) -> tuple[Reply, float]:
        """Answer one request: `(status, body, replayed)` (None: drop the connection), and how
        long to wait before sending it."""
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        form = parse_form(body)
        with self._lock:
            self._delay = 0.0
            reply = self._answer(method, parts.path, query, headers, body, form)
            delay = self._delay
            status, replayed = (None, False) if reply is None else (reply[0], reply[2])
            self._state.requests.append(
                Recorded(method, parts.path, query, headers, form, status, replayed)
            )
        return reply, delay

    def wait(self, seconds: float) -> None:
        """Sleep up to `seconds`, less if the server is stopping."""
        self._stopping.wait(seconds)

    def _take(self, kinds: frozenset[str]) -> Fault | None:
        faults = self._state.faults
        if faults and faults[0] in kinds:
            return faults.pop(0)
        return None

    def _answer(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: str,
        form: dict[str, Any],
    ) -> Reply:
        fault = self._take(TRANSPORT_FAULTS)
        if fault == "drop_before":
            return None
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return (
                401,
                {"error": _error("invalid_request_error", "Invalid API Key provided")},
                False,
            )
        if fault == "429":
            message = "Too many requests hit the API too quickly."
            return 429, {"error": _error("invalid_request_error", message, "rate_limit")}, False
        if fault == "500":
            return 500, {"error": _error("api_error", "An unknown error occurred")}, False
        key = headers.get("idempotency-key") if method == "POST" else None
        if fault == "conflict" and key is not None:
            message = "There is currently another in-progress request using this Idempotent Key."
            error = _error("invalid_request_error", message, "idempotency_key_in_use")
            return 409, {"error": error}, False
        scope = (headers.get("stripe-account", ""), key or "")
        fingerprint = (method, path, body)
        stored = self._state.stored.get(scope) if key is not None else None
        if stored is not None and stored.fingerprint != fingerprint:
            message = (
                "Keys for idempotent requests can only be used with the same parameters "
                "they were first used with."
            )
            return 400, {"error": _error("idempotency_error", message)}, False
        if stored is not None:
            return stored.status, stored.body, True
        status, payload, ran = self._run(method, path, query, form, key)
        if ran and fault == "500_stored":
            status, payload = 500, {"error": _error("api_error", "An unknown error occurred")}
        if ran and key is not None:
            self._state.stored[scope] = _Stored(fingerprint, status, payload)
        if fault == "slow":
            self._delay = self.slow_seconds
        return None if fault == "drop_after" else (status, payload, False)

    def _run(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        form: dict[str, Any],
        key: str | None,
    ) -> tuple[int, Json, bool]:
        """`(status, body, whether the endpoint ran)`; refused parameters run nothing."""
        try:
            return 200, self._route(method, path, query, form, key), True
        except _Declined as declined:
            return declined.status, {"error": declined.error}, True
        except _Invalid as invalid:
            return invalid.status, {"error": invalid.error}, False

    def _route(
        self, method: str, path: str, query: dict[str, str], form: dict[str, Any], key: str | None
    ) -> Json:
        segments = path.strip("/").split("/")
        if method == "POST" and path == "/v1/payment_intents":
            return self._create_intent(form, key)
        if method == "GET" and path == "/v1/payment_intents/search":
            return self._search(query)
        if method == "GET" and len(segments) == 3 and segments[1] == "payment_intents":
            return self._retrieve_intent(segments[2])
        if method == "POST" and len(segments) == 4 and segments[3] == "cancel":
            return self._cancel_intent(segments[2])
        if method == "POST" and path == "/v1/transfers":
            return self._create_transfer(form, key)
        if method == "GET" and path == "/v1/transfers":
            return self._list_transfers(query)
        if method == "GET" and len(segments) == 3 and segments[1] == "transfers":
            return self._found(segments[2], "transfer")
        if method == "POST" and len(segments) == 4 and segments[3] == "reversals":
            return self._reverse(segments[2], form, key)
        if method == "GET" and len(segments) == 4 and segments[3] == "reversals":
            return self._list(path, query, "transfer_reversal", {"transfer": segments[2]})
        if method == "POST" and path == "/v1/refunds":
            return self._refund(form, key)
        if method == "GET" and path == "/v1/refunds":
            return self._list_refunds(query)
        raise _Invalid(404, _error("invalid_request_error", f"Unrecognized request URL ({path})"))

    # Objects ----------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):014d}"

    def _found(self, object_id: str, kind: str) -> Json:
        found = self._state.objects.get(object_id)
        if found is None or found["object"] != kind:
            message = f"No such {kind}: '{object_id}'"
            raise _Invalid(404, _error("invalid_request_error", message, "resource_missing"))
        return found

    def _create_intent(self, form: dict[str, Any], key: str | None) -> Json:
        amount, currency = _amount(form), _currency(form)
        if form.get("confirm") != "true":
            raise _Invalid(400, _error("invalid_request_error", "this fake needs confirm=true"))
        method, customer = form.get("payment_method"), form.get("customer")
        if method is None and customer is None:
            message = "You must provide a payment_method or a customer to confirm."
            raise _Invalid(400, _error("invalid_request_error", message, "parameter_missing"))
        intent: Json = {
            "id": self._new_id("pi"),
            "object": "payment_intent",
            "amount": amount,
            "amount_received": 0,
            "currency": currency,
            "customer": customer,
            "payment_method": method,
            "metadata": form.get("metadata", {}),
            "status": "requires_payment_method",
            "last_payment_error": None,
            "created": int(time.time()),
            "livemode": False,
        }
        self._state.objects[intent["id"]] = intent
        self._confirm(intent, form, key)
        return intent

    def _confirm(self, intent: Json, form: dict[str, Any], key: str | None) -> None:
        fault = self._take(frozenset(("card_declined", "processing", "requires_action")))
        method = intent["payment_method"]
        decline = "generic_decline" if fault == "card_declined" else DECLINES.get(method)
        strict = form.get("off_session") == "true" or form.get("error_on_requires_action") == "true"
        if method == "pm_card_authenticationRequired" and strict:
            decline = "authentication_required"
        if decline is not None:
            code = "authentication_required" if decline == "authentication_required" else None
            error = _error(
                "card_error",
                "Your card was declined.",
                code or "card_declined",
                decline_code=decline,
                payment_intent=intent,
            )
            intent["last_payment_error"] = {k: v for k, v in error.items() if k != "payment_intent"}
            raise _Declined(402, error)
        if fault == "requires_action" or method == "pm_card_authenticationRequired":
            intent["status"] = "requires_action"
            return
        processing = fault == "processing" or method == "pm_usBankAccount"
        intent["status"] = "processing" if processing else "succeeded"
        intent["amount_received"] = intent["amount"] if intent["status"] == "succeeded" else 0
        self._state.moved[key or intent["id"]] += 1

    def _retrieve_intent(self, intent_id: str) -> Json:
        intent = self._found(intent_id, "payment_intent")
        if intent["status"] == "processing":  # seen processing once, settled on the next look
            intent["status"] = "succeeded"
            intent["amount_received"] = intent["amount"]
        return intent

    def _cancel_intent(self, intent_id: str) -> Json:
        intent = self._found(intent_id, "payment_intent")
        if intent["status"] in ("succeeded", "canceled"):
            message = f"You cannot cancel a PaymentIntent with a status of {intent['status']}."
            code = "payment_intent_unexpected_state"
            raise _Declined(400, _error("invalid_request_error", message, code))
        intent["status"] = "canceled"
        return intent

    def _search(self, query: dict[str, str]) -> Json:
        if not self.search_enabled:
            message = "Search is not available for this account."
            raise _Invalid(400, _error("invalid_request_error", message))
        match = _SEARCH.match(query.get("query", ""))
        if match is None:
            raise _Invalid(400, _error("invalid_request_error", "this fake parses one clause"))
        name, value = match.group(1), re.sub(r"\\(.)", r"\1", match.group(2))
        found = [
            o
            for o in self._state.objects.values()
            if o["object"] == "payment_intent" and o["metadata"].get(name) == value
        ]
        data = found if self.search_visible else []
        return {
            "object": "search_result",
            "url": "/v1/payment_intents/search",
            "has_more": False,
            "next_page": None,
            "data": data[: int(query.get("limit", "10"))],
        }

    def _create_transfer(self, form: dict[str, Any], key: str | None) -> Json:
        amount, currency = _amount(form), _currency(form)
        destination = form.get("destination", "")
        if not destination.startswith("acct_") or destination == "acct_missing":
            message = f"No such destination: '{destination}'"
            raise _Invalid(400, _error("invalid_request_error", message, "resource_missing"))
        transfer: Json = {
            "id": self._new_id("tr"),
            "object": "transfer",
            "amount": amount,
            "amount_reversed": 0,
            "currency": currency,
            "destination": destination,
            "transfer_group": form.get("transfer_group"),
            "metadata": form.get("metadata", {}),
            "reversed": False,
            "created": int(time.time()),
            "livemode": False,
        }
        self._state.objects[transfer["id"]] = transfer
        self._state.moved[key or transfer["id"]] += 1
        return transfer

    def _list_transfers(self, query: dict[str, str]) -> Json:
        filters = {name: query[name] for name in ("transfer_group", "destination") if name in query}
        return self._list("/v1/transfers", query, "transfer", filters)

    def _list_refunds(self, query: dict[str, str]) -> Json:
        filters = {"payment_intent": query["payment_intent"]} if "payment_intent" in query else {}
        listed = self._list("/v1/refunds", query, "refund", filters)
        for refund in listed["data"]:
            if refund["status"] == "pending":  # seen pending once, succeeded on the next look
                refund["status"] = "succeeded"
        return listed

    def _list(self, url: str, query: dict[str, str], kind: str, filters: dict[str, str]) -> Json:
        """A Stripe list, newest first; one page (`has_more` is always false here)."""
        found = [
            o
            for o in reversed(self._state.objects.values())
            if o["object"] == kind and all(o.get(k) == v for k, v in filters.items())
        ]
        limit = int(query.get("limit", "10"))
        return {"object": "list", "url": url, "has_more": False, "data": found[:limit]}

    def _reverse(self, transfer_id: str, form: dict[str, Any], key: str | None) -> Json:
        transfer = self._found(transfer_id, "transfer")
        left = transfer["amount"] - transfer["amount_reversed"]
        amount = _amount(form) if "amount" in form else left
        if amount > left:
            message = f"You cannot reverse {amount}: only {left} is left on this transfer."
            raise _Declined(400, _error("invalid_request_error", message, "amount_too_large"))
        transfer["amount_reversed"] += amount
        transfer["reversed"] = transfer["amount_reversed"] == transfer["amount"]
        reversal: Json = {
            "id": self._new_id("trr"),
            "object": "transfer_reversal",
            "amount": amount,
            "currency": transfer["currency"],
            "transfer": transfer_id,
            "metadata": form.get("metadata", {}),
        }
        self._state.objects[reversal["id"]] = reversal
        self._state.moved[key or reversal["id"]] += 1
        return reversal

    def _refund(self, form: dict[str, Any], key: str | None) -> Json:
        intent = self._found(form.get("payment_intent", ""), "payment_intent")
        if intent["status"] != "succeeded":
            message = "This PaymentIntent does not have a successful charge to refund."
            raise _Declined(400, _error("invalid_request_error", message, "charge_not_refundable"))
        refunded = intent.get("amount_refunded", 0)
        left = intent["amount_received"] - refunded
        amount = _amount(form) if "amount" in form else left
        if amount > left:
            message = f"Refund amount ({amount}) is greater than unrefunded amount ({left})."
            raise _Declined(400, _error("invalid_request_error", message, "amount_too_large"))
        intent["amount_refunded"] = refunded + amount
        refund: Json = {
            "id": self._new_id("re"),
            "object": "refund",
            "amount": amount,
            "currency": intent["currency"],
            "payment_intent": intent["id"],
            "status": "pending" if self._take(frozenset(("refund_pending",))) else "succeeded",
            "metadata": form.get("metadata", {}),
        }
        self._state.objects[refund["id"]] = refund
        self._state.moved[key or refund["id"]] += 1
        return refund


def _amount(form: dict[str, Any]) -> int:
    raw = form.get("amount", "")
    if not isinstance(raw, str) or not raw.isdigit() or int(raw) <= 0:
        message = "Invalid positive integer"
        raise _Invalid(400, _error("invalid_request_error", message, "parameter_invalid_integer"))
    amount = int(raw)
    currency = form.get("currency")
    if currency in THREE_DECIMAL and amount % 10:
        message = "Three-decimal currency amounts must end in 0."
        raise _Invalid(400, _error("invalid_request_error", message, "invalid_amount"))
    if currency == "isk" and amount % 100:
        message = "Currency ISK amounts must be evenly divisible by 100."
        raise _Invalid(400, _error("invalid_request_error", message, "invalid_amount"))
    return amount


def _currency(form: dict[str, Any]) -> str:
    currency = form.get("currency", "")
    if not isinstance(currency, str) or not re.fullmatch(r"[a-z]{3}", currency):
        message = f"Invalid currency: {currency}. Stripe currencies are lowercase ISO codes."
        raise _Invalid(400, _error("invalid_request_error", message, "invalid_currency"))
    return currency


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins every handler thread: nothing outlives a test
    block_on_close = True
    fake: FakeStripe


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `FakeStripe.requests` instead."""

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8") if length else ""
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply, delay = self.server.fake.handle(method, self.path, headers, body)
        if delay:
            self.server.fake.wait(delay)
        if reply is None:
            self.close_connection = True  # executed (or not), but no answer: a dropped link
            return
        status, payload, replayed = reply
        try:
            self._send(method, headers, status, payload, replayed)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
            self.close_connection = True

    def _send(
        self, method: str, headers: dict[str, str], status: int, payload: Json, replayed: bool
    ) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", f"req_{time.monotonic_ns():x}")
        key = headers.get("idempotency-key")
        if key is not None and method == "POST":
            self.send_header("Idempotency-Key", key)
        if replayed:
            self.send_header("Idempotent-Replayed", "true")
        self.end_headers()
        self.wfile.write(data)
