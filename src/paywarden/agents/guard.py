"""`@guarded_payment`: paywarden in front of any Python function that moves money.

```python
@guarded_payment(warden, agent="buyer", action="purchase",
                 args={"amount": "price", "recipient": "vendor"}, currency="USD")
def buy(price: str, vendor: str, sku: str) -> str:
    return shop.order(sku, price)   # runs only when the policy allows it
```

Each call builds a `PaymentIntent` from the call's arguments by the explicit `args` mapping
(intent field -> parameter name) plus fixed fields, asks `authorize`, and calls the function
only when the decision allows it; a denial raises `PaymentDeniedError` (a pending approval its
subclass `ApprovalPendingError`) without calling it. The held amount is captured when the
function returns and voided when it raises. Async functions are guarded the same way (the
store calls run in a worker thread). The guard accepts a `Warden`, or anything with its
`authorize`, `capture` and `void`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, Protocol, TypeVar

from paywarden.errors import InvalidInputError, PaywardenError
from paywarden.intent import PaymentIntent
from paywarden.policy.decision import Decision

P = ParamSpec("P")
R = TypeVar("R")
# What `args` may map from call arguments, and what may be fixed.
INTENT_FIELDS = frozenset(
    {
        "amount",
        "currency",
        "recipient",
        "recipient_name",
        "category",
        "purpose",
        "rail",
        "session_id",
        "idempotency_key",
        "metadata",
    }
)


class PaymentGuard(Protocol):
    """What the guard needs of a `Warden`."""

    def authorize(self, intent: PaymentIntent, *, actor: str | None = None) -> Decision: ...
    def capture(
        self, hold_id: str, amount: str | int | None = None, *, actor: str = ...
    ) -> Any: ...
    def void(self, hold_id: str, *, actor: str = ...) -> Any: ...


class PaymentDeniedError(PaywardenError):
    """The policy did not allow the payment: the function was not called."""

    code = "payment_denied"

    def __init__(self, decision: Decision) -> None:
        super().__init__(f"{decision.reason_code}: {decision.reason}")
        self.decision = decision
        self.reason_code = decision.reason_code
        self.reason = decision.reason
        self.decision_id = decision.decision_id


class ApprovalPendingError(PaymentDeniedError):
    """The payment needs a human: `approval_id` is the request to follow."""

    code = "approval_pending"

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision)
        self.approval_id = decision.approval_id


def denial(decision: Decision) -> PaymentDeniedError:
    if decision.outcome == "require_approval":
        return ApprovalPendingError(decision)
    return PaymentDeniedError(decision)


def guarded_payment(
    warden: PaymentGuard,
    *,
    agent: str,
    action: str,
    args: Mapping[str, str],
    **fixed: Any,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Guard a function (sync or async) that moves money; see the module docstring."""
    unknown = sorted((set(args) | set(fixed)) - INTENT_FIELDS)
    if unknown:
        raise InvalidInputError(f"not intent fields: {', '.join(unknown)}")

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(function)
        missing = sorted(name for name in args.values() if name not in signature.parameters)
        if missing:
            raise InvalidInputError(f"`{function.__name__}` has no parameter {', '.join(missing)}")

        def intent_of(call_args: tuple[Any, ...], call_kwargs: dict[str, Any]) -> PaymentIntent:
            bound = signature.bind(*call_args, **call_kwargs)
            bound.apply_defaults()
            values = {field: bound.arguments[name] for field, name in args.items()}
            return PaymentIntent(agent=agent, action=action, **fixed, **values)

        if inspect.iscoroutinefunction(function):
            return _async_guard(warden, function, intent_of)
        return _sync_guard(warden, function, intent_of)

    return decorate


IntentOf = Callable[[tuple[Any, ...], dict[str, Any]], PaymentIntent]


def _sync_guard(
    warden: PaymentGuard, function: Callable[P, R], intent_of: IntentOf
) -> Callable[P, R]:
    @functools.wraps(function)
    def guarded(*call_args: P.args, **call_kwargs: P.kwargs) -> R:
        decision = warden.authorize(intent_of(call_args, call_kwargs))
        if not decision.allowed or decision.hold_id is None:
            raise denial(decision)
        try:
            result = function(*call_args, **call_kwargs)
        except BaseException:
            warden.void(decision.hold_id)
            raise
        warden.capture(decision.hold_id)
        return result

    return guarded


def _async_guard(
    warden: PaymentGuard, function: Callable[P, Any], intent_of: IntentOf
) -> Callable[P, Any]:
    @functools.wraps(function)
    async def guarded(*call_args: P.args, **call_kwargs: P.kwargs) -> Any:
        intent = intent_of(call_args, call_kwargs)
        decision = await asyncio.to_thread(warden.authorize, intent)
        if not decision.allowed or decision.hold_id is None:
            raise denial(decision)
        try:
            result = await function(*call_args, **call_kwargs)
        except BaseException:
            await asyncio.to_thread(warden.void, decision.hold_id)
            raise
        await asyncio.to_thread(warden.capture, decision.hold_id)
        return result

    return guarded
