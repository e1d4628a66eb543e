"""The store port: small repositories, one per aggregate, behind one unit of work."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar

from paywarden.audit.chain import AuditEntry
from paywarden.ports.facts import FactRepository
from paywarden.ports.mandates import MandateRepository
from paywarden.ports.observe import AlertRepository, GaugeRepository
from paywarden.ports.rows import (
    ApprovalRow,
    ApprovalStatus,
    BreakerRow,
    ChargeRow,
    CounterRow,
    DisputeRow,
    DisputeStatus,
    GoalRunRow,
    GrantRow,
    HaltRow,
    HoldRow,
    HoldState,
    IdempotencyRow,
    KeyRow,
    NewDecision,
    OperatorRow,
    OutboxRow,
    PaymentRow,
    PaymentState,
    PendingTotal,
    Phase,
    RefundRow,
    RefundState,
    RollingUsage,
    ScopeRow,
    ScopeStatus,
    ScopeStepRow,
    SessionRow,
    StepState,
    StoredDecision,
    VelocityUsage,
    VoteRow,
)

T = TypeVar("T")

# tests/contract/test_store_port.py checks every method name against this scheme.


class DecisionRepository(Protocol):
    """Decisions as indexed rows; the decision itself is the body of its audit entry."""

    def get_by_key(self, agent: str, idempotency_key: str) -> StoredDecision | None: ...
    def get_body(self, decision_id: str) -> str | None:
        """The body of the decision's audit entry (its "decision" member is the decision)."""
        ...

    def insert(self, row: NewDecision) -> None:
        """A duplicate id, or a second decision under one agent's idempotency key, is an error."""
        ...


class BudgetRepository(Protocol):
    """Budget counters and velocity events: the state that limits spending."""

    def lock_counter(
        self, budget_id: str, scope_key: str, window_start_us: int, currency: str
    ) -> CounterRow:
        """Create the counter row if needed (spent and held 0), lock it and read it."""
        ...

    def reserve(
        self,
        budget_id: str,
        scope_key: str,
        window_start_us: int,
        amount_minor: int,
        limit_minor: int,
    ) -> bool:
        """Add `amount_minor` to held only while `spent + held + amount <= limit` (one
        conditional update); False, and nothing changed, when it does not fit."""
        ...

    def release(self, charge: ChargeRow, captured_minor: int) -> None:
        """Move a resolved charge out of held: `captured_minor` becomes spent, the rest is
        freed. No-op for rolling charges (`window_start_us == -1`); a StoreError when the
        counter does not hold the charge."""
        ...

    def restore(self, charge: ChargeRow, amount_minor: int) -> None:
        """Give `amount_minor` of a captured charge back to its budget (a refund); a StoreError,
        and nothing changed, past what the charge captured."""
        ...

    def get_rolling_usage(self, budget_id: str, scope_key: str, since_us: int) -> RollingUsage:
        """A rolling budget's captured (less restored) and held charges created after
        `since_us`."""
        ...

    def get_velocity_usage(self, velocity_id: str, scope_key: str, since_us: int) -> VelocityUsage:
        """Events after `since_us`, and the newest event's time whatever its age."""
        ...

    def insert_velocity_event(
        self, velocity_id: str, scope_key: str, created_us: int, hold_id: str | None
    ) -> None: ...
    def list_counters(self) -> list[CounterRow]:
        """Every counter, by budget, scope key and window."""
        ...


class HoldRepository(Protocol):
    """Holds and the charges each one reserved against budget counters."""

    def get(self, hold_id: str) -> HoldRow | None: ...
    def insert(self, hold: HoldRow, charges: Sequence[ChargeRow]) -> None:
        """A new held hold and its charges (stored as held whatever `hold.state` says)."""
        ...

    def transition(
        self, hold_id: str, target: HoldState, now_us: int, captured_minor: int | None
    ) -> bool:
        """Compare-and-set held -> `target` on the hold and its charges; False when the hold
        was already resolved."""
        ...

    def set_expiry(self, hold_id: str, expires_us: int) -> None:
        """Move a held hold's deadline (no effect once it is resolved)."""
        ...

    def list_due(self, now_us: int, limit: int) -> list[str]:
        """Ids of held holds whose deadline is at or before `now_us`, earliest deadline first."""
        ...

    def list_charges(self, hold_id: str) -> list[ChargeRow]:
        """The hold's charges, by budget id."""
        ...

    def set_charge_amount(self, hold_id: str, budget_id: str, amount_minor: int) -> None: ...


class AuditRepository(Protocol):
    """The append-only, hash-chained audit log."""

    def get_head(self) -> AuditEntry | None:
        """The last entry's link fields; its body may be left out (appending never needs it)."""
        ...

    def append(self, entry: AuditEntry) -> None:
        """Store the next entry; a sequence number already taken is an error."""
        ...

    def list_after(self, after_seq: int, limit: int) -> list[AuditEntry]:
        """Up to `limit` entries with `seq > after_seq`, in sequence order."""
        ...

    def list_by_ref(self, ref_id: str) -> list[AuditEntry]:
        """Every entry about `ref_id` (a decision, hold, approval ...), in sequence order."""
        ...


class MetaRepository(Protocol):
    """Small named settings shared by every process (policy versions, feature switches)."""

    def get(self, key: str) -> str | None: ...
    def set(self, key: str, value: str) -> None:
        """Insert or replace."""
        ...


class OperatorRepository(Protocol):
    def get(self, operator_id: str) -> OperatorRow | None: ...
    def insert_if_absent(self, row: OperatorRow) -> bool: ...
    def list_all(self) -> list[OperatorRow]:
        """By operator id."""
        ...


class ApprovalRepository(Protocol):
    """Approval requests and the operators' votes on them."""

    def get(self, approval_id: str) -> ApprovalRow | None: ...
    def get_open(self, agent: str, binding: str, now_us: int) -> ApprovalRow | None:
        """The oldest pending or approved request with this binding unexpired at `now_us`."""
        ...

    def get_by_hold(self, hold_id: str) -> ApprovalRow | None: ...
    def insert(self, row: ApprovalRow) -> None: ...
    def transition(
        self,
        approval_id: str,
        source: ApprovalStatus,
        target: ApprovalStatus,
        now_us: int,
        note: str | None,
    ) -> bool:
        """Compare-and-set; sets `decided_us`, and `note` unless it is None."""
        ...

    def list_recent(self, status: str | None, agent: str | None, limit: int) -> list[ApprovalRow]:
        """Newest first; None filters nothing (so does no filter: an unknown status matches
        no row)."""
        ...

    def list_fair_page(
        self, status: str | None, agent: str | None, limit: int, offset: int
    ) -> list[ApprovalRow]:
        """Approvals in the operators' fair order: pending first (oldest first), then the rest
        (newest first); within each group agents take turns (see docs/approvals.md, "The
        inbox"); ties by id. `limit` rows from `offset`."""
        ...

    def list_pending_totals(self, agent: str, now_us: int) -> list[PendingTotal]:
        """The agent's pending requests unexpired at `now_us`, per currency of their holds, by
        currency, in one indexed query (the per-agent caps of the policy's `approvals:`)."""
        ...

    def list_votes(self, approval_id: str) -> list[VoteRow]:
        """By time, then operator id."""
        ...

    def insert_vote_if_absent(self, row: VoteRow) -> bool:
        """False when this operator already voted on this approval (one person counts once)."""
        ...


class GrantRepository(Protocol):
    """Standing grants: pre-approved spending an operator gave an agent."""

    def get(self, grant_id: str) -> GrantRow | None: ...
    def insert(self, row: GrantRow) -> None: ...
    def list_by_agent(self, agent: str | None, active_at_us: int | None) -> list[GrantRow]:
        """Oldest first; `agent` None means every agent; with `active_at_us`, only grants
        neither revoked nor expired at that instant."""
        ...

    def consume(self, grant_id: str, amount_minor: int, now_us: int) -> bool:
        """Use the grant for one payment, atomically within its per-payment and total
        ceilings, its use count and its lifetime; False, and nothing changed, otherwise."""
        ...

    def revoke(self, grant_id: str, now_us: int) -> bool:
        """False when it was already revoked (or does not exist)."""
        ...


class HaltRepository(Protocol):
    """The kill switch: halts for everything (`*`) or one agent."""

    def insert_if_absent(self, row: HaltRow) -> bool: ...
    def delete(self, scope: str) -> bool:
        """False when that scope was not halted."""
        ...

    def get_for_agent(self, agent: str) -> HaltRow | None:
        """The halt that stops `agent`: everything (`*`) first, then the agent's own."""
        ...

    def list_all(self) -> list[HaltRow]:
        """By scope."""
        ...


class PaymentRepository(Protocol):
    def get(self, payment_id: str) -> PaymentRow | None: ...
    def get_by_decision(self, decision_id: str) -> PaymentRow | None: ...
    def insert(self, row: PaymentRow) -> None:
        """A second payment for a decision, or a reused rail key, is an error."""
        ...

    def transition(
        self,
        payment_id: str,
        source: PaymentState,
        target: PaymentState,
        now_us: int,
        rail_payment_id: str | None,
        error: str | None,
    ) -> bool:
        """Compare-and-set; sets `error`, and `rail_payment_id` unless it is None."""
        ...

    def add_refund(self, payment_id: str, amount_minor: int, now_us: int) -> bool:
        """Count a refund against a settled payment while the total stays within its amount;
        the payment becomes `refunded` once fully refunded. False, and nothing changed,
        otherwise."""
        ...

    def list_open(self, limit: int) -> list[PaymentRow]:
        """Authorized, submitted or unknown payments, oldest first."""
        ...

    def list_recent(self, agent: str | None, state: str | None, limit: int) -> list[PaymentRow]:
        """Newest first, ties by id; None filters nothing."""
        ...


class RefundRepository(Protocol):
    def get(self, refund_id: str) -> RefundRow | None: ...
    def insert(self, row: RefundRow) -> None: ...
    def transition(
        self,
        refund_id: str,
        source: RefundState,
        target: RefundState,
        now_us: int,
        rail_refund_id: str | None,
        error: str | None,
    ) -> bool:
        """Compare-and-set; sets `error`, and `rail_refund_id` unless it is None."""
        ...

    def list_by_payment(self, payment_id: str) -> list[RefundRow]:
        """Oldest first; refunds made in the same microsecond in the order of their rail keys'
        numbers (`..._r2` before `..._r10`)."""
        ...

    def list_open(self, limit: int) -> list[RefundRow]:
        """Submitted or unknown refunds, oldest first."""
        ...


class BreakerRepository(Protocol):
    """One circuit breaker per rail."""

    def get(self, rail: str) -> BreakerRow:
        """The stored breaker, or a closed one with no failures."""
        ...

    def save(self, row: BreakerRow) -> None:
        """Insert or replace."""
        ...


class SessionRepository(Protocol):
    """Agent sessions and their phases."""

    def get(self, agent: str, session_id: str) -> SessionRow | None: ...
    def insert_if_absent(self, row: SessionRow) -> bool: ...
    def transition(
        self, agent: str, session_id: str, source: Phase, target: Phase, now_us: int
    ) -> bool: ...


class ScopeRepository(Protocol):
    """Compensation scopes and their steps."""

    def get(self, scope_id: str) -> ScopeRow | None: ...
    def insert(self, row: ScopeRow) -> None: ...
    def transition(
        self, scope_id: str, source: ScopeStatus, target: ScopeStatus, now_us: int
    ) -> bool: ...
    def list_recent(self, status: str | None, limit: int) -> list[ScopeRow]:
        """Newest first, ties by id; None filters nothing."""
        ...

    def insert_step(self, row: ScopeStepRow) -> None: ...
    def list_steps(self, scope_id: str) -> list[ScopeStepRow]:
        """By step number."""
        ...

    def transition_step(
        self, scope_id: str, step: int, target: StepState, error: str | None, now_us: int
    ) -> bool:
        """Compare-and-set registered -> `target`, recording `error`."""
        ...


class DisputeRepository(Protocol):
    def get(self, dispute_id: str) -> DisputeRow | None: ...
    def insert(self, row: DisputeRow) -> None: ...
    def transition(
        self,
        dispute_id: str,
        source: DisputeStatus,
        target: DisputeStatus,
        now_us: int,
        resolution: str | None,
        refund_id: str | None,
    ) -> bool:
        """Compare-and-set; sets `resolution` and `refund_id` unless they are None."""
        ...

    def list_recent(
        self, payment_id: str | None, status: str | None, limit: int
    ) -> list[DisputeRow]:
        """Newest first, ties by id; None filters nothing."""
        ...


class KeyRepository(Protocol):
    """API keys (only their keyed hashes)."""

    def get(self, key_id: str) -> KeyRow | None: ...
    def insert(self, row: KeyRow) -> None: ...
    def list_all(self) -> list[KeyRow]:
        """Oldest first, ties by id."""
        ...

    def revoke(self, key_id: str, now_us: int) -> bool:
        """False when it was already revoked (or does not exist)."""
        ...


class IdempotencyRepository(Protocol):
    """REST requests claimed under an `Idempotency-Key`, and their stored responses."""

    def get(self, scope: str, key: str) -> IdempotencyRow | None: ...
    def claim(
        self, scope: str, key: str, fingerprint: str, now_us: int, stale_before_us: int
    ) -> bool:
        """Insert an in-progress claim, or take over one with the same fingerprint left in
        progress before `stale_before_us` (a crashed request); False when the key is taken."""
        ...

    def finish(self, scope: str, key: str, status: int, body: str, now_us: int) -> None:
        """Store the response of an in-progress claim (no effect on a finished one)."""
        ...

    def release(self, scope: str, key: str) -> None:
        """Forget an in-progress claim whose request failed before producing a response."""
        ...


class OutboxRepository(Protocol):
    """Events waiting for delivery (webhooks), written in the transaction that caused them."""

    def insert(self, kind: str, body: str, now_us: int) -> None:
        """A new event, due at once; ids increase in insertion order."""
        ...

    def list_due(self, now_us: int, limit: int) -> list[OutboxRow]:
        """Undelivered events due at or before `now_us`, by id."""
        ...

    def claim(self, event_id: int, now_us: int, lease_until_us: int) -> bool:
        """Take an undelivered event that is due at `now_us` for one delivery attempt: it is
        not due again before `lease_until_us`, so another process (or host) skips it. False
        when it was delivered or claimed meanwhile (compare-and-set)."""
        ...

    def mark(
        self, event_id: int, delivered_us: int | None, next_attempt_us: int, error: str | None
    ) -> None:
        """Record one delivery attempt: delivered at `delivered_us`, or due again later."""
        ...


class GoalRunRepository(Protocol):
    """Agent goal runs (`actions.goals`)."""

    def get(self, run_id: str) -> GoalRunRow | None: ...
    def insert(self, row: GoalRunRow) -> None: ...
    def save(self, row: GoalRunRow) -> None:
        """Replace the run's status, attempts, outcome ids, error and `updated_us`."""
        ...

    def list_recent(self, agent: str | None, limit: int) -> list[GoalRunRow]:
        """Newest first, optionally one agent's."""
        ...


class UnitOfWork(Protocol):
    """One store transaction, and the repositories that work inside it."""

    @property
    def decisions(self) -> DecisionRepository: ...
    @property
    def budgets(self) -> BudgetRepository: ...
    @property
    def holds(self) -> HoldRepository: ...
    @property
    def audit(self) -> AuditRepository: ...
    @property
    def meta(self) -> MetaRepository: ...
    @property
    def operators(self) -> OperatorRepository: ...
    @property
    def approvals(self) -> ApprovalRepository: ...
    @property
    def grants(self) -> GrantRepository: ...
    @property
    def halts(self) -> HaltRepository: ...
    @property
    def payments(self) -> PaymentRepository: ...
    @property
    def refunds(self) -> RefundRepository: ...
    @property
    def breakers(self) -> BreakerRepository: ...
    @property
    def sessions(self) -> SessionRepository: ...
    @property
    def scopes(self) -> ScopeRepository: ...
    @property
    def disputes(self) -> DisputeRepository: ...
    @property
    def keys(self) -> KeyRepository: ...
    @property
    def idempotency(self) -> IdempotencyRepository: ...
    @property
    def outbox(self) -> OutboxRepository: ...
    @property
    def facts(self) -> FactRepository: ...
    @property
    def goals(self) -> GoalRunRepository: ...
    @property
    def alerts(self) -> AlertRepository: ...
    @property
    def mandates(self) -> MandateRepository: ...
    @property
    def gauges(self) -> GaugeRepository: ...


class Store(Protocol):
    """A durable store. `write()` is one transaction, isolated from every concurrent writer
    for what it reads and changes (SQLite: one writer at a time; PostgreSQL: READ COMMITTED
    with row locks taken in a fixed order), that commits on success and rolls back on any
    error; `read()` is a consistent snapshot for reads only. A store that stays locked past
    its timeout raises StoreBusyError, any other failure StoreError."""

    def run(self, work: Callable[[UnitOfWork], T]) -> T:
        """`work` in a write transaction of its own; its result once that transaction is
        committed and durable. An exception of `work` rolls back everything it changed, and
        only that, and is raised here. A store with group commit runs the works of concurrent
        callers in arrival order, several in one commit, each atomic on its own (a savepoint);
        one without implements it as `with self.write() as tx: return work(tx)`."""
        ...

    def write(self) -> AbstractContextManager[UnitOfWork]: ...
    def read(self) -> AbstractContextManager[UnitOfWork]: ...
    def backlog(self) -> int:
        """Writes waiting for their turn (queued in this process, and other processes waiting
        on the same store); 0 for a store that keeps no queue. Cheap: no transaction."""
        ...

    def close(self) -> None: ...


class IdSource(Protocol):
    def __call__(self, prefix: str) -> str: ...
