"""The rows that cross the store port: frozen dataclasses, one per table row the core reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

HoldState = Literal["held", "captured", "voided", "expired"]


@dataclass(frozen=True, slots=True)
class StoredDecision:
    decision_id: str
    fingerprint: str
    body: str  # the decision's audit entry body (canonical JSON)


@dataclass(frozen=True, slots=True)
class HoldRow:
    hold_id: str
    decision_id: str
    agent: str
    amount_minor: int
    currency: str
    state: HoldState
    created_us: int
    expires_us: int
    resolved_us: int | None
    captured_minor: int | None


@dataclass(frozen=True, slots=True)
class ChargeRow:
    """What one hold reserved against one budget counter, in the budget's currency."""

    hold_id: str
    budget_id: str
    scope_key: str
    window_start_us: int
    amount_minor: int
    restored_minor: int = 0  # given back to the budget by refunds (policy `refunds:`)


@dataclass(frozen=True, slots=True)
class CounterRow:
    budget_id: str
    scope_key: str
    window_start_us: int
    currency: str
    spent_minor: int
    held_minor: int


@dataclass(frozen=True, slots=True)
class NewDecision:
    decision_id: str
    created_us: int
    agent: str
    action: str
    amount_minor: int
    currency: str
    recipient: str
    outcome: str
    reason_code: str
    idempotency_key: str | None
    fingerprint: str
    hold_id: str | None
    policy_version: str
    audit_seq: int
    category: str | None = None  # the intent's category (the decision's fact row, analytics)
    anomalous: bool = False  # the anomaly facts flagged it (`anomaly.auto_halt` counts these)


@dataclass(frozen=True, slots=True)
class OperatorRow:
    operator_id: str
    name: str
    created_us: int
    disabled_us: int | None = None


ApprovalStatus = Literal["pending", "approved", "rejected", "expired", "consumed", "voided"]


@dataclass(frozen=True, slots=True)
class ApprovalRow:
    approval_id: str
    decision_id: str
    hold_id: str
    agent: str
    binding: str  # the intent fingerprint the approval is bound to
    intent: str  # the intent as canonical JSON, for re-evaluation at approval time
    status: ApprovalStatus
    required: int  # distinct operators needed: 1, or 2 above the four-eyes amount
    rule_ids: str  # JSON list
    created_us: int
    expires_us: int
    decided_us: int | None
    note: str | None


@dataclass(frozen=True, slots=True)
class VoteRow:
    approval_id: str
    operator_id: str
    vote: Literal["approve", "reject"]
    reason: str
    created_us: int


@dataclass(frozen=True, slots=True)
class GrantRow:
    grant_id: str
    agent: str
    action: str  # a glob such as `payments.*`
    currency: str
    per_payment_minor: int
    total_minor: int
    used_minor: int
    uses_max: int | None
    uses: int
    recipients: str  # JSON list of globs; empty means any recipient
    created_by: str
    created_us: int
    expires_us: int
    revoked_us: int | None


@dataclass(frozen=True, slots=True)
class HaltRow:
    scope: str  # "*" for everything, else an agent id
    reason: str
    actor: str
    created_us: int


@dataclass(frozen=True, slots=True)
class OutboxRow:
    event_id: int
    kind: str
    body: str
    created_us: int
    attempts: int
    next_attempt_us: int
    delivered_us: int | None
    last_error: str | None


PaymentState = Literal["authorized", "submitted", "settled", "failed", "unknown", "refunded"]


@dataclass(frozen=True, slots=True)
class PaymentRow:
    payment_id: str
    decision_id: str
    hold_id: str
    agent: str
    rail: str
    rail_key: str  # the idempotency key the rail sees, the same on every retry
    intent: str  # JSON
    amount_minor: int
    currency: str
    state: PaymentState
    rail_payment_id: str | None
    refunded_minor: int
    error: str | None
    created_us: int
    updated_us: int


@dataclass(frozen=True, slots=True)
class BreakerRow:
    rail: str
    state: Literal["closed", "open", "half_open"]
    consecutive_failures: int
    opened_us: int | None


Phase = Literal["EXPLORE", "DECIDE", "COMMIT"]


@dataclass(frozen=True, slots=True)
class SessionRow:
    agent: str
    session_id: str
    phase: Phase
    created_us: int
    updated_us: int


RefundState = Literal["submitted", "settled", "failed", "unknown"]


@dataclass(frozen=True, slots=True)
class RefundRow:
    refund_id: str
    payment_id: str
    amount_minor: int
    currency: str
    state: RefundState
    rail_key: str  # the refund's own idempotency key, the same on every retry
    rail_refund_id: str | None
    reason: str
    actor: str
    error: str | None
    created_us: int
    updated_us: int


DisputeStatus = Literal["open", "under_review", "refunded", "rejected", "withdrawn"]


@dataclass(frozen=True, slots=True)
class DisputeRow:
    dispute_id: str
    payment_id: str
    status: DisputeStatus
    reason: str
    evidence: str  # JSON: the decision's proof trace and the audit entries behind the payment
    opened_by: str
    resolution: str | None
    refund_id: str | None
    created_us: int
    updated_us: int


ScopeStatus = Literal["open", "committed", "compensated", "compensation_failed"]
StepState = Literal["registered", "compensated", "failed"]


@dataclass(frozen=True, slots=True)
class ScopeRow:
    scope_id: str
    agent: str
    status: ScopeStatus
    created_us: int
    updated_us: int


@dataclass(frozen=True, slots=True)
class ScopeStepRow:
    scope_id: str
    step: int
    payment_id: str | None
    label: str
    state: StepState
    error: str | None
    updated_us: int


@dataclass(frozen=True, slots=True)
class KeyRow:
    """An API key as stored: never the key itself, only its keyed hash (see paywarden.keys)."""

    key_id: str
    prefix: str  # `pw_<env>_<id>`: the non-secret head, safe to show
    digest: str  # HMAC-SHA256 of the full key under the server secret
    role: Literal["agent", "operator", "admin"]
    agent: str | None
    operator: str | None
    environment: str | None
    created_by: str
    created_us: int
    revoked_us: int | None = None


@dataclass(frozen=True, slots=True)
class IdempotencyRow:
    """A REST request claimed under an `Idempotency-Key`, and its stored response once done."""

    scope: str  # the principal and route the key is scoped to
    key: str
    fingerprint: str  # SHA-256 of the route and the canonical request body
    state: Literal["in_progress", "done"]
    status: int | None
    body: str | None
    created_us: int
    updated_us: int


class RollingUsage(NamedTuple):
    """What a rolling budget's live charges add up to: captured (less refunds) and held."""

    spent_minor: int
    held_minor: int


class VelocityUsage(NamedTuple):
    event_count: int  # events inside the window
    last_us: int | None  # the newest event ever recorded (for cooldowns), None when none


class PendingTotal(NamedTuple):
    """An agent's live pending approval requests in one currency (the policy's queue caps)."""

    currency: str
    request_count: int
    amount_minor: int


# Repositories ---------------------------------------------------------------------------------
#
# One small repository per aggregate, all sharing one transaction (the `UnitOfWork`). Every
# repository names its methods the same way:
#   get(id) / get_by_<field>(...) / get_<which>(...)
#                                   one row or None
#   list_<which>(...)               rows, in the order the docstring states
#   insert(row)                     a new row; a duplicate key is a StoreError
#   insert_if_absent(row)           a new row, or False (and nothing changed) when the key exists
#   transition(id, source, target, now_us, ...)
#                                   compare-and-set of the status: False when it was not `source`
#                                   (a hold and a scope step leave only one state, so they take
#                                   no `source`)
#   <verb>_<child>(...)             the same for a child row (`insert_step`, `list_votes`)
#   a domain verb (reserve, release, restore, consume, revoke, claim, ...) for the other
#   conditional updates; each is one atomic statement whose condition the docstring states.


GoalStatus = Literal["running", "paid", "pending_approval", "denied", "exhausted", "failed"]


@dataclass(frozen=True, slots=True)
class GoalRunRow:
    """One agent goal run (`actions.goals`): the goal in words, its attempts as canonical JSON
    text (a list, oldest first) and how it ended."""

    run_id: str
    agent: str
    goal: str
    session_id: str
    status: GoalStatus
    attempts: str
    max_attempts: int
    payment_id: str | None
    approval_id: str | None
    error: str | None
    created_us: int
    updated_us: int


# Analytics (issue 17): aggregates of `decision_facts`, per currency (never summed across).


@dataclass(frozen=True, slots=True)
class SpendRow:
    """One group's decisions in one currency: `key` is the group's value (an agent, recipient,
    category (None: none given), action or currency; a time bucket's start in microseconds).
    `allowed_minor` sums allowed decisions' amounts, `captured_minor` what their holds
    captured."""

    key: str | int | None
    currency: str
    decisions: int
    allowed: int
    denied: int
    pending: int
    allowed_minor: int
    captured_minor: int


@dataclass(frozen=True, slots=True)
class DenialRow:
    reason_code: str
    denials: int


@dataclass(frozen=True, slots=True)
class TurnaroundRow:
    """Approval requests created in a range: how many of each status, and how long those an
    operator decided (approved, consumed or rejected) waited for the deciding vote, nearest-rank
    median and 90th percentile in microseconds (None when none was decided)."""

    requested: int
    approved: int
    rejected: int
    expired: int
    open: int
    median_us: int | None
    p90_us: int | None


@dataclass(frozen=True, slots=True)
class AgentActivity:
    """One agent's decisions since two instants (the anomaly facts' rate spike)."""

    recent: int
    baseline: int
