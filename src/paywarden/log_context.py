"""Context of log records: the request, decision and agent a line is about (contextvars).

The gateway opens a request context for each HTTP request (`request(request_id)`, see
`entrypoints/rest/request_ids.py`); a decision binds `agent` while it is decided (`bound`) and,
once made, notes its `decision_id` and `agent` on the request (`note`), so the request's later
lines (uvicorn's access line included) carry them too. JSON log lines
(`paywarden serve --log-format json`) carry each field known when the record was made; a
logging call's `extra=` wins over the context. Never a key, secret or intent field other than
the agent id.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

FIELDS = ("request_id", "decision_id", "agent")
_VARS: dict[str, ContextVar[str | None]] = {
    name: ContextVar(f"paywarden_{name}", default=None) for name in FIELDS
}
# The fields of the request being served: one dict per request, shared by every context copied
# from the request's (a route running in a worker thread notes into the same dict).
_REQUEST: ContextVar[dict[str, str] | None] = ContextVar("paywarden_request", default=None)


def current(name: str) -> str | None:
    """The value of field `name` bound in this context, else noted on its request, or None."""
    value = _VARS[name].get()
    if value is not None:
        return value
    fields = _REQUEST.get()
    return None if fields is None else fields.get(name)


@contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """Bind `fields` (names of `FIELDS`) for the block; the previous values come back after."""
    tokens = [(_VARS[name], _VARS[name].set(value)) for name, value in fields.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


@contextmanager
def request(request_id: str) -> Iterator[None]:
    """The context of one request: `request_id`, and the fields noted while it runs."""
    token = _REQUEST.set({"request_id": request_id})
    try:
        yield
    finally:
        _REQUEST.reset(token)


def note(**fields: str | None) -> None:
    """Note `fields` on the request being served, for its later lines (no request: nothing)."""
    request_fields = _REQUEST.get()
    if request_fields is not None:
        request_fields.update({name: value for name, value in fields.items() if value})
