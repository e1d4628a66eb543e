"""Exceptions raised by paywarden.

Expected outcomes of a payment request (deny, require approval) are *decisions*, not
exceptions. Exceptions are for input that cannot become a decision at all, for misuse of the
API, and for conflicts the caller must resolve. Messages follow one style: lowercase, no final
period, user input in backticks, one line.

The tree::

    PaywardenError
    ├── InvalidInputError (also ValueError)
    │   ├── InvalidAmountError
    │   ├── InvalidCurrencyError
    │   └── InvalidIntentError
    │       └── InvalidRecipientError   a recipient that is no valid payee
    ├── PolicyError
    │   └── PolicyCompileError      carries the CompileReport with every problem and its location
    ├── IdempotencyConflictError    same idempotency key, different intent
    ├── NotFoundError               an unknown hold, decision or approval id
    ├── StateConflictError          a transition that already happened (capture after void, ...)
    │   ├── ApprovalExpiredError    the approval's time ran out; its hold was released
    │   └── PhaseTransitionError    a session phase change other than EXPLORE -> DECIDE -> COMMIT
    ├── ForbiddenError              this principal may not do this (an agent approving, ...)
    ├── AuthenticationError         a missing, unknown or revoked API key
    └── StoreError                  the store failed; callers fail closed
        └── StoreBusyError          the store stayed locked past its busy timeout
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from paywarden.policy.report import CompileReport


class PaywardenError(Exception):
    """Base class of every paywarden exception.

    `decision_id` is set when the refusal was recorded as a decision in the audit log (a
    request whose fields could not become a payment intent), so the caller can cite it.
    """

    code: str = "paywarden_error"
    decision_id: str | None = None


class InvalidInputError(PaywardenError, ValueError):
    """Input that can never be turned into a payment decision."""

    code = "invalid_input"


class InvalidAmountError(InvalidInputError):
    """An amount that is not a positive, finite, exact number of minor units."""

    code = "invalid_amount"


class InvalidCurrencyError(InvalidInputError):
    """A currency code that is unknown, a test or metal code, or not plain ASCII."""

    code = "invalid_currency"


class InvalidIntentError(InvalidInputError):
    """A payment intent field that is missing, malformed or out of bounds."""

    code = "invalid_intent"


class InvalidRecipientError(InvalidIntentError):
    """A recipient that cannot be parsed into a payee: a malformed host, a URL with user
    information or an unsupported scheme, a bad checksum, invisible characters."""

    code = "invalid_recipient"


class PolicyError(PaywardenError):
    """A policy that cannot be loaded."""

    code = "policy_invalid"


class PolicyCompileError(PolicyError):
    """A policy document with errors; `report` lists each one with its location."""

    def __init__(self, report: CompileReport) -> None:
        self.report = report
        super().__init__(report.summary())


class IdempotencyConflictError(PaywardenError):
    """An idempotency key reused for a different intent."""

    code = "idempotency_key_reused"


class NotFoundError(PaywardenError):
    """An id that names no hold, decision or approval."""

    code = "not_found"


class StateConflictError(PaywardenError):
    """A state transition that is no longer possible (it already happened once)."""

    code = "state_conflict"


class ApprovalExpiredError(StateConflictError):
    """An approval request that expired before it was decided; its hold is released."""

    code = "approval_expired"


class PhaseTransitionError(StateConflictError):
    """A session phase change other than EXPLORE -> DECIDE -> COMMIT."""

    code = "phase_transition_invalid"


class ForbiddenError(PaywardenError):
    """The principal may not do this: not a registered operator, the requester, a repeat vote."""

    code = "forbidden"


class AuthenticationError(PaywardenError):
    """A missing, malformed, unknown or revoked API key."""

    code = "unauthenticated"


class StoreError(PaywardenError):
    """The store failed; paywarden denies rather than guess."""

    code = "store_unavailable"


class StoreBusyError(StoreError):
    """The store stayed locked past the busy timeout."""

    code = "store_busy"
