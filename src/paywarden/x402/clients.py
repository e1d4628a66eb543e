"""Guarded HTTP clients: one line gives an agent an x402-paying client that paywarden guards.

    http = async_httpx_client(X402Guard(warden, agent="research-1"), x402Client().register(...))
    http = httpx_client(guard, x402ClientSync()...)       # httpx.Client
    http = requests_session(guard, x402ClientSync()...)   # requests.Session

Each marks the request being paid for (so the guard knows the URL actually called), reuses a
signed payload still in doubt instead of signing a new one, and leaves the rest to the SDK's
transport: a refusal surfaces as the SDK's `PaymentError` with the reason in its message.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import requests
from x402 import x402Client, x402ClientSync
from x402.http import x402HTTPClient, x402HTTPClientSync
from x402.http.clients.httpx import PaymentError, x402AsyncTransport
from x402.http.clients.requests import x402HTTPAdapter

from paywarden.x402.guard import _CALL, X402Guard

_RETRY = "_x402_is_retry"


class GuardedHTTPClient(x402HTTPClient):
    """`x402HTTPClient` that resends a payload in doubt instead of signing again."""

    def __init__(self, client: x402Client, guard: X402Guard) -> None:
        super().__init__(guard.attach(client))
        self.guard = guard

    async def create_payment_payload(self, payment_required: Any) -> Any:
        reused = _reuse(self.guard, payment_required)
        if reused is not None:
            return reused
        try:
            payload = await super().create_payment_payload(payment_required)
        except BaseException:
            self.guard.not_sent(_CALL.get())
            raise
        return self.guard.sent_as_checked(payload)


class GuardedHTTPClientSync(x402HTTPClientSync):
    """`x402HTTPClientSync` that resends a payload in doubt instead of signing again."""

    def __init__(self, client: x402ClientSync, guard: X402Guard) -> None:
        super().__init__(guard.attach(client))
        self.guard = guard

    def create_payment_payload(self, payment_required: Any) -> Any:
        reused = _reuse(self.guard, payment_required)
        if reused is not None:
            return reused
        try:
            payload = super().create_payment_payload(payment_required)
        except BaseException:
            self.guard.not_sent(_CALL.get())
            raise
        return self.guard.sent_as_checked(payload)


def _reuse(guard: X402Guard, payment_required: Any) -> Any:
    current = _CALL.get()
    if current is None:
        return None
    entry = guard.reusable(current.url, payment_required)
    if entry is None:
        return None
    current.entry = entry
    return entry.payload


class GuardedAsyncTransport(x402AsyncTransport):
    """The SDK's async httpx transport, each request marked for the guard."""

    def __init__(
        self, guard: X402Guard, client: x402Client, transport: httpx.AsyncBaseTransport | None
    ) -> None:
        super().__init__(GuardedHTTPClient(client, guard), transport=transport)
        self.guard = guard

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with self.guard.call(str(request.url)):
            return await super().handle_async_request(request)


class GuardedTransport(httpx.BaseTransport):
    """A sync httpx transport with the SDK's flow: on 402, pay once and retry."""

    def __init__(
        self, guard: X402Guard, client: x402ClientSync, transport: httpx.BaseTransport | None
    ) -> None:
        self.guard = guard
        self.http = GuardedHTTPClientSync(client, guard)
        self.inner = transport or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        response = self.inner.handle_request(request)
        if response.status_code != 402 or request.extensions.get(_RETRY):
            return response
        with self.guard.call(str(request.url)):
            try:
                return self._pay(request, response)
            except PaymentError:
                raise
            except Exception as error:
                raise PaymentError(f"Failed to handle payment: {error}") from error

    def _pay(self, request: httpx.Request, response: httpx.Response) -> httpx.Response:
        response.read()
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        required = self.http.get_payment_required_response(response.headers.get, body)
        payload = self.http.create_payment_payload(required)
        headers = {**request.headers, **self.http.encode_payment_signature_header(payload)}
        retry = httpx.Request(
            request.method,
            request.url,
            headers=headers,
            content=request.content,
            extensions={**request.extensions, _RETRY: True},
        )
        paid = self.inner.handle_request(retry)
        self.http.process_payment_result(payload, paid.headers.get, paid.status_code)
        return paid

    def close(self) -> None:
        self.inner.close()


class GuardedRequestsAdapter(x402HTTPAdapter):
    """The SDK's requests adapter, each request marked for the guard."""

    def __init__(self, guard: X402Guard, client: x402ClientSync, **kwargs: Any) -> None:
        super().__init__(GuardedHTTPClientSync(client, guard), **kwargs)
        self.guard = guard

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        with self.guard.call(str(request.url)):
            return super().send(request, **kwargs)


def async_httpx_client(
    guard: X402Guard,
    client: x402Client,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    **options: Any,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` that pays x402 APIs under `guard` (`options` go to httpx)."""
    return httpx.AsyncClient(transport=GuardedAsyncTransport(guard, client, transport), **options)


def httpx_client(
    guard: X402Guard,
    client: x402ClientSync,
    *,
    transport: httpx.BaseTransport | None = None,
    **options: Any,
) -> httpx.Client:
    """An `httpx.Client` that pays x402 APIs under `guard` (`options` go to httpx)."""
    return httpx.Client(transport=GuardedTransport(guard, client, transport), **options)


def requests_session(guard: X402Guard, client: x402ClientSync) -> requests.Session:
    """A `requests.Session` that pays x402 APIs under `guard`."""
    session = requests.Session()
    adapter = GuardedRequestsAdapter(guard, client)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
