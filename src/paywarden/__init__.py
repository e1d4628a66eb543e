"""paywarden: the payment firewall for AI agents.

Every payment intent is evaluated by a deterministic policy (allow, deny, require approval),
held atomically against budgets, and recorded with the reasons.

The public names load on first use (PEP 562), so `import paywarden` and `paywarden --version`
load almost nothing; `from paywarden import Warden` loads the library as before.
"""

import importlib
import typing

__version__ = "0.1.0"  # the one place the version is written: pyproject.toml reads it

# Public name -> the module that defines it.
_MODULE_OF: dict[str, str] = {
    "ApprovalExpiredError": "paywarden.errors",
    "ApprovalPendingError": "paywarden.agents.guard",
    "AuditOptions": "paywarden.audit.service",
    "Clock": "paywarden.clock",
    "CompileReport": "paywarden.policy.report",
    "CompiledPolicy": "paywarden.policy.compiler",
    "CurrencyTable": "paywarden.money",
    "Decision": "paywarden.policy.decision",
    "ForbiddenError": "paywarden.errors",
    "FrozenClock": "paywarden.clock",
    "GrantRequest": "paywarden.actions.grants",
    "IdempotencyConflictError": "paywarden.errors",
    "InvalidAmountError": "paywarden.errors",
    "InvalidCurrencyError": "paywarden.errors",
    "InvalidInputError": "paywarden.errors",
    "InvalidIntentError": "paywarden.errors",
    "Mandate": "paywarden.mandates",
    "MandateRefusal": "paywarden.mandates",
    "Money": "paywarden.money",
    "NotFoundError": "paywarden.errors",
    "OfflinePlanner": "paywarden.agents.offline",
    "PaymentDeniedError": "paywarden.agents.guard",
    "PaymentIntent": "paywarden.intent",
    "PaywardenError": "paywarden.errors",
    "PolicyCompileError": "paywarden.errors",
    "PolicyError": "paywarden.errors",
    "StateConflictError": "paywarden.errors",
    "StoreBusyError": "paywarden.errors",
    "StoreError": "paywarden.errors",
    "SystemClock": "paywarden.clock",
    "Warden": "paywarden.warden",
    "WebhookOptions": "paywarden.adapters.notify.webhook",
    "compile_policy": "paywarden.policy.compiler",
    "guarded_payment": "paywarden.agents.guard",
    "verify_signature": "paywarden.adapters.notify.webhook",
}

__all__ = [
    "ApprovalExpiredError",
    "ApprovalPendingError",
    "AuditOptions",
    "Clock",
    "CompileReport",
    "CompiledPolicy",
    "CurrencyTable",
    "Decision",
    "ForbiddenError",
    "FrozenClock",
    "GrantRequest",
    "IdempotencyConflictError",
    "InvalidAmountError",
    "InvalidCurrencyError",
    "InvalidInputError",
    "InvalidIntentError",
    "Mandate",
    "MandateRefusal",
    "Money",
    "NotFoundError",
    "OfflinePlanner",
    "PaymentDeniedError",
    "PaymentIntent",
    "PaywardenError",
    "PolicyCompileError",
    "PolicyError",
    "StateConflictError",
    "StoreBusyError",
    "StoreError",
    "SystemClock",
    "Warden",
    "WebhookOptions",
    "__version__",
    "compile_policy",
    "guarded_payment",
    "verify_signature",
]

if typing.TYPE_CHECKING:  # what type checkers and IDEs see; never run
    from paywarden.actions.grants import GrantRequest
    from paywarden.adapters.notify.webhook import WebhookOptions, verify_signature
    from paywarden.agents.guard import ApprovalPendingError, PaymentDeniedError, guarded_payment
    from paywarden.agents.offline import OfflinePlanner
    from paywarden.audit.service import AuditOptions
    from paywarden.clock import Clock, FrozenClock, SystemClock
    from paywarden.errors import (
        ApprovalExpiredError,
        ForbiddenError,
        IdempotencyConflictError,
        InvalidAmountError,
        InvalidCurrencyError,
        InvalidInputError,
        InvalidIntentError,
        NotFoundError,
        PaywardenError,
        PolicyCompileError,
        PolicyError,
        StateConflictError,
        StoreBusyError,
        StoreError,
    )
    from paywarden.intent import PaymentIntent
    from paywarden.mandates import Mandate, MandateRefusal
    from paywarden.money import CurrencyTable, Money
    from paywarden.policy.compiler import CompiledPolicy, compile_policy
    from paywarden.policy.decision import Decision
    from paywarden.policy.report import CompileReport
    from paywarden.warden import Warden


if not typing.TYPE_CHECKING:  # hidden from type checkers, so a misspelt name stays an error

    def __getattr__(name: str) -> object:
        """Load a public name's module on first use and keep the name here for the next one."""
        module = _MODULE_OF.get(name)
        if module is None:
            raise AttributeError(f"module 'paywarden' has no attribute {name!r}")
        value: object = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULE_OF})
