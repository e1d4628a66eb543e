"""Ports: the seams between the Warden and the outside world (storage, clocks, ids).

The store is written so that each statement ports to PostgreSQL: budget counters are reserved
with one conditional UPDATE per counter row (`... WHERE spent + held + amount <= limit`), rows
are locked in a fixed order, and rolling windows are summed only while their head row is
locked. Nothing is ever decided by reading a total in Python and writing it back later.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

from paywarden.audit.chain import AuditEntry

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


class LedgerTx(Protocol):
    """Statements available inside one store transaction."""

    def decision_by_key(self, agent: str, idempotency_key: str) -> StoredDecision | None: ...
    def decision_body(self, decision_id: str) -> str | None:
        """The body of the decision's audit entry (its "decision" member is the decision)."""
        ...

    def insert_decision(self, row: NewDecision) -> None: ...

    def lock_counter(
        self, budget_id: str, scope_key: str, window_start_us: int, currency: str
    ) -> CounterRow: ...
    def rolling_usage(self, budget_id: str, scope_key: str, since_us: int) -> tuple[int, int]: ...
    def reserve(
        self,
        budget_id: str,
        scope_key: str,
        window_start_us: int,
        amount_minor: int,
        limit_minor: int,
    ) -> bool: ...
    def release(self, charge: ChargeRow, captured_minor: int) -> None: ...

    def velocity_usage(
        self, velocity_id: str, scope_key: str, since_us: int
    ) -> tuple[int, int | None]: ...
    def record_velocity(
        self, velocity_id: str, scope_key: str, created_us: int, hold_id: str | None
    ) -> None: ...

    def insert_hold(self, hold: HoldRow, charges: Sequence[ChargeRow]) -> None: ...
    def hold(self, hold_id: str) -> HoldRow | None: ...
    def charges(self, hold_id: str) -> list[ChargeRow]: ...
    def resolve_hold(
        self, hold_id: str, state: HoldState, now_us: int, captured_minor: int | None
    ) -> bool: ...
    def set_charge_amount(self, hold_id: str, budget_id: str, amount_minor: int) -> None: ...
    def hold_set_expiry(self, hold_id: str, expires_us: int) -> None: ...
    def due_holds(self, now_us: int, limit: int) -> list[str]: ...
    def counters(self) -> list[CounterRow]: ...

    def audit_head(self) -> AuditEntry | None: ...
    def audit_insert(self, entry: AuditEntry) -> None: ...
    def audit_entries(self, after_seq: int, limit: int) -> list[AuditEntry]: ...
    def audit_by_ref(self, ref_id: str) -> list[AuditEntry]: ...
    def meta_get(self, key: str) -> str | None: ...

    def operator(self, operator_id: str) -> OperatorRow | None: ...
    def operator_insert(self, row: OperatorRow) -> bool: ...
    def operators(self) -> list[OperatorRow]: ...
    def approval(self, approval_id: str) -> ApprovalRow | None: ...
    def approval_open(self, agent: str, binding: str, now_us: int) -> ApprovalRow | None: ...
    def approval_insert(self, row: ApprovalRow) -> None: ...
    def approval_transition(
        self, approval_id: str, source: str, target: str, now_us: int, note: str | None
    ) -> bool: ...
    def approvals(self, status: str | None, agent: str | None, limit: int) -> list[ApprovalRow]: ...
    def approval_by_hold(self, hold_id: str) -> ApprovalRow | None: ...
    def votes(self, approval_id: str) -> list[VoteRow]: ...
    def vote_insert(self, row: VoteRow) -> bool: ...
    def grant_insert(self, row: GrantRow) -> None: ...
    def grant(self, grant_id: str) -> GrantRow | None: ...
    def grants(self, agent: str | None, active_at_us: int | None) -> list[GrantRow]: ...
    def grant_consume(self, grant_id: str, amount_minor: int, now_us: int) -> bool: ...
    def grant_revoke(self, grant_id: str, now_us: int) -> bool: ...
    def halt_set(self, row: HaltRow) -> bool: ...
    def halt_clear(self, scope: str) -> bool: ...
    def halt_for(self, agent: str) -> HaltRow | None: ...
    def halts(self) -> list[HaltRow]: ...
    def outbox_insert(self, kind: str, body: str, now_us: int) -> None: ...
    def payment_insert(self, row: PaymentRow) -> None: ...
    def payment(self, payment_id: str) -> PaymentRow | None: ...
    def payment_by_decision(self, decision_id: str) -> PaymentRow | None: ...
    def payments_open(self, limit: int) -> list[PaymentRow]: ...
    def payments(self, agent: str | None, state: str | None, limit: int) -> list[PaymentRow]: ...
    def payment_transition(
        self,
        payment_id: str,
        source: str,
        target: str,
        now_us: int,
        rail_payment_id: str | None,
        error: str | None,
    ) -> bool: ...
    def payment_add_refund(self, payment_id: str, amount_minor: int, now_us: int) -> bool: ...
    def breaker(self, rail: str) -> BreakerRow: ...
    # Sessions, refunds, disputes and compensation scopes
    def session(self, agent: str, session_id: str) -> SessionRow | None: ...
    def session_insert(self, row: SessionRow) -> bool: ...
    def session_transition(
        self, agent: str, session_id: str, source: Phase, target: Phase, now_us: int
    ) -> bool: ...
    def refund_insert(self, row: RefundRow) -> None: ...
    def refund(self, refund_id: str) -> RefundRow | None: ...
    def refunds(self, payment_id: str) -> list[RefundRow]: ...
    def refunds_open(self, limit: int) -> list[RefundRow]: ...
    def refund_transition(
        self,
        refund_id: str,
        source: RefundState,
        target: RefundState,
        now_us: int,
        rail_refund_id: str | None,
        error: str | None,
    ) -> bool: ...
    def charge_restore(self, charge: ChargeRow, amount_minor: int) -> None: ...
    def dispute_insert(self, row: DisputeRow) -> None: ...
    def dispute(self, dispute_id: str) -> DisputeRow | None: ...
    def disputes(
        self, payment_id: str | None, status: str | None, limit: int
    ) -> list[DisputeRow]: ...
    def dispute_transition(
        self,
        dispute_id: str,
        source: DisputeStatus,
        target: DisputeStatus,
        now_us: int,
        resolution: str | None,
        refund_id: str | None,
    ) -> bool: ...
    def scope_insert(self, row: ScopeRow) -> None: ...
    def scope(self, scope_id: str) -> ScopeRow | None: ...
    def scopes(self, status: str | None, limit: int) -> list[ScopeRow]: ...
    def scope_transition(
        self, scope_id: str, source: ScopeStatus, target: ScopeStatus, now_us: int
    ) -> bool: ...
    def scope_step_insert(self, row: ScopeStepRow) -> None: ...
    def scope_steps(self, scope_id: str) -> list[ScopeStepRow]: ...
    def scope_step_mark(
        self, scope_id: str, step: int, state: StepState, error: str | None, now_us: int
    ) -> bool: ...
    def breaker_save(self, row: BreakerRow) -> None: ...
    def outbox_due(self, now_us: int, limit: int) -> list[OutboxRow]: ...
    def outbox_mark(
        self, event_id: int, delivered_us: int | None, next_attempt_us: int, error: str | None
    ) -> None: ...
    def key_insert(self, row: KeyRow) -> None: ...
    def key(self, key_id: str) -> KeyRow | None: ...
    def keys(self) -> list[KeyRow]: ...
    def key_revoke(self, key_id: str, now_us: int) -> bool: ...
    def idempotency_get(self, scope: str, key: str) -> IdempotencyRow | None: ...
    def idempotency_claim(
        self, scope: str, key: str, fingerprint: str, now_us: int, stale_before_us: int
    ) -> bool:
        """Insert an in-progress claim, or take over one left in progress before
        `stale_before_us` (a crashed request); false when the key is taken."""
        ...

    def idempotency_finish(
        self, scope: str, key: str, status: int, body: str, now_us: int
    ) -> None: ...
    def idempotency_release(self, scope: str, key: str) -> None: ...
    def meta_set(self, key: str, value: str) -> None: ...
    def approvals_pending_totals(self, agent: str, now_us: int) -> list[tuple[str, int, int]]:
        """(currency, count, amount_minor) of the agent's pending requests that have not
        expired at `now_us`, per currency of their holds, in one indexed query (the per-agent
        caps of the policy's `approvals:`)."""
        ...

    def approvals_fair_page(
        self, status: str | None, agent: str | None, limit: int, offset: int
    ) -> list[ApprovalRow]:
        """Approvals in the operators' fair order: pending first, each agent taking turns
        (see docs/approvals.md, "The inbox"); `limit` rows from `offset`."""
        ...


class Store(Protocol):
    """A durable store. `write()` is one serialised transaction that commits on success."""

    def write(self) -> AbstractContextManager[LedgerTx]: ...
    def read(self) -> AbstractContextManager[LedgerTx]: ...
    def close(self) -> None: ...


class IdSource(Protocol):
    def __call__(self, prefix: str) -> str: ...
