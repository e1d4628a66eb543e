"""Warden: the one service that orders the steps of a payment decision.

`authorize` runs hops 2 to 5 of the request flow in one store transaction: idempotency, budget
and velocity usage, policy evaluation, graduated gates, the hold, the decision record and its
audit entry. Policy evaluation stays pure; this module is the only one that orders I/O.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from paywarden import admission, approvals, authorize, limits, payments, refusals
from paywarden.adapters.notify.webhook import WebhookDispatcher, WebhookOptions, deliver_due
from paywarden.adapters.storage.sqlite import SQLiteStore
from paywarden.audit import records
from paywarden.audit.chain import AuditEntry, Checkpoint, VerifyResult
from paywarden.audit.checkpoint import SignedCheckpoint
from paywarden.audit.redact import DEFAULT_REDACTOR, Redactor
from paywarden.audit.service import AuditOptions, Checkpointer, verify_store
from paywarden.bootstrap import (
    POLICY_TEXT_KEY,
    POLICY_VERSION_KEY,
    LoadedPolicy,
    load_policy,
    record_version,
)
from paywarden.clock import Clock, SystemClock, to_us
from paywarden.errors import (
    IdempotencyConflictError,
    InvalidInputError,
    NotFoundError,
    StateConflictError,
    StoreBusyError,
    StoreError,
)
from paywarden.intent import PaymentIntent, free_text
from paywarden.key_actions import KeyActions
from paywarden.ledger import settle
from paywarden.ledger.status import BudgetStatus, budget_status
from paywarden.operations import OperatorActions
from paywarden.payment_actions import PaymentActions
from paywarden.policy.compiler import CompiledPolicy
from paywarden.policy.decision import Decision
from paywarden.policy.evaluator import deny_everything
from paywarden.ports import HoldRow, IdSource, LedgerTx, NewDecision, Store
from paywarden.rails import PaymentRail
from paywarden.workflow_actions import WorkflowActions

__all__ = ["AuditOptions", "Warden"]
_log = logging.getLogger("paywarden")
DEFAULT_ENVIRONMENT = "production"


def random_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _session_phase(tx: LedgerTx, intent: PaymentIntent) -> str | None:
    """The phase of the agent's tracked session: server-side state, never the agent's word."""
    if intent.session_id is None:
        return None
    session = tx.session(intent.agent, intent.session_id)
    return session.phase if session is not None else None


class Warden(OperatorActions, PaymentActions, WorkflowActions, KeyActions):
    """Guards payments: `authorize(intent)` decides, holds, records and audits; `capture` and
    `void` settle a hold.

    Open one with `Warden.open(policy=PATH_OR_YAML_TEXT, database=PATH)`. A missing, empty or
    invalid policy does not raise: the Warden opens and denies everything, with a reason code
    saying why, so a deployment mistake can never turn into "allow".
    """

    def __init__(
        self,
        loaded: LoadedPolicy,
        store: Store,
        *,
        clock: Clock,
        environment: str | None = None,
        hold_ttl_seconds: int = limits.hold_ttl_seconds,
        ids: IdSource = random_id,
        audit: AuditOptions | None = None,
        webhook: WebhookOptions | None = None,
        rails: Mapping[str, PaymentRail] | None = None,
        sleep: Callable[[float], None] = payments.default_sleep,
    ) -> None:
        self._loaded = loaded
        self._store = store
        self._clock = clock
        # Every deployment has an environment: production unless it says otherwise, so a key or
        # intent pinned to another environment is always checked, never waved through.
        self._environment = (environment or DEFAULT_ENVIRONMENT).lower()
        self._hold_ttl_us = hold_ttl_seconds * 1_000_000
        self._ids = ids
        self._checkpoints = Checkpointer(store, audit or AuditOptions(), clock)
        self._record_policy_load()
        self._rails: dict[str, PaymentRail] = dict(rails or {})
        self._owned_rails: set[str] = set()  # loaded by name here, closed by close()
        self._sleep = sleep  # between rail retries; tests pass a no-op
        self._webhook = webhook
        self._dispatcher: WebhookDispatcher | None = None
        if webhook is not None:
            with store.write() as tx:
                tx.meta_set("webhooks", "on")
            self._dispatcher = WebhookDispatcher(store, webhook, clock)

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
        sleep: Callable[[float], None] = payments.default_sleep,
    ) -> Warden:
        """Open a Warden on a policy (path or YAML text) and a SQLite database file.

        `database=":memory:"` (the default) keeps state in this process only; pass a file path
        (the CLI uses `./paywarden.db`) for durable state shared by several processes.
        """
        store = SQLiteStore(database, busy_timeout_seconds=busy_timeout_seconds)
        return cls(
            load_policy(policy),
            store,
            clock=clock or SystemClock(),
            environment=environment,
            hold_ttl_seconds=hold_ttl_seconds,
            ids=ids,
            audit=audit,
            webhook=webhook,
            rails=rails,
            sleep=sleep,
        )

    def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.stop()
            self._dispatcher = None
        for name in self._owned_rails:  # rails passed in by the caller are the caller's
            closer = getattr(self._rails[name], "close", None)
            if callable(closer):
                closer()  # e.g. the Stripe rail's HTTP session
        self._store.close()

    def deliver_webhooks(self) -> int:
        """Deliver due webhook events now (the dispatcher thread also does, every moment)."""
        if self._webhook is None:
            return 0
        return deliver_due(self._store, self._webhook, self._clock)

    def __enter__(self) -> Warden:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def policy(self) -> CompiledPolicy | None:
        return self._loaded.policy

    @property
    def loaded_policy(self) -> LoadedPolicy:
        return self._loaded

    # Authorize ------------------------------------------------------------------------------

    def authorize(self, intent: PaymentIntent, *, actor: str | None = None) -> Decision:
        """Decide one intent, hold its amount if allowed or pending, record and audit it.

        Raises `IdempotencyConflictError` when the intent's idempotency key was used before for
        a different intent (nothing is changed), and `InvalidIntentError` when an identifier
        or the payee carries what looks like a secret (the refusal is audited; its id is the
        error's `decision_id`). Store and internal failures never raise and never allow: they
        deny with `store_busy`, `store_unavailable` or `internal_error`.
        """
        return self._decide(self.admit(intent), actor)

    def admit(self, intent: PaymentIntent) -> PaymentIntent:
        """The intent as paywarden records it: the deployment's environment filled in, secrets
        redacted (see `paywarden.admission`). A refused intent is audited, then raised."""
        try:
            return admission.admit(intent, self._redactor(), self._digest_key)
        except InvalidInputError as error:
            self.refuse(
                agent=intent.agent,
                fields=admission.refusal_fields(intent, self.redactor),
                error=error,
                actor=f"agent:{intent.agent}",
            )
            raise

    def refuse(
        self,
        *,
        agent: str,
        fields: Mapping[str, object],
        error: InvalidInputError,
        actor: str | None = None,
    ) -> Decision:
        """Record a request that could not become an intent (`invalid_input`): a deny decision
        with an audit entry, and no other change. Sets `error.decision_id`. Entry points call
        this when an agent's fields fail to parse; a store failure is logged instead."""
        now = self._clock.now()
        policy = self._loaded.policy
        decision = deny_everything(
            "invalid_input", str(error), policy.version if policy else "none", now
        )
        decision.decision_id = self._ids("dec")
        try:
            with self._store.write() as tx:
                refusals.record(
                    tx,
                    decision,
                    fields,
                    self._redactor(),
                    actor or f"agent:{agent}",
                    now,
                    error.code,
                )
        except StoreError as store_error:
            _log.warning(
                "refused request of agent %r not audited (%s): %s",
                refusals.safe_text(agent, 128),
                store_error,
                error.code,
            )
            return decision
        error.decision_id = decision.decision_id
        return decision

    @property
    def redactor(self) -> Redactor:
        """The redactor of the policy in force (the built-in one without a policy): what every
        entry point uses to keep secrets out of what it stores."""
        policy = self._loaded.policy
        return policy.redaction if policy is not None else DEFAULT_REDACTOR

    def _redactor(self) -> Redactor:
        return self.redactor

    def clean_text(self, field: str, text: str) -> str:
        """Free text a caller gives (a refund, dispute, vote or halt reason) as it may be stored:
        at most `limits.free_text_bytes_max` UTF-8 bytes, no invisible characters (else
        `InvalidInputError`), and `[redacted]` when it holds a secret."""
        checked = free_text(field, text, limits.free_text_bytes_max)
        assert checked is not None
        clean, _ = self.redactor.redact(checked)
        return str(clean)

    def _digest_key(self) -> bytes:
        return admission.digest_key(self._server_secret())

    def _decide(self, intent: PaymentIntent, actor: str | None) -> Decision:
        """Hops 2 to 5 for an admitted intent, in one store transaction."""
        now = self._clock.now()
        policy = self._loaded.policy
        intent, mismatch = self._with_environment(intent)
        try:
            with self._store.write() as tx:
                policy = self._policy_in_force(tx)
                approvals.sweep(tx, to_us(now), limits.expire_per_authorize_max)
                replay = self._replay(tx, intent)
                if replay is not None:
                    return replay
                if policy is None:
                    decision = self._deny_without_policy(now)
                elif mismatch is not None:
                    decision = deny_everything(
                        "environment_mismatch", mismatch, policy.version, now
                    )
                else:
                    phase = _session_phase(tx, intent)
                    context = authorize.Context(
                        policy, intent, phase, now, self._ids, self._hold_ttl_us
                    )
                    decision = authorize.decide(tx, context)
                decision = self._record(tx, intent, decision, now, actor or f"agent:{intent.agent}")
        except IdempotencyConflictError:
            raise
        except StoreBusyError as error:
            return self._failure_denial("store_busy", error, policy, now)
        except StoreError as error:
            return self._failure_denial("store_unavailable", error, policy, now)
        except Exception as error:  # an internal fault must deny, never allow
            denial = self._failure_denial("internal_error", error, policy, now)
            return self._audit_failure(intent, denial, actor)
        self._checkpoints.maybe_checkpoint()
        return decision

    def _refuse_on_rail(self, intent: PaymentIntent, reason: str, actor: str | None) -> Decision:
        """A payment its rail cannot take (unknown rail, no route for this payee or agent):
        a deny decision, recorded and audited before anything is held. The idempotency key is
        not recorded with it, so the same key can pay once the rail is configured."""
        now = self._clock.now()
        policy = self._loaded.policy
        version = policy.version if policy is not None else "none"
        decision = deny_everything("rail_refused", reason, version, now)
        decision.decision_id = self._ids("dec")
        recorded = self._with_environment(intent)[0].with_fields(idempotency_key=None)
        try:
            with self._store.write() as tx:
                self._record(tx, recorded, decision, now, actor or f"agent:{intent.agent}")
        except StoreBusyError as error:
            return self._failure_denial("store_busy", error, policy, now)
        except StoreError as error:
            return self._failure_denial("store_unavailable", error, policy, now)
        return decision

    def _policy_in_force(self, tx: LedgerTx) -> CompiledPolicy | None:
        """The policy of the version last recorded in the store, read inside the decision's
        own transaction: once another process (or thread) has recorded a new version, every
        decision committed after it uses that version, never the one this process had."""
        loaded = self._loaded
        if loaded.policy is None:
            return None  # no usable policy here: deny, whatever others run
        recorded = tx.meta_get(POLICY_VERSION_KEY)
        if recorded is None or recorded == loaded.policy.version:
            return loaded.policy
        text = tx.meta_get(POLICY_TEXT_KEY + recorded)
        newer = load_policy(text) if text is not None else None
        if newer is None or newer.policy is None or newer.policy.version != recorded:
            return loaded.policy  # recorded by an older paywarden, without its text
        self._loaded = newer
        return newer.policy

    def _audit_failure(
        self, intent: PaymentIntent, decision: Decision, actor: str | None
    ) -> Decision:
        """An `internal_error` leaves an audit entry too (in a transaction of its own); only a
        store that cannot take it sends the record to the process log instead."""
        decision.decision_id = self._ids("dec")
        _log.error("internal error deciding for agent %r: %s", intent.agent, decision.reason)
        try:
            with self._store.write() as tx:
                refusals.record(
                    tx,
                    decision,
                    intent.canonical(),
                    self._redactor(),
                    actor or f"agent:{intent.agent}",
                    self._clock.now(),
                    "internal_error",
                )
        except Exception as error:  # the process log above is the record
            _log.error("internal error not audited: %s", error)
        return decision

    def _with_environment(self, intent: PaymentIntent) -> tuple[PaymentIntent, str | None]:
        """The environment comes from the deployment; an intent may only repeat it."""
        deployment = self._environment
        if intent.environment is None:
            return intent.with_environment(deployment), None
        if intent.environment != deployment:
            return intent, (
                f"intent environment `{intent.environment}` differs from this "
                f"deployment's `{deployment}`"
            )
        return intent, None

    def _replay(self, tx: LedgerTx, intent: PaymentIntent) -> Decision | None:
        if intent.idempotency_key is None:
            return None
        stored = tx.decision_by_key(intent.agent, intent.idempotency_key)
        if stored is None:
            return None
        if stored.fingerprint != intent.fingerprint():
            raise IdempotencyConflictError(
                f"idempotency key `{intent.idempotency_key}` was used for a different intent "
                f"(decision `{stored.decision_id}`)"
            )
        return replace(Decision.from_dict(json.loads(stored.body)["decision"]), replayed=True)

    def _record(
        self, tx: LedgerTx, intent: PaymentIntent, decision: Decision, now: datetime, actor: str
    ) -> Decision:
        """Write the decision's audit entry (the full record) and its index row, in `tx`."""
        if decision.decision_id is None:
            decision = replace(decision, decision_id=self._ids("dec"))
        decision_id, now_us = str(decision.decision_id), to_us(now)
        body = records.decision_body(intent, decision.to_dict(), actor, self.redactor)
        entry = records.append(tx, now_us, "decision", decision_id, body)
        tx.insert_decision(
            NewDecision(
                decision_id=decision_id,
                created_us=now_us,
                agent=intent.agent,
                action=intent.action,
                amount_minor=intent.amount_minor,
                currency=intent.currency,
                recipient=intent.recipient,
                outcome=decision.outcome,
                reason_code=decision.reason_code,
                idempotency_key=intent.idempotency_key,
                fingerprint=intent.fingerprint(),
                hold_id=decision.hold_id,
                policy_version=decision.policy_version,
                audit_seq=entry.seq,
            )
        )
        return decision

    def _deny_without_policy(self, now: datetime) -> Decision:
        code = self._loaded.reason_code or "policy_invalid"
        summary = self._loaded.report.summary()
        return deny_everything(code, f"no usable policy ({summary}); denied", "none", now)

    @staticmethod
    def _failure_denial(
        code: str, error: Exception, policy: CompiledPolicy | None, now: datetime
    ) -> Decision:
        version = policy.version if policy else "none"
        return deny_everything(code, f"{error or type(error).__name__}; denied", version, now)

    def _record_policy_load(self) -> None:
        """Audit a policy that differs from the last one recorded (loaded or rejected)."""
        loaded = self._loaded
        if loaded.policy is None and loaded.text is None and loaded.source == "policy":
            return  # opened without a policy (an admin task): there is no policy to record
        version = loaded.policy.version if loaded.policy else f"invalid:{loaded.reason_code}"
        body: dict[str, object] = {
            "actor": "system",
            "source": loaded.source,
            "policy_version": version,
            "status": "loaded" if loaded.policy else "rejected",
            "problems": [p.format(loaded.source) for p in loaded.report.problems[:20]],
        }
        try:
            with self._store.write() as tx:
                if tx.meta_get(POLICY_VERSION_KEY) == version:
                    return
                records.append(tx, to_us(self._clock.now()), "policy.loaded", version, body)
                if loaded.policy is None:
                    tx.meta_set(POLICY_VERSION_KEY, version)  # `invalid:...`: nothing to share
                else:
                    record_version(tx, loaded)
        except StoreError:
            return  # every decision will deny with the store error; nothing more to do here

    # Holds ----------------------------------------------------------------------------------

    def capture(
        self, hold_id: str, amount: str | int | None = None, *, actor: str = "system"
    ) -> HoldRow:
        """Capture a held amount: all of it, or a smaller `amount` that frees the rest.

        Raises `NotFoundError` for an unknown hold and `StateConflictError` when the hold was
        already captured, voided or expired (a hold resolves exactly once).
        """
        now_us = to_us(self._clock.now())
        with self._store.write() as tx:
            hold = settle.open_hold(tx, hold_id, now_us)
            request = tx.approval_by_hold(hold_id)
            if request is not None and request.status != "consumed":
                raise StateConflictError(
                    f"hold `{hold_id}` belongs to approval `{request.approval_id}`, which is "
                    f"{request.status}: only an approved and used request may be captured"
                )
            captured = settle.capture_amount(hold, amount)
            updated = settle.settle(tx, hold, "captured", now_us, actor, captured)
        if updated is None:
            raise settle.already_resolved(hold, "captured")
        return updated

    def void(self, hold_id: str, *, actor: str = "system") -> HoldRow:
        """Release a held amount without spending it (once)."""
        now_us = to_us(self._clock.now())
        with self._store.write() as tx:
            hold = settle.open_hold(tx, hold_id, now_us)
            updated = settle.settle(tx, hold, "voided", now_us, actor)
            request = tx.approval_by_hold(hold_id)
            if updated is not None and request is not None:
                # A request whose money is released cannot be approved or used any more.
                self._close(tx, request, "voided", f"hold voided by {actor}", now_us, actor)
        if updated is None:
            raise settle.already_resolved(hold, "voided")
        return updated

    def expire_due(self, batch_max: int = limits.expire_sweep_batch_max) -> int:
        """Expire holds past their deadline (a bounded sweep); returns how many expired."""
        with self._store.write() as tx:
            return approvals.sweep(tx, to_us(self._clock.now()), batch_max)

    def hold(self, hold_id: str) -> HoldRow:
        with self._store.read() as tx:
            hold = tx.hold(hold_id)
        if hold is None:
            raise NotFoundError(f"no hold `{hold_id}`")
        return hold

    def decision(self, decision_id: str) -> Decision:
        """A recorded decision with its proof trace (refused requests included)."""
        with self._store.read() as tx:
            body = tx.decision_body(decision_id)
            if body is None:
                refused = [e for e in tx.audit_by_ref(decision_id) if e.kind == refusals.KIND]
                body = refused[0].body if refused else None
        if body is None:
            raise NotFoundError(f"no decision `{decision_id}`")
        return Decision.from_dict(json.loads(body)["decision"])

    # Budgets and audit ----------------------------------------------------------------------

    def budgets(self) -> list[BudgetStatus]:
        """Each budget's spent, held, remaining and gate in its current window, per scope."""
        policy = self._loaded.policy
        if policy is None:
            return []
        with self._store.read() as tx:
            return budget_status(tx, policy, self._clock.now())

    def checkpoint(self) -> SignedCheckpoint:
        """Sign the audit head now (and write it to the checkpoint directory, if configured)."""
        return self._checkpoints.checkpoint()

    def audit_trail(self, ref_id: str) -> list[AuditEntry]:
        """The audit entries about one object (a decision, hold, payment, approval, scope,
        `agent/session` or policy version), oldest first. A payment's entries include its
        refunds and disputes."""
        with self._store.read() as tx:
            return tx.audit_by_ref(ref_id)

    def verify_audit(self, checkpoint: Checkpoint | None = None) -> VerifyResult:
        """Recompute the audit chain (read-only); check it against a verified checkpoint."""
        return verify_store(self._store, checkpoint)
