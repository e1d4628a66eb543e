"""Shadow mode: a candidate policy evaluated next to the enforced one, never enforced.

The candidate is kept in the store (`meta`: its version under `shadow_policy_version`, its text
under `policy_text:<version>`), so every process sharing the store sees it; setting and clearing
it are admin actions, audited (`policy.shadow_set`, `policy.shadow_cleared`).

Each decision the enforced policy makes (`actions.authorize`) is also evaluated under the
candidate, in the decision's transaction and read-only: the real evaluator, the budget gates
on what the ledger recorded (no hold, no counter row created), the velocity limits. The outcome
is recorded in the decision's audit entry (`shadow`) and counted per runtime (`stats`); the
enforced decision is never changed, and a fault in the candidate is recorded, never raised.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from paywarden.audit import records
from paywarden.clock import to_us
from paywarden.errors import InvalidInputError
from paywarden.intent import PaymentIntent
from paywarden.ledger import holds
from paywarden.ledger.usage import (
    BudgetClaim,
    VelocityClaim,
    apply_budget_gates,
    budget_claims,
    budget_trace,
    velocity_claims,
    velocity_denial,
)
from paywarden.policy.compiler import CompiledPolicy
from paywarden.policy.decision import BudgetTrace, Decision
from paywarden.policy.evaluator import evaluate
from paywarden.policy.facts import StateSnapshot
from paywarden.policy.loading import POLICY_TEXT_KEY, POLICY_VERSION_KEY, load_policy
from paywarden.ports import UnitOfWork
from paywarden.runtime import Runtime

SHADOW_VERSION_KEY = "shadow_policy_version"
KIND_SET = "policy.shadow_set"
KIND_CLEARED = "policy.shadow_cleared"

_log = logging.getLogger("paywarden")


@dataclass(frozen=True, slots=True)
class ShadowStats:
    """What one Warden (its runtime) counted since it opened: decisions evaluated under a
    shadow policy, those whose shadow outcome differs from the enforced one
    (`shadow_flips_total`, by kind `enforced -> shadow`), and shadow evaluations that failed."""

    evaluated_total: int
    shadow_flips_total: int
    errors_total: int
    flips: dict[str, int]


@dataclass(slots=True)
class _State:
    version: str | None = None
    policy: CompiledPolicy | None = None
    evaluated: int = 0
    errors: int = 0
    flips: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


_STATES: weakref.WeakKeyDictionary[Runtime, _State] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def _state(rt: Runtime) -> _State:
    with _STATES_LOCK:
        state = _STATES.get(rt)
        if state is None:
            state = _STATES[rt] = _State()
        return state


def set_shadow_policy(rt: Runtime, source: str | Path, *, actor: str) -> CompiledPolicy:
    """Validate a candidate policy (YAML text or a path) and put it in shadow (audited).
    An invalid one raises `InvalidInputError` and changes nothing."""
    actor = _actor(actor)
    loaded = load_policy(source)
    if loaded.policy is None or loaded.text is None:
        raise InvalidInputError(f"the shadow policy is not valid: {loaded.report.summary()}")
    candidate = loaded.policy
    with rt.store.write() as tx:
        previous = tx.meta.get(SHADOW_VERSION_KEY) or None
        tx.meta.set(POLICY_TEXT_KEY + candidate.version, loaded.text)
        tx.meta.set(SHADOW_VERSION_KEY, candidate.version)
        body: dict[str, object] = {
            "actor": actor,
            "source": loaded.source,
            "policy_version": candidate.version,
            "previous_version": previous,
            "enforced_version": tx.meta.get(POLICY_VERSION_KEY),
        }
        records.append(tx, rt.now_us(), KIND_SET, candidate.version, body)
    return candidate


def clear_shadow_policy(rt: Runtime, *, actor: str) -> bool:
    """Stop evaluating the shadow policy (audited); False when none was set (nothing done)."""
    actor = _actor(actor)
    with rt.store.write() as tx:
        previous = tx.meta.get(SHADOW_VERSION_KEY)
        if not previous:
            return False
        tx.meta.set(SHADOW_VERSION_KEY, "")
        body: dict[str, object] = {"actor": actor, "policy_version": previous}
        records.append(tx, rt.now_us(), KIND_CLEARED, previous, body)
    return True


def shadow_policy(rt: Runtime) -> CompiledPolicy | None:
    """The shadow policy the store records now, or None."""
    with rt.store.read() as tx:
        return _policy_in(rt, tx)


def stats(rt: Runtime) -> ShadowStats:
    state = _state(rt)
    with state.lock:
        return ShadowStats(
            evaluated_total=state.evaluated,
            shadow_flips_total=sum(state.flips.values()),
            errors_total=state.errors,
            flips=dict(sorted(state.flips.items())),
        )


@dataclass(frozen=True, slots=True)
class Prepared:
    """What the shadow evaluation reads before the enforced decision holds anything: the
    candidate, its budget claims, rolling budgets' use and velocity counts (no lock taken)."""

    policy: CompiledPolicy
    claims: list[BudgetClaim]
    rolling: dict[int, tuple[int, int]]  # claim index -> (spent, held)
    velocity: list[tuple[VelocityClaim, int, int | None]]


def prepare(
    rt: Runtime, tx: UnitOfWork, intent: PaymentIntent, now: datetime
) -> Prepared | str | None:
    """Read, before the enforced decision, what the candidate needs from the ledger; None when
    no shadow policy is set, the error's name when reading failed (never raised)."""
    try:
        candidate = _policy_in(rt, tx)
        if candidate is None:
            return None
        claims = budget_claims(candidate, intent, now)
        rolling: dict[int, tuple[int, int]] = {}
        for index, claim in enumerate(claims):
            if claim.rolling:
                spent, held = tx.budgets.get_rolling_usage(
                    claim.spec.budget_id, claim.scope_key, claim.window_start_us
                )
                rolling[index] = (spent, held)
        velocity = holds.read_velocity(tx, velocity_claims(candidate, intent), to_us(now))
    except Exception as error:  # the enforced decision must not depend on the shadow
        _log.error("shadow policy unreadable: %s", error)
        return type(error).__name__
    return Prepared(candidate, claims, rolling, velocity)


def finish(
    rt: Runtime,
    tx: UnitOfWork,
    prepared: Prepared | str | None,
    intent: PaymentIntent,
    phase: str | None,
    now: datetime,
    enforced: CompiledPolicy,
    decision: Decision,
) -> dict[str, object] | None:
    """The `shadow` member of the decision's audit entry (None when no shadow policy is set),
    counted in this process's `stats`. Never raises: a fault is recorded as `error`."""
    if prepared is None:
        return None
    state = _state(rt)
    if isinstance(prepared, str):  # the candidate could not be read
        _count_error(state)
        return {"policy_version": None, "error": prepared}
    try:
        if decision.reason_code == "halted":  # the kill switch stops every policy alike
            shadow = decision
        else:
            shadow = _decide(tx, prepared, enforced, intent, phase, now, decision)
    except Exception as error:  # recorded, counted, never raised
        _log.error("shadow policy %s failed: %s", prepared.policy.version, error)
        _count_error(state)
        return {"policy_version": prepared.policy.version, "error": type(error).__name__}
    with state.lock:
        state.evaluated += 1
        if shadow.outcome != decision.outcome:
            state.flips[f"{decision.outcome} -> {shadow.outcome}"] += 1
    return {
        "policy_version": prepared.policy.version,
        "outcome": shadow.outcome,
        "reason_code": shadow.reason_code,
        "rule_ids": list(shadow.rule_ids),
    }


def _count_error(state: _State) -> None:
    with state.lock:
        state.evaluated += 1
        state.errors += 1


def _decide(
    tx: UnitOfWork,
    prepared: Prepared,
    enforced: CompiledPolicy,
    intent: PaymentIntent,
    phase: str | None,
    now: datetime,
    decision: Decision,
) -> Decision:
    """The candidate's decision: the evaluator, the budget gates and the velocity limits, on
    what the ledger held before the enforced decision; nothing is held or written."""
    claims = prepared.claims
    traces = _budget_traces(tx, prepared, enforced, intent, now, decision)
    state = StateSnapshot(phase=phase, budgets=tuple(traces))
    shadow = apply_budget_gates(evaluate(prepared.policy, intent, state, now), claims, traces)
    if shadow.outcome == "deny":
        return shadow
    now_us = to_us(now)
    for claim, count, last_us in prepared.velocity:
        denial = velocity_denial(shadow, claim, count, last_us, now_us)
        if denial is not None:
            return denial
    return shadow


def _budget_traces(
    tx: UnitOfWork,
    prepared: Prepared,
    enforced: CompiledPolicy,
    intent: PaymentIntent,
    now: datetime,
    decision: Decision,
) -> list[BudgetTrace]:
    """Each candidate budget's use before this decision: a rolling budget from its charges
    (read by `prepare`), a fixed window from what the enforced decision read for the same
    budget, scope, window and currency (its trace), else from that counter, and zero for a
    budget the enforced policy does not count (no counter row is created for it)."""
    currencies = {spec.budget_id: spec.limit.currency for spec in enforced.budgets}
    enforced_claims = budget_claims(enforced, intent, now)
    kept = {(claim.lock_key, claim.spec.limit.currency) for claim in enforced_claims}
    seen: dict[object, tuple[int, int]] = {}
    budgets = decision.trace.budgets if decision.trace is not None else ()
    if [t.budget_id for t in budgets] == [c.spec.budget_id for c in enforced_claims]:
        for claim, trace in zip(enforced_claims, budgets, strict=True):
            seen[(claim.lock_key, trace.currency)] = (trace.spent_minor, trace.held_minor)
    traces = []
    for index, claim in enumerate(prepared.claims):
        spec, key = claim.spec, (claim.lock_key, claim.spec.limit.currency)
        known = currencies.get(spec.budget_id)
        if known is not None and known != spec.limit.currency:
            raise ValueError(f"budget `{spec.budget_id}` counts {known}, not {spec.limit.currency}")
        spent, held = 0, 0
        if claim.rolling:
            spent, held = prepared.rolling[index]
        elif key in seen:
            spent, held = seen[key]
        elif key in kept:  # the enforced decision did not read it (an open approval)
            row = tx.budgets.lock_counter(*claim.lock_key, spec.limit.currency)
            spent, held = row.spent_minor, row.held_minor
        traces.append(budget_trace(claim, spent, held))
    return traces


def _policy_in(rt: Runtime, tx: UnitOfWork) -> CompiledPolicy | None:
    """The recorded shadow policy, compiled once per version per process."""
    version = tx.meta.get(SHADOW_VERSION_KEY)
    if not version:
        return None
    state = _state(rt)
    if state.version == version:
        return state.policy
    text = tx.meta.get(POLICY_TEXT_KEY + version)
    loaded = load_policy(text) if text is not None else None
    policy = loaded.policy if loaded is not None else None
    if policy is not None and policy.version != version:
        policy = None  # a text that no longer compiles to its version is not used
    with state.lock:
        state.version, state.policy = version, policy
    return policy


def _actor(actor: str) -> str:
    if not isinstance(actor, str) or not actor.strip():
        raise InvalidInputError("actor is required: who sets or clears the shadow policy")
    return actor.strip()
