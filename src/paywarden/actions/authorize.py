"""Authorize: admit an intent, decide it in one store transaction, record and audit it.

In order (hops 1 to 5 of the request flow, `docs/architecture.md`):

1. `admit`: secrets out of the agent's text, identifiers free of secrets
   (`paywarden.admission`); a refused intent is recorded by `refuse`, then raised.
2. In one write transaction: the policy in force (read inside it), the expiry sweep, an
   idempotency replay, then `decide.decide` (kill switch, approvals, budgets, policy, grants,
   the hold), the shadow policy's outcome when one is set (`actions.shadow`, read-only), and
   the decision's audit entry and index row (`record`).
3. Failures: a store failure denies (`store_busy`, `store_unavailable`); any other fault
   denies with `internal_error`, audited in a transaction of its own.
"""

from __future__ import annotations

import json
import logging
import time
import weakref
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from functools import partial

from paywarden import admission, limits, log_context
from paywarden.actions import alerts, approvals, decide, refusals, shadow
from paywarden.actions.policy import sync_policy
from paywarden.audit import proof, records
from paywarden.clock import to_us
from paywarden.errors import (
    IdempotencyConflictError,
    InvalidInputError,
    NotFoundError,
    StoreBusyError,
    StoreError,
)
from paywarden.intent import PaymentIntent
from paywarden.mandates import Presented
from paywarden.policy.compiler import CompiledPolicy
from paywarden.policy.decision import Decision
from paywarden.policy.evaluator import deny_everything
from paywarden.policy.loading import POLICY_TEXT_KEY
from paywarden.ports import NewDecision, UnitOfWork
from paywarden.runtime import Runtime

_log = logging.getLogger("paywarden")


def authorize(
    rt: Runtime,
    intent: PaymentIntent,
    *,
    actor: str | None = None,
    mandate: Presented | None = None,
) -> Decision:
    """Decide one intent, hold its amount if allowed or pending, record and audit it.
    `mandate`: an AP2 mandate verified by `paywarden.ap2` (or why it was refused)."""
    return decide_admitted(rt, admit(rt, intent), actor, mandate)


def admit(rt: Runtime, intent: PaymentIntent) -> PaymentIntent:
    """The intent as paywarden records it (secrets redacted); a refused one is audited, then
    raised."""
    try:
        return admission.admit(intent, rt.redactor, lambda: digest_key(rt))
    except InvalidInputError as error:
        refuse(
            rt,
            agent=intent.agent,
            fields=admission.refusal_fields(intent, rt.redactor),
            error=error,
            actor=f"agent:{intent.agent}",
        )
        raise


def digest_key(rt: Runtime) -> bytes:
    return admission.digest_key(rt.secret.get())


def refuse(
    rt: Runtime,
    *,
    agent: str,
    fields: Mapping[str, object],
    error: InvalidInputError,
    actor: str | None = None,
) -> Decision:
    """Record a request that could not become an intent (`invalid_input`): a deny decision
    with an audit entry, and no other change. Sets `error.decision_id`; a store failure is
    logged instead."""
    now = rt.now()
    policy = rt.policy
    decision = replace(
        deny_everything("invalid_input", str(error), policy.version if policy else "none", now),
        decision_id=rt.ids("dec"),
    )
    try:
        with rt.store.write() as tx:
            refusals.record(
                tx, decision, fields, rt.redactor, actor or f"agent:{agent}", now, error.code
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


def decide_admitted(
    rt: Runtime, intent: PaymentIntent, actor: str | None, mandate: Presented | None = None
) -> Decision:
    """`_decide_admitted`, timed and told to the runtime's decision observers (metrics) when it
    has any; an idempotent replay decides nothing and is not told. Log records made meanwhile
    carry the agent; the request being served notes the decision's id (`paywarden.log_context`)."""
    with log_context.bound(agent=intent.agent):
        started = time.perf_counter()
        decision = _decide_admitted(rt, intent, actor, mandate)
    log_context.note(decision_id=decision.decision_id, agent=intent.agent)
    if rt.decision_observers and not decision.replayed:
        seconds = time.perf_counter() - started
        for observe in rt.decision_observers:
            observe(decision, intent.action, seconds)
    return decision


def _decide_admitted(
    rt: Runtime, intent: PaymentIntent, actor: str | None, mandate: Presented | None = None
) -> Decision:
    """Hops 2 to 5 for an admitted intent, in one store transaction (`Store.run`: among
    concurrent callers, one savepoint of a group commit, answered once it is on disk)."""
    now = rt.now()
    intent, mismatch = with_environment(rt, intent)
    actor = actor or f"agent:{intent.agent}"
    try:
        decision = rt.store.run(partial(_decide_in, rt, intent, mismatch, now, actor, mandate))
    except IdempotencyConflictError:
        raise
    except StoreBusyError as error:  # taken, then the line was too long: still audited
        return _audit_failure(
            rt, intent, failure_denial("store_busy", error, rt.policy, now), actor
        )
    except StoreError as error:
        return failure_denial("store_unavailable", error, rt.policy, now)
    except Exception as error:  # an internal fault must deny, never allow
        return _audit_failure(
            rt, intent, failure_denial("internal_error", error, rt.policy, now), actor
        )
    if not decision.replayed and decision.policy_version.startswith("sha256:"):
        _note_policy_text_kept(rt, decision.policy_version)
    rt.checkpoints.maybe_checkpoint()
    return decision


def _decide_in(
    rt: Runtime,
    intent: PaymentIntent,
    mismatch: str | None,
    now: datetime,
    actor: str,
    mandate: Presented | None,
    tx: UnitOfWork,
) -> Decision:
    """The decision's transaction: the policy in force, the expiry sweep, an idempotency
    replay, then the decision itself and its record."""
    policy = policy_in_force(rt, tx)
    approvals.sweep(tx, to_us(now), limits.expire_per_authorize_max)
    replayed = _replay(rt, tx, intent)
    if replayed is not None:
        return replayed
    if policy is None:
        decision = _deny_without_policy(rt, now)
    elif mismatch is not None:
        decision = deny_everything("environment_mismatch", mismatch, policy.version, now)
    else:
        phase = _session_phase(tx, intent)
        prepared = shadow.prepare(rt, tx, intent, now)  # before anything is held
        context = decide.Context(policy, intent, phase, now, rt.ids, rt.hold_ttl_us, mandate)
        decision = decide.decide(tx, context)
        shadowed = shadow.finish(rt, tx, prepared, intent, phase, now, policy, decision)
        decision = record(rt, tx, intent, decision, now, actor, shadowed, mandate)
        alerts.after_decision(rt, tx, policy, intent, decision, to_us(now))  # in this tx: once
        return decision
    return record(rt, tx, intent, decision, now, actor, mandate=mandate)


def refuse_on_rail(rt: Runtime, intent: PaymentIntent, reason: str, actor: str | None) -> Decision:
    """A payment its rail cannot take (unknown rail, no route for this payee or agent): a deny
    decision, recorded and audited before anything is held. The idempotency key is not recorded
    with it, so the same key can pay once the rail is configured."""
    now = rt.now()
    policy = rt.policy
    version = policy.version if policy is not None else "none"
    decision = replace(
        deny_everything("rail_refused", reason, version, now), decision_id=rt.ids("dec")
    )
    recorded = with_environment(rt, intent)[0].with_fields(idempotency_key=None)
    try:
        with rt.store.write() as tx:
            return record(rt, tx, recorded, decision, now, actor or f"agent:{intent.agent}")
    except StoreBusyError as error:
        return failure_denial("store_busy", error, policy, now)
    except StoreError as error:
        return failure_denial("store_unavailable", error, policy, now)


def policy_in_force(rt: Runtime, tx: UnitOfWork) -> CompiledPolicy | None:
    """The policy of the version last recorded in the store, read inside the decision's own
    transaction: once another process (or thread) has recorded a new version, every decision
    committed after it uses that version, never the one this process had."""
    return sync_policy(rt, tx)


def with_environment(rt: Runtime, intent: PaymentIntent) -> tuple[PaymentIntent, str | None]:
    """The environment comes from the deployment; an intent may only repeat it."""
    deployment = rt.environment
    if intent.environment is None:
        return intent.with_environment(deployment), None
    if intent.environment != deployment:
        return intent, (
            f"intent environment `{intent.environment}` differs from this "
            f"deployment's `{deployment}`"
        )
    return intent, None


def record(
    rt: Runtime,
    tx: UnitOfWork,
    intent: PaymentIntent,
    decision: Decision,
    now: datetime,
    actor: str,
    shadowed: Mapping[str, object] | None = None,
    mandate: Presented | None = None,
) -> Decision:
    """Write the decision's audit entry (the full record) and its index row, in `tx`.

    The entry's trace lists the rules that matched or failed; the others are named by the
    policy version, whose text the store keeps (`proof_policy_kept`): when it cannot, the
    entry lists every rule instead. `shadowed` is the outcome under the shadow policy
    (`actions.shadow`), recorded as the entry's `shadow` member."""
    if decision.decision_id is None:
        decision = replace(decision, decision_id=rt.ids("dec"))
    decision_id, now_us = str(decision.decision_id), to_us(now)
    recorded = decision.to_record()
    trace = recorded["trace"]
    compact = isinstance(trace, dict) and "rules_not_listed" in trace
    if compact and not proof_policy_kept(rt, tx, decision.policy_version):
        recorded = decision.to_dict()
    body = records.decision_body(intent, recorded, actor, rt.redactor)
    if shadowed is not None:
        body["shadow"] = dict(shadowed)
    if mandate is not None:
        body["mandate"] = mandate.summary()  # the AP2 mandate's digest and ids, never the token
    entry = records.append(tx, now_us, "decision", decision_id, body)
    tx.decisions.insert(
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
            category=intent.category,
            anomalous=decision.trace.anomaly is not None and decision.trace.anomaly.flagged,
        )
    )
    return decision


# Per store: the policy versions whose text it is known to keep in a committed transaction
# (meta entries are never removed, so a version seen once stays kept; the set only saves a
# read per decision). Filled only after a commit: a text written by a batch that then failed
# must not count.
_POLICY_TEXTS_KEPT: weakref.WeakKeyDictionary[object, set[str]] = weakref.WeakKeyDictionary()


def _note_policy_text_kept(rt: Runtime, version: str) -> None:
    """After a decision committed: remember that the store keeps `version`'s text, read back
    once per version in a read transaction of its own."""
    kept = _POLICY_TEXTS_KEPT.get(rt.store)
    if kept is not None and version in kept:
        return
    try:
        with rt.store.read() as tx:
            present = tx.meta.get(POLICY_TEXT_KEY + version) is not None
    except StoreError:
        return  # asked again after the next decision
    if present:
        _POLICY_TEXTS_KEPT.setdefault(rt.store, set()).add(version)


def proof_policy_kept(rt: Runtime, tx: UnitOfWork, version: str) -> bool:
    """Whether the store keeps the text of policy `version` (`meta`, `policy_text:<version>`),
    storing it in `tx` from the policy in force when it is that version: every version a
    compact decision record cites can then be expanded (`paywarden.audit.proof`)."""
    kept = _POLICY_TEXTS_KEPT.get(rt.store)
    if kept is not None and version in kept:
        return True
    if tx.meta.get(POLICY_TEXT_KEY + version) is not None:
        return True
    loaded = rt.loaded
    if loaded.policy is None or loaded.policy.version != version or loaded.text is None:
        return False
    tx.meta.set(POLICY_TEXT_KEY + version, loaded.text)  # kept once `tx` commits
    return True


def failure_denial(
    code: str, error: Exception, policy: CompiledPolicy | None, now: datetime
) -> Decision:
    version = policy.version if policy else "none"
    return deny_everything(code, f"{error or type(error).__name__}; denied", version, now)


def decision(rt: Runtime, decision_id: str) -> Decision:
    """A recorded decision with its whole proof trace (refused requests included): the rules
    its record leaves out are expanded from the text of the policy version it cites."""
    with rt.store.read() as tx:
        recorded = json.loads(_decision_body_in(tx, decision_id))["decision"]
        rules = _cited_rules(rt, tx, recorded)
    return Decision.from_dict(proof.expand_decision(recorded, rules))


def decision_agent(rt: Runtime, decision_id: str) -> str:
    """The agent that asked for a decision (for object-level authorization)."""
    return str(json.loads(_decision_body(rt, decision_id))["intent"]["agent"])


def _decision_body(rt: Runtime, decision_id: str) -> str:
    with rt.store.read() as tx:
        return _decision_body_in(tx, decision_id)


def _decision_body_in(tx: UnitOfWork, decision_id: str) -> str:
    body = tx.decisions.get_body(decision_id)
    if body is None:
        refused = [e for e in tx.audit.list_by_ref(decision_id) if e.kind == refusals.KIND]
        body = refused[0].body if refused else None
    if body is None:
        raise NotFoundError(f"no decision `{decision_id}`")
    return body


def _cited_rules(
    rt: Runtime, tx: UnitOfWork, recorded: Mapping[str, object]
) -> proof.PolicyRules | None:
    """The rules of the policy version a recorded decision cites, when its record leaves some
    out (None when it lists them all, or the version's text is not kept)."""
    trace = recorded.get("trace")
    version = proof.cited_version(recorded)
    if version is None or not isinstance(trace, Mapping) or "rules_not_listed" not in trace:
        return None
    return proof.stored_policy_rules(tx, version, rt.policy)


def _audit_failure(
    rt: Runtime, intent: PaymentIntent, decision: Decision, actor: str | None
) -> Decision:
    """An `internal_error` or `store_busy` denial leaves an audit entry too, in a write of its
    own (for `store_busy`, one more turn in the store's line, within the same timeout); only a
    store that cannot take it sends the record to the process log instead."""
    decision = replace(decision, decision_id=rt.ids("dec"))
    code = decision.reason_code
    _log.error("%s deciding for agent %r: %s", code, intent.agent, decision.reason)
    try:
        with rt.store.write() as tx:
            refusals.record(
                tx,
                decision,
                intent.canonical(),
                rt.redactor,
                actor or f"agent:{intent.agent}",
                rt.now(),
                code,
            )
    except Exception as error:  # the process log above is the record
        _log.error("%s denial %s not audited: %s", code, decision.decision_id, error)
    return decision


def _replay(rt: Runtime, tx: UnitOfWork, intent: PaymentIntent) -> Decision | None:
    if intent.idempotency_key is None:
        return None
    stored = tx.decisions.get_by_key(intent.agent, intent.idempotency_key)
    if stored is None:
        return None
    if stored.fingerprint != intent.fingerprint():
        raise IdempotencyConflictError(
            f"idempotency key `{intent.idempotency_key}` was used for a different intent "
            f"(decision `{stored.decision_id}`)"
        )
    recorded = json.loads(stored.body)["decision"]
    rules = _cited_rules(rt, tx, recorded)
    return replace(Decision.from_dict(proof.expand_decision(recorded, rules)), replayed=True)


def _deny_without_policy(rt: Runtime, now: datetime) -> Decision:
    code = rt.loaded.reason_code or "policy_invalid"
    summary = rt.loaded.report.summary()
    return deny_everything(code, f"no usable policy ({summary}); denied", "none", now)


def _session_phase(tx: UnitOfWork, intent: PaymentIntent) -> str | None:
    """The phase of the agent's tracked session: server-side state, never the agent's word."""
    if intent.session_id is None:
        return None
    session = tx.sessions.get(intent.agent, intent.session_id)
    return session.phase if session is not None else None
