"""paywarden: the payment firewall for AI agents.

Every payment intent is evaluated by a deterministic policy (allow, deny, require approval),
held atomically against budgets, and recorded with the reasons.
"""

from paywarden.actions.grants import GrantRequest
from paywarden.adapters.notify.webhook import WebhookOptions, verify_signature
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
from paywarden.money import CurrencyTable, Money
from paywarden.policy import CompiledPolicy, CompileReport, Decision, compile_policy
from paywarden.warden import Warden

__version__ = "0.1.0"

__all__ = [
    "ApprovalExpiredError",
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
    "Money",
    "NotFoundError",
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
    "verify_signature",
]
