"""Transaction scopes: multi-step agent workflows whose paid steps are undone on failure.

```python
with warden.transaction("research-agent") as scope:
    scope.pay(buy_dataset)                      # compensated by a refund
    scope.step("reserve GPU", release_gpu)      # compensated by calling release_gpu()
    analyse()                                   # raises -> compensation, then re-raised
```

Each step is recorded in the store as it is registered. When the block raises (or on
`scope.compensate()`), the steps are compensated in reverse order, each in its own audited
transaction: a settled payment is refunded (or, with the policy's `compensation.default_action:
record_loss`, recorded as a loss), a failed payment needs nothing, and a payment whose outcome is
still unknown cannot be refunded yet. A compensation that fails is recorded on its step with the
error, and the scope ends `compensation_failed`, listed by `warden.scopes("compensation_failed")`
for manual follow-up; the others still run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from paywarden.actions import payments, refunds
from paywarden.actions.payments import PaymentOutcome
from paywarden.audit import records
from paywarden.errors import ForbiddenError, NotFoundError, StateConflictError
from paywarden.intent import PaymentIntent, identifier
from paywarden.policy.workflow_settings import CompensationSettings
from paywarden.ports import ScopeRow, ScopeStatus, ScopeStepRow, StepState, UnitOfWork
from paywarden.runtime import Runtime


@dataclass(frozen=True, slots=True)
class StepOutcome:
    state: StepState
    note: str | None


class TransactionScope:
    """One workflow's compensating actions. Use it as a context manager."""

    def __init__(self, rt: Runtime, row: ScopeRow) -> None:
        self._rt = rt
        self.scope_id = row.scope_id
        self.agent = row.agent
        self._actions: dict[int, Callable[[], object]] = {}
        self._steps = 0
        self._actor = f"agent:{row.agent}"  # who the scope's audit entries name

    def pay(self, intent: PaymentIntent, *, label: str | None = None) -> PaymentOutcome:
        """Pay as a step of this scope; a payment that may have moved money is registered."""
        if intent.agent != self.agent:
            raise ForbiddenError(
                f"scope `{self.scope_id}` belongs to agent `{self.agent}`, not `{intent.agent}`"
            )
        self._require_open()
        outcome = payments.pay(self._rt, intent)
        payment = outcome.payment
        if payment is not None and payment.state != "failed":
            self._register(
                label or f"pay {intent.amount} to {intent.recipient}", payment.payment_id
            )
        return outcome

    def step(self, label: str, compensate: Callable[[], object]) -> None:
        """Register a step done outside paywarden with the action that undoes it."""
        self._require_open()
        self._actions[self._register(label, None)] = compensate

    def commit(self) -> None:
        """The workflow succeeded: nothing will be compensated."""
        self._finish("committed", "scope.committed")

    def compensate(self, reason: str = "workflow failed", *, actor: str | None = None) -> ScopeRow:
        """Undo every registered step in reverse order; returns the scope's final state.

        The scope is claimed first, in one compare-and-set (open → `compensation_failed`, what
        a crash in the middle leaves for a human): a scope that was committed, or that another
        caller is compensating, is refused before anything is refunded. It ends `compensated`
        once every step is undone. `actor` is who compensates (an operator resuming a scope
        its worker left); the scope's agent by default."""
        if actor is not None:
            self._actor = actor
        with self._rt.store.write() as tx:
            if not tx.scopes.transition(
                self.scope_id, "open", "compensation_failed", self._rt.now_us()
            ):
                self._require_open(tx)  # raises, naming the scope's state
                raise StateConflictError(f"scope `{self.scope_id}` is no longer open")
            steps = [s for s in tx.scopes.list_steps(self.scope_id) if s.state == "registered"]
        failed = False
        for step in reversed(steps):
            result = self._compensate_step(step, reason)
            failed = failed or result.state == "failed"
            with self._rt.store.write() as tx:
                if tx.scopes.transition_step(
                    self.scope_id, step.step, result.state, result.note, self._rt.now_us()
                ):
                    self._audit(tx, f"scope.step_{result.state}", step, result.note)
        target: ScopeStatus = "compensation_failed" if failed else "compensated"
        self._finish(target, f"scope.{target}", reason, source="compensation_failed")
        with self._rt.store.read() as tx:
            row = tx.scopes.get(self.scope_id)
        if row is None:
            raise NotFoundError(f"no scope `{self.scope_id}`")
        return row

    def __enter__(self) -> TransactionScope:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with self._rt.store.read() as tx:
            row = tx.scopes.get(self.scope_id)
        if row is None or row.status != "open":
            return
        if exc is None:
            self.commit()
        else:
            self.compensate(f"{type(exc).__name__}: {exc}")

    # Internals --------------------------------------------------------------------------------

    def _compensate_step(self, step: ScopeStepRow, reason: str) -> StepOutcome:
        policy = self._rt.policy
        settings = policy.compensation if policy is not None else CompensationSettings()
        if not settings.enabled:
            return StepOutcome("failed", "compensation is disabled by the policy: follow up")
        if step.payment_id is None:
            action = self._actions.get(step.step)
            if action is None:
                return StepOutcome("failed", "its compensating action is not in this process")
            try:
                action()
            except Exception as error:  # recorded for manual follow-up; the others still run
                return StepOutcome("failed", f"{type(error).__name__}: {error}")
            return StepOutcome("compensated", None)
        return self._compensate_payment(step.payment_id, settings, reason)

    def _compensate_payment(
        self, payment_id: str, settings: CompensationSettings, reason: str
    ) -> StepOutcome:
        payment = payments.payment(self._rt, payment_id)
        if payment.state == "failed":
            return StepOutcome("compensated", "the payment failed: no money moved")
        if payment.state in ("submitted", "unknown", "authorized"):
            return StepOutcome("failed", f"payment outcome is {payment.state}: reconcile first")
        left = payment.amount_minor - payment.refunded_minor
        if left <= 0:
            return StepOutcome("compensated", "already refunded")
        if settings.default_action == "record_loss":
            return StepOutcome("compensated", f"loss recorded: {left} minor units")
        try:
            reason = f"compensation of scope {self.scope_id}: {reason}"[:500]
            refund = refunds.refund(self._rt, payment_id, reason=reason)
        except StateConflictError as error:
            return StepOutcome("failed", str(error))
        if refund.state != "settled":
            return StepOutcome("failed", f"refund `{refund.refund_id}` is {refund.state}")
        return StepOutcome("compensated", f"refund `{refund.refund_id}`")

    def _register(self, label: str, payment_id: str | None) -> int:
        with self._rt.store.write() as tx:
            self._require_open(tx)
            step = len(tx.scopes.list_steps(self.scope_id))
            row = ScopeStepRow(self.scope_id, step, payment_id, label[:200], "registered", None, 0)
            tx.scopes.insert_step(row)
            self._audit(tx, "scope.step_registered", row, None)
        return step

    def _require_open(self, tx: UnitOfWork | None = None) -> None:
        if tx is None:
            with self._rt.store.read() as read_tx:
                row = read_tx.scopes.get(self.scope_id)
        else:
            row = tx.scopes.get(self.scope_id)
        if row is None or row.status != "open":
            state = row.status if row is not None else "missing"
            raise StateConflictError(f"scope `{self.scope_id}` is {state}")

    def _finish(
        self,
        target: ScopeStatus,
        kind: str,
        reason: str | None = None,
        *,
        source: ScopeStatus = "open",
    ) -> None:
        now_us = self._rt.now_us()
        with self._rt.store.write() as tx:
            moved = source == target or tx.scopes.transition(self.scope_id, source, target, now_us)
            if not moved:
                raise StateConflictError(f"scope `{self.scope_id}` is no longer {source}")
            records.append(
                tx,
                now_us,
                kind,
                self.scope_id,
                {"actor": self._actor, "scope_id": self.scope_id, "reason": reason},
            )

    def _audit(self, tx: UnitOfWork, kind: str, step: ScopeStepRow, note: str | None) -> None:
        records.append(
            tx,
            self._rt.now_us(),
            kind,
            self.scope_id,
            {
                "actor": self._actor,
                "scope_id": self.scope_id,
                "step": step.step,
                "label": step.label,
                "payment_id": step.payment_id,
                "note": note,
            },
        )


# Use cases -----------------------------------------------------------------------------------


def transaction(rt: Runtime, agent: str) -> TransactionScope:
    """Open a compensation scope for one agent's multi-step workflow (a context manager): on
    an exception its paid steps are refunded in reverse order, then it re-raises."""
    agent = identifier("agent", agent)
    now_us = rt.now_us()
    row = ScopeRow(rt.ids("scp"), agent, "open", now_us, now_us)
    with rt.store.write() as tx:
        tx.scopes.insert(row)
        body: dict[str, object] = {"actor": f"agent:{agent}", "scope_id": row.scope_id}
        records.append(tx, now_us, "scope.opened", row.scope_id, body)
    return TransactionScope(rt, row)


def resume_scope(rt: Runtime, scope_id: str) -> TransactionScope:
    """An open scope from another process (its payment steps can still be compensated)."""
    return TransactionScope(rt, scope(rt, scope_id))


def scope(rt: Runtime, scope_id: str) -> ScopeRow:
    with rt.store.read() as tx:
        row = tx.scopes.get(scope_id)
    if row is None:
        raise NotFoundError(f"no scope `{scope_id}`")
    return row


def scopes(rt: Runtime, status: str | None = None, *, limit: int = 100) -> list[ScopeRow]:
    """Scopes, newest first; `status="compensation_failed"` lists what needs a human."""
    with rt.store.read() as tx:
        return tx.scopes.list_recent(status, max(1, min(limit, 1000)))


def scope_steps(rt: Runtime, scope_id: str) -> list[ScopeStepRow]:
    with rt.store.read() as tx:
        return tx.scopes.list_steps(scope_id)
