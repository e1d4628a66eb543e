"""Warden: the facade over paywarden's use cases.

Each method delegates to one plain function in `paywarden.actions` that orders its own steps,
with the `Runtime` (store, clock, ids, policy in force, rails, settings) as its first argument.
The use cases, one module each:

| module | use cases |
| --- | --- |
| `actions.authorize` | `authorize`, `admit`, `refuse`, `decision` (hops 1 to 5 of a payment) |
| `actions.payments` | `pay`, `reconcile`, `payment(s)`, `breaker` (hop 6, on a rail) |
| `actions.refunds` | `refund`, `refunds` |
| `actions.holds` | `capture`, `void`, `expire_due`, `hold`, `budgets` |
| `actions.approvals` | `approve`, `reject`, `approval(s)`, operators |
| `actions.grants` | `grant`, `grants`, `revoke_grant`, `halt`, `resume`, `halts` |
| `actions.sessions` | `start_session`, `advance_phase`, `session` |
| `actions.scopes` | `transaction`, `resume_scope`, `scope(s)`, `scope_steps` |
| `actions.disputes` | `open_dispute`, `review_dispute`, `resolve_dispute`, `dispute(s)` |
| `actions.keys` | `create_key`, `authenticate`, `revoke_key`, `keys` |
| `actions.policy` | `reload_policy`, `ready` |
| `actions.shadow` | `set_shadow_policy`, `clear_shadow_policy`, `shadow_policy`, `shadow_stats` |
| `actions.requests` | `idempotency_begin`, `idempotency_end`, `idempotency_abandon` |
| `actions.audit` | `audit_entries`, `audit_trail`, `verify_audit`, `checkpoint` |
| `actions.alerts` | `alerts`, `sweep_alerts` (the policy's `alerts:` rules) |
| `actions.observe` | `observe_decisions`, `store_gauges` (what metrics read) |
| `actions.goals` | `run_goal`, `start_goal`, `drive_goal`, `goal_run(s)` (agents that pay) |

See docs/architecture.md for the layout and the request flow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from paywarden import limits
from paywarden.actions import (
    alerts,
    approvals,
    audit,
    authorize,
    disputes,
    goals,
    grants,
    holds,
    keys,
    observe,
    payments,
    policy,
    refunds,
    requests,
    scopes,
    sessions,
    shadow,
)
from paywarden.actions import analytics as analytics_report
from paywarden.actions.analytics import Analytics, AnalyticsQuery, Report, SpendBy
from paywarden.actions.approvals import APPROVALS_PAGE_DEFAULT, ApprovalPage
from paywarden.actions.goals import GoalOptions
from paywarden.actions.grants import GrantRequest
from paywarden.actions.payments import PaymentOutcome
from paywarden.actions.scopes import TransactionScope
from paywarden.actions.shadow import ShadowStats
from paywarden.agents.port import Planner
from paywarden.approval_request import ApprovalView
from paywarden.audit.chain import AuditEntry, Checkpoint, VerifyResult
from paywarden.audit.checkpoint import SignedCheckpoint
from paywarden.audit.redact import Redactor
from paywarden.audit.service import AuditOptions
from paywarden.clock import Clock
from paywarden.errors import InvalidInputError
from paywarden.intent import PaymentIntent
from paywarden.keys import Principal, Role
from paywarden.ledger.status import BudgetStatus
from paywarden.mandates import Presented
from paywarden.policy.compiler import CompiledPolicy
from paywarden.policy.decision import Decision
from paywarden.policy.loading import LoadedPolicy
from paywarden.ports import (
    AlertRow,
    BreakerRow,
    DisputeRow,
    GoalRunRow,
    GrantRow,
    HaltRow,
    HoldRow,
    IdempotencyRow,
    IdSource,
    KeyRow,
    OperatorRow,
    PaymentRow,
    RefundRow,
    ScopeRow,
    ScopeStepRow,
    SessionRow,
    StoreGauges,
)
from paywarden.rails import PaymentRail
from paywarden.runtime import Runtime, default_sleep, random_id
from paywarden.webhooks import WebhookOptions

__all__ = ["AuditOptions", "Warden"]


class Warden:
    """Guards payments: `authorize(intent)` decides, holds, records and audits; `pay` pays on
    a rail; operators approve, grant and halt.

    Open one with `Warden.open(policy=PATH_OR_YAML_TEXT, database=PATH)`. A missing, empty or
    invalid policy does not raise: the Warden opens and denies everything, with a reason code
    saying why, so a deployment mistake can never turn into "allow".
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @classmethod
    def open(
        cls,
        policy: str | Path | None = None,
        *,
        database: str | Path = ":memory:",
        clock: Clock | None = None,
        environment: str | None = None,
        hold_ttl_seconds: int = limits.hold_ttl_seconds,
        busy_timeout_seconds: float = limits.store_busy_timeout_seconds,
        ids: IdSource = random_id,
        audit: AuditOptions | None = None,
        webhook: WebhookOptions | None = None,
        rails: Mapping[str, PaymentRail] | None = None,
        sleep: Callable[[float], None] = default_sleep,
    ) -> Warden:
        """Open a Warden on a policy (path or YAML text) and a ledger: a SQLite file, or a
        PostgreSQL URL (`postgresql://...`, the `postgres` extra).

        `database=":memory:"` (the default) keeps state in this process only; pass a file path
        (the CLI uses `./paywarden.db`) for durable state shared by several processes.
        """
        from paywarden import bootstrap  # the composition module: adapters, on first use only

        return cls(
            bootstrap.open_runtime(
                policy,
                database=database,
                clock=clock,
                environment=environment,
                hold_ttl_seconds=hold_ttl_seconds,
                busy_timeout_seconds=busy_timeout_seconds,
                ids=ids,
                audit=audit,
                webhook=webhook,
                rails=rails,
                sleep=sleep,
            )
        )

    def close(self) -> None:
        self.runtime.close()

    def __enter__(self) -> Warden:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def policy(self) -> CompiledPolicy | None:
        return self.runtime.policy

    @property
    def loaded_policy(self) -> LoadedPolicy:
        return self.runtime.loaded

    @property
    def redactor(self) -> Redactor:
        """The redactor of the policy in force: what entry points use to keep secrets out of
        what they store."""
        return self.runtime.redactor

    def clean_text(self, field: str, text: str) -> str:
        return self.runtime.clean_text(field, text)

    # Deciding ---------------------------------------------------------------------------------

    def authorize(
        self,
        intent: PaymentIntent,
        *,
        actor: str | None = None,
        mandate: Presented | None = None,
    ) -> Decision:
        """Decide one intent, hold its amount if allowed or pending, record and audit it.

        Raises `IdempotencyConflictError` when the intent's idempotency key was used before for
        a different intent (nothing is changed), and `InvalidIntentError` when an identifier
        or the payee carries what looks like a secret (the refusal is audited; its id is the
        error's `decision_id`). Store and internal failures never raise and never allow: they
        deny with `store_busy`, `store_unavailable` or `internal_error`.
        """
        return authorize.authorize(self.runtime, intent, actor=actor, mandate=mandate)

    def backlog(self) -> int:
        """Writes waiting for the store: queued in this process, plus other processes waiting
        for their turn on the same database file (0 for an in-memory store). Cheap, with no
        transaction: a gateway can refuse a request (503) before taking it when this is
        long, so no decision is made for it."""
        return self.runtime.store.backlog()

    def admit(self, intent: PaymentIntent) -> PaymentIntent:
        """The intent as paywarden records it: secrets redacted (see `paywarden.admission`). A
        refused intent is audited, then raised."""
        return authorize.admit(self.runtime, intent)

    def refuse(
        self,
        *,
        agent: str,
        fields: Mapping[str, object],
        error: InvalidInputError,
        actor: str | None = None,
    ) -> Decision:
        """Record a request that could not become an intent (`invalid_input`): a deny decision
        with an audit entry, and no other change. Sets `error.decision_id`."""
        return authorize.refuse(self.runtime, agent=agent, fields=fields, error=error, actor=actor)

    def decision(self, decision_id: str) -> Decision:
        """A recorded decision with its proof trace (refused requests included)."""
        return authorize.decision(self.runtime, decision_id)

    def decision_agent(self, decision_id: str) -> str:
        """The agent that asked for a decision (for object-level authorization)."""
        return authorize.decision_agent(self.runtime, decision_id)

    # Paying -----------------------------------------------------------------------------------

    def pay(
        self,
        intent: PaymentIntent,
        *,
        actor: str | None = None,
        mandate: Presented | None = None,
    ) -> PaymentOutcome:
        """Authorize, then pay an allowed intent on its rail (`intent.rail`, default `sandbox`);
        see `actions.payments.pay`."""
        return payments.pay(self.runtime, intent, actor=actor, mandate=mandate)

    def rail(self, name: str) -> PaymentRail:
        """The rail called `name`: one passed to `open(rails=...)`, else the registered one."""
        return self.runtime.rails.get(name)

    def reconcile(self, batch_max: int = limits.reconcile_batch_max) -> list[PaymentRow]:
        """Settle submitted and unknown payments through their rails, with the original keys,
        and re-send open refunds; the payments whose state changed."""
        return payments.reconcile(self.runtime, batch_max)

    def payment(self, payment_id: str) -> PaymentRow:
        return payments.payment(self.runtime, payment_id)

    def payments(
        self, *, agent: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[PaymentRow]:
        """Payments, newest first, optionally for one agent and in one state."""
        return payments.payments(self.runtime, agent=agent, state=state, limit=limit)

    def resolve_payment(
        self,
        payment_id: str,
        *,
        state: str,
        actor: str,
        reason: str,
        rail_payment_id: str | None = None,
    ) -> PaymentRow:
        """Settle (`state="settled"`) or fail an `unknown` or `submitted` payment by hand, after
        checking the rail (or the chain) yourself; audited as `payment.resolved`."""
        return payments.resolve(
            self.runtime,
            payment_id,
            state=state,
            actor=actor,
            reason=reason,
            rail_payment_id=rail_payment_id,
        )

    def breaker(self, rail: str) -> BreakerRow:
        """The rail's circuit breaker: `state`, `consecutive_failures`, `opened_us`."""
        return payments.breaker(self.runtime, rail)

    def refund(
        self,
        payment_id: str,
        amount: str | int | None = None,
        *,
        reason: str = "requested",
        actor: str = "system",
    ) -> RefundRow:
        """Refund a settled payment, all of what is left or `amount` of it (major units of the
        payment's currency), through its rail; see `actions.refunds.refund`."""
        return refunds.refund(self.runtime, payment_id, amount, reason=reason, actor=actor)

    def refunds(self, payment_id: str) -> list[RefundRow]:
        """Every refund of a payment, oldest first."""
        return refunds.refunds(self.runtime, payment_id)

    # Holds and budgets ------------------------------------------------------------------------

    def capture(
        self, hold_id: str, amount: str | int | None = None, *, actor: str = "system"
    ) -> HoldRow:
        """Capture a held amount: all of it, or a smaller `amount` that frees the rest."""
        return holds.capture(self.runtime, hold_id, amount, actor=actor)

    def void(self, hold_id: str, *, actor: str = "system") -> HoldRow:
        """Release a held amount without spending it (once)."""
        return holds.void(self.runtime, hold_id, actor=actor)

    def expire_due(self, batch_max: int = limits.expire_sweep_batch_max) -> int:
        """Expire holds past their deadline (a bounded sweep); returns how many expired."""
        return holds.expire_due(self.runtime, batch_max)

    def hold(self, hold_id: str) -> HoldRow:
        return holds.hold(self.runtime, hold_id)

    def budgets(self) -> list[BudgetStatus]:
        """Each budget's spent, held, remaining and gate in its current window, per scope."""
        return holds.budgets(self.runtime)

    # Approvals and operators ------------------------------------------------------------------

    def add_operator(self, operator_id: str, *, name: str, actor: str = "admin") -> OperatorRow:
        """Register a human operator who may approve, reject and grant."""
        return approvals.add_operator(self.runtime, operator_id, name=name, actor=actor)

    def operators(self) -> list[OperatorRow]:
        return approvals.operators(self.runtime)

    def approvals(
        self,
        status: str | None = None,
        agent: str | None = None,
        *,
        limit: int = APPROVALS_PAGE_DEFAULT,
        offset: int = 0,
    ) -> list[ApprovalView]:
        """One page of approval requests in the fair order of `approvals_page`."""
        return list(self.approvals_page(status, agent, limit=limit, offset=offset).views)

    def approvals_page(
        self,
        status: str | None = None,
        agent: str | None = None,
        *,
        limit: int = APPROVALS_PAGE_DEFAULT,
        offset: int = 0,
    ) -> ApprovalPage:
        """A page of approval requests that no agent can flood (see `actions.approvals`)."""
        return approvals.approvals_page(self.runtime, status, agent, limit=limit, offset=offset)

    def approval(self, approval_id: str) -> ApprovalView:
        return approvals.approval(self.runtime, approval_id)

    def approve(self, approval_id: str, *, operator: str, reason: str) -> ApprovalView:
        """Approve as `operator`; see `actions.approvals.approve`."""
        return approvals.approve(self.runtime, approval_id, operator=operator, reason=reason)

    def reject(self, approval_id: str, *, operator: str, reason: str) -> ApprovalView:
        """Reject as `operator`: the request is closed and its hold released."""
        return approvals.reject(self.runtime, approval_id, operator=operator, reason=reason)

    # Grants and the kill switch ---------------------------------------------------------------

    def grant(self, request: GrantRequest, *, operator: str) -> GrantRow:
        """Pre-approve an agent within bounds (see `actions.grants`)."""
        return grants.grant(self.runtime, request, operator=operator)

    def grants(self, agent: str | None = None, active_only: bool = False) -> list[GrantRow]:
        return grants.grants(self.runtime, agent, active_only)

    def revoke_grant(self, grant_id: str, *, operator: str) -> GrantRow:
        return grants.revoke_grant(self.runtime, grant_id, operator=operator)

    def halt(
        self, agent: str | None = None, *, reason: str, actor: str, void_pending: bool = False
    ) -> HaltRow:
        """Deny every new authorization (of `agent`, or of everyone) until `resume`."""
        return grants.halt(
            self.runtime, agent, reason=reason, actor=actor, void_pending=void_pending
        )

    def resume(self, agent: str | None = None, *, actor: str) -> bool:
        """Lift a halt; returns False when there was none for that scope."""
        return grants.resume(self.runtime, agent, actor=actor)

    def halts(self) -> list[HaltRow]:
        return grants.halts(self.runtime)

    # Sessions, scopes and disputes ------------------------------------------------------------

    def start_session(
        self, agent: str, session_id: str | None = None, *, actor: str | None = None
    ) -> SessionRow:
        """Start tracking an agent session, in phase EXPLORE."""
        return sessions.start_session(self.runtime, agent, session_id, actor=actor)

    def advance_phase(
        self, agent: str, session_id: str, phase: str, *, actor: str | None = None
    ) -> SessionRow:
        """Move a session to its next phase: EXPLORE -> DECIDE -> COMMIT, nothing else."""
        return sessions.advance_phase(self.runtime, agent, session_id, phase, actor=actor)

    def session(self, agent: str, session_id: str) -> SessionRow:
        return sessions.session(self.runtime, agent, session_id)

    def transaction(self, agent: str) -> TransactionScope:
        """Open a compensation scope for one agent's multi-step workflow."""
        return scopes.transaction(self.runtime, agent)

    def resume_scope(self, scope_id: str) -> TransactionScope:
        return scopes.resume_scope(self.runtime, scope_id)

    def scope(self, scope_id: str) -> ScopeRow:
        return scopes.scope(self.runtime, scope_id)

    def scopes(self, status: str | None = None, *, limit: int = 100) -> list[ScopeRow]:
        return scopes.scopes(self.runtime, status, limit=limit)

    def scope_steps(self, scope_id: str) -> list[ScopeStepRow]:
        return scopes.scope_steps(self.runtime, scope_id)

    def open_dispute(self, payment_id: str, *, reason: str, actor: str) -> DisputeRow:
        return disputes.open_dispute(self.runtime, payment_id, reason=reason, actor=actor)

    def review_dispute(self, dispute_id: str, *, operator: str, note: str = "") -> DisputeRow:
        return disputes.review_dispute(self.runtime, dispute_id, operator=operator, note=note)

    def resolve_dispute(
        self,
        dispute_id: str,
        outcome: str,
        *,
        operator: str,
        note: str = "",
        amount: str | int | None = None,
    ) -> DisputeRow:
        return disputes.resolve_dispute(
            self.runtime, dispute_id, outcome, operator=operator, note=note, amount=amount
        )

    def dispute(self, dispute_id: str) -> DisputeRow:
        return disputes.dispute(self.runtime, dispute_id)

    def disputes(
        self, *, payment_id: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[DisputeRow]:
        return disputes.disputes(self.runtime, payment_id=payment_id, status=status, limit=limit)

    # Keys, policy and gateway requests --------------------------------------------------------

    def use_key_secret(self, secret: bytes) -> None:
        """Hash keys under `secret` instead of `PAYWARDEN_KEY_SECRET` or the secret file."""
        self.runtime.secret.use(secret)

    def server_secret(self) -> bytes:
        """The deployment's server secret; paywarden derives its keyed digests from it."""
        return self.runtime.secret.get()

    def create_key(
        self,
        *,
        role: Role | str,
        agent: str | None = None,
        operator: str | None = None,
        environment: str | None = None,
        actor: str,
    ) -> tuple[str, KeyRow]:
        """Create an API key; returns `(key, row)`. The key is shown only here, once."""
        return keys.create_key(
            self.runtime,
            role=role,
            agent=agent,
            operator=operator,
            environment=environment,
            actor=actor,
        )

    def authenticate(self, secret: str) -> Principal:
        return keys.authenticate(self.runtime, secret)

    def revoke_key(self, key_id: str, *, actor: str) -> KeyRow:
        return keys.revoke_key(self.runtime, key_id, actor=actor)

    def keys(self) -> list[KeyRow]:
        return keys.list_keys(self.runtime)

    def reload_policy(self, policy_source: str | Path, *, actor: str) -> LoadedPolicy:
        """Validate a new policy (YAML text or a path) and put it in force (audited)."""
        return policy.reload_policy(self.runtime, policy_source, actor=actor)

    def ready(self) -> list[str]:
        """Why this Warden cannot allow payments now (empty when ready)."""
        return policy.ready(self.runtime)

    def set_shadow_policy(self, policy_source: str | Path, *, actor: str) -> CompiledPolicy:
        """Evaluate a candidate policy (YAML text or a path) next to the enforced one on every
        decision, never enforced (audited; kept in the store, so every process sees it)."""
        return shadow.set_shadow_policy(self.runtime, policy_source, actor=actor)

    def clear_shadow_policy(self, *, actor: str) -> bool:
        """Stop the shadow policy (audited); False when none was set."""
        return shadow.clear_shadow_policy(self.runtime, actor=actor)

    def shadow_policy(self) -> CompiledPolicy | None:
        return shadow.shadow_policy(self.runtime)

    def shadow_stats(self) -> ShadowStats:
        """Decisions this process evaluated under the shadow policy and how many flipped
        (`shadow_flips_total`)."""
        return shadow.stats(self.runtime)

    def idempotency_begin(
        self, scope: str, key: str, fingerprint: str, stale_seconds: int
    ) -> IdempotencyRow | None:
        return requests.idempotency_begin(self.runtime, scope, key, fingerprint, stale_seconds)

    def idempotency_end(self, scope: str, key: str, status: int, body: str) -> None:
        requests.idempotency_end(self.runtime, scope, key, status, body)

    def idempotency_abandon(self, scope: str, key: str) -> None:
        requests.idempotency_abandon(self.runtime, scope, key)

    # Agent goals ------------------------------------------------------------------------------

    def run_goal(
        self,
        goal: str,
        *,
        llm: Planner | None = None,
        agent: str,
        action: str = "purchase",
        session_id: str | None = None,
        max_attempts: int | None = None,
    ) -> GoalRunRow:
        """Turn a goal in words into a payment: `llm` proposes (the offline planner when
        None), the policy decides, a denial goes back to `llm`; see `actions.goals`."""
        options = GoalOptions(agent, action, session_id, max_attempts)
        row = goals.start_goal(self.runtime, goal, options)
        return self.drive_goal(row.run_id, llm, action=action)

    def start_goal(self, goal: str, options: GoalOptions) -> GoalRunRow:
        """Record a goal run (`running`) to drive later, e.g. in the background."""
        return goals.start_goal(self.runtime, goal, options)

    def drive_goal(
        self, run_id: str, llm: Planner | None = None, *, action: str = "purchase"
    ) -> GoalRunRow:
        from paywarden.agents.offline import OfflinePlanner

        return goals.drive_goal(self.runtime, run_id, llm or OfflinePlanner(), action=action)

    def goal_run(self, run_id: str) -> GoalRunRow:
        return goals.goal_run(self.runtime, run_id)

    def goal_runs(self, agent: str | None = None, *, limit: int = 100) -> list[GoalRunRow]:
        return goals.goal_runs(self.runtime, agent, limit=limit)

    # Analytics --------------------------------------------------------------------------------

    def analytics(
        self,
        report: Report = "spend",
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        agent: str | None = None,
        by: SpendBy = "agent",
        top: int = 10,
    ) -> Analytics:
        """Spend, top recipients, denials or approval turnaround over `[since, until)`
        (`paywarden.actions.analytics`)."""
        query = AnalyticsQuery(report, since, until, agent, by, top)
        return analytics_report.analytics(self.runtime, query)

    # Audit ------------------------------------------------------------------------------------

    def audit_entries(self, after_seq: int = 0, limit: int = 100) -> list[AuditEntry]:
        return audit.audit_entries(self.runtime, after_seq, limit)

    def audit_trail(self, ref_id: str) -> list[AuditEntry]:
        return audit.audit_trail(self.runtime, ref_id)

    def verify_audit(self, checkpoint: Checkpoint | None = None) -> VerifyResult:
        return audit.verify_audit(self.runtime, checkpoint)

    def checkpoint(self) -> SignedCheckpoint:
        return audit.checkpoint(self.runtime)

    # Alerts and metrics -----------------------------------------------------------------------

    def alerts(self, kind: str | None = None, *, limit: int = 100) -> list[AlertRow]:
        """Alerts raised by the policy's `alerts:` rules, newest first (see `actions.alerts`)."""
        return alerts.alerts(self.runtime, kind, limit)

    def sweep_alerts(self) -> list[AlertRow]:
        """Raise the swept alerts now (breaker opened, halt, approval waiting); the gateway
        runs this every few seconds. The alerts this call raised."""
        return alerts.sweep(self.runtime)

    def observe_decisions(
        self, observer: Callable[[Decision, str, float], None]
    ) -> Callable[[], None]:
        """Tell `observer` of each decision made here from now on: the decision, the intent's
        action and the seconds it took (idempotent replays excluded). Returns the function
        that stops it. `paywarden.metrics` counts decisions with it."""
        return observe.observe_decisions(self.runtime, observer)

    def store_gauges(self) -> StoreGauges:
        """The store's counts that metrics read at scrape time (`paywarden.metrics`)."""
        return observe.store_gauges(self.runtime)

    def deliver_webhooks(self) -> int:
        """Deliver due webhook events now (the dispatcher thread also does, every moment)."""
        notifier = self.runtime.notifier
        return notifier.deliver_now() if notifier is not None else 0
