"""Warden: the one service that orders the steps of a payment decision.

`authorize` runs hops 2 to 5 of the request flow in one store transaction: idempotency, budget
and velocity usage, policy evaluation, graduated gates, the hold, and the decision record. The
policy evaluation itself stays pure; this module is the only one that orders I/O.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from paywarden import limits
from paywarden.adapters.storage.sqlite import SQLiteStore
from paywarden.bootstrap import LoadedPolicy, load_policy
from paywarden.clock import Clock, SystemClock
from paywarden.errors import (
    IdempotencyConflictError,
    NotFoundError,
    StateConflictError,
    StoreBusyError,
    StoreError,
)
from paywarden.intent import PaymentIntent
from paywarden.ledger import holds
from paywarden.ledger.status import BudgetStatus, budget_status
from paywarden.ledger.usage import (
    apply_budget_gates,
    budget_claims,
    to_us,
    velocity_claims,
    velocity_denial,
)
from paywarden.money import Money
from paywarden.policy.compiler import CompiledPolicy
from paywarden.policy.decision import Decision
from paywarden.policy.evaluator import deny_everything, evaluate
from paywarden.policy.facts import StateSnapshot
from paywarden.ports import HoldRow, IdSource, LedgerTx, NewDecision, Store


def random_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


class Warden:
    """Guards payments: `authorize(intent)` decides, holds and records; `capture` and `void`
    settle a hold.

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
    ) -> None:
        self._loaded = loaded
        self._store = store
        self._clock = clock
        self._environment = environment.lower() if environment else None
        self._hold_ttl_us = hold_ttl_seconds * 1_000_000
        self._ids = ids

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
        )

    def close(self) -> None:
        self._store.close()

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

    def authorize(self, intent: PaymentIntent, *, phase: str | None = None) -> Decision:
        """Decide one intent, hold its amount if allowed or pending, and record the decision.

        Raises `IdempotencyConflictError` when the intent's idempotency key was used before for
        a different intent (nothing is changed). Store failures never raise: they deny.
        """
        now = self._clock.now()
        policy = self._loaded.policy
        intent, mismatch = self._with_environment(intent)
        try:
            with self._store.write() as tx:
                holds.expire_due(tx, to_us(now), limits.expire_per_authorize_max)
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
                    decision = self._decide_and_hold(tx, policy, intent, phase, now)
                return self._record(tx, intent, decision, now)
        except StoreBusyError as error:
            return self._store_denial("store_busy", error, policy, now)
        except IdempotencyConflictError:
            raise
        except StoreError as error:
            return self._store_denial("store_unavailable", error, policy, now)

    def _with_environment(self, intent: PaymentIntent) -> tuple[PaymentIntent, str | None]:
        """The environment comes from the deployment; an intent may only repeat it."""
        deployment = self._environment
        if intent.environment is None:
            return intent.replace(environment=deployment or "production"), None
        if deployment is not None and intent.environment != deployment:
            return intent, (
                f"intent environment `{intent.environment}` differs from this deployment's "
                f"`{deployment}`"
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
        return replace(Decision.from_dict(json.loads(stored.body)), replayed=True)

    def _decide_and_hold(
        self,
        tx: LedgerTx,
        policy: CompiledPolicy,
        intent: PaymentIntent,
        phase: str | None,
        now: datetime,
    ) -> Decision:
        now_us = to_us(now)
        claims = budget_claims(policy, intent, now)
        traces = holds.read_budgets(tx, claims)
        decision = evaluate(policy, intent, StateSnapshot(phase=phase, budgets=tuple(traces)), now)
        decision = apply_budget_gates(decision, claims, traces)
        velocity = velocity_claims(policy, intent)
        if decision.outcome != "deny":
            for claim, count, last_us in holds.read_velocity(tx, velocity, now_us):
                denial = velocity_denial(decision, claim, count, last_us, now_us)
                if denial is not None:
                    decision = denial
                    break
        decision = replace(decision, decision_id=self._ids("dec"))
        if decision.outcome == "deny":
            return decision
        hold = holds.NewHold(
            self._ids("hold"),
            str(decision.decision_id),
            intent.agent,
            intent.amount_minor,
            intent.currency,
            now_us,
            now_us + self._hold_ttl_us,
        )
        holds.reserve(tx, hold, claims, traces, velocity)
        return replace(decision, hold_id=hold.hold_id)

    def _record(
        self, tx: LedgerTx, intent: PaymentIntent, decision: Decision, now: datetime
    ) -> Decision:
        if decision.decision_id is None:
            decision = replace(decision, decision_id=self._ids("dec"))
        body = json.dumps(
            decision.to_dict(),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
        tx.insert_decision(
            NewDecision(
                decision_id=str(decision.decision_id),
                created_us=to_us(now),
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
                body=body,
            )
        )
        return decision

    def _deny_without_policy(self, now: datetime) -> Decision:
        code = self._loaded.reason_code or "policy_invalid"
        summary = self._loaded.report.summary()
        return deny_everything(code, f"no usable policy ({summary}); denied", "none", now)

    @staticmethod
    def _store_denial(
        code: str, error: Exception, policy: CompiledPolicy | None, now: datetime
    ) -> Decision:
        version = policy.version if policy else "none"
        return deny_everything(code, f"{error}; denied", version, now)

    # Holds ----------------------------------------------------------------------------------

    def capture(self, hold_id: str, amount: str | int | None = None) -> HoldRow:
        """Capture a held amount (all of it, or a smaller `amount` that frees the rest)."""
        now_us = to_us(self._clock.now())
        with self._store.write() as tx:
            hold = self._open_hold(tx, hold_id, now_us)
            captured = hold.amount_minor if amount is None else self._capture_amount(hold, amount)
            if hold.state == "held":
                holds.invariant(
                    holds.resolve(tx, hold, "captured", now_us, captured),
                    "a held hold must resolve",
                )
            updated = tx.hold(hold_id)
        return self._resolved_or_raise(updated, hold, "captured")

    def void(self, hold_id: str) -> HoldRow:
        """Release a held amount without spending it."""
        now_us = to_us(self._clock.now())
        with self._store.write() as tx:
            hold = self._open_hold(tx, hold_id, now_us)
            if hold.state == "held":
                holds.invariant(
                    holds.resolve(tx, hold, "voided", now_us), "a held hold must resolve"
                )
            updated = tx.hold(hold_id)
        return self._resolved_or_raise(updated, hold, "voided")

    def expire_due(self, batch_max: int = limits.expire_sweep_batch_max) -> int:
        """Expire holds past their deadline; returns how many were expired."""
        with self._store.write() as tx:
            return holds.expire_due(tx, to_us(self._clock.now()), batch_max)

    def hold(self, hold_id: str) -> HoldRow:
        with self._store.read() as tx:
            hold = tx.hold(hold_id)
        if hold is None:
            raise NotFoundError(f"no hold `{hold_id}`")
        return hold

    def decision(self, decision_id: str) -> Decision:
        with self._store.read() as tx:
            body = tx.decision_body(decision_id)
        if body is None:
            raise NotFoundError(f"no decision `{decision_id}`")
        return Decision.from_dict(json.loads(body))

    def _open_hold(self, tx: LedgerTx, hold_id: str, now_us: int) -> HoldRow:
        """The hold, expired first if its deadline passed (the expiry commits either way)."""
        hold = tx.hold(hold_id)
        if hold is None:
            raise NotFoundError(f"no hold `{hold_id}`")
        if hold.state == "held" and hold.expires_us <= now_us:
            holds.resolve(tx, hold, "expired", now_us)
            hold = replace(hold, state="expired")
        return hold

    @staticmethod
    def _capture_amount(hold: HoldRow, amount: str | int) -> int:
        money = Money.parse(amount, hold.currency)
        if money.amount_minor > hold.amount_minor:
            raise StateConflictError(
                f"cannot capture {money} from hold `{hold.hold_id}` of "
                f"{Money(hold.amount_minor, hold.currency, money.exponent)}"
            )
        return money.amount_minor

    @staticmethod
    def _resolved_or_raise(updated: HoldRow | None, before: HoldRow, target: str) -> HoldRow:
        if before.state != "held" or updated is None:
            raise StateConflictError(
                f"hold `{before.hold_id}` is already {before.state}; it cannot be {target}"
            )
        return updated

    # Budgets --------------------------------------------------------------------------------

    def budgets(self) -> list[BudgetStatus]:
        """Each budget's spent, held, remaining and gate in its current window, per scope."""
        policy = self._loaded.policy
        if policy is None:
            return []
        with self._store.read() as tx:
            return budget_status(tx, policy, self._clock.now())
