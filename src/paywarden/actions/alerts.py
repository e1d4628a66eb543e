"""Alerts: the policy's `alerts:` rules raised once each, audited and sent through the outbox.

An alert is a row of `tx.alerts` claimed by its `dedup_key` (what it is about, once): the
INSERT that claims it is the only writer that wins among threads, processes and hosts, and it
runs in the same transaction as the alert's audit entry (`alert.raised`) and its outbox event
(delivered by the webhook dispatcher: signed, retried, at least once). Two ways in:

- In the decision's own transaction (`after_decision`, called by `actions.authorize`):
  `budget_threshold` (a budget's use reaches a percentage or a gate, once per budget, scope
  value, window and threshold), `large_transaction` (once per decision), `rate_spike`.
- By a sweep (`sweep`, run every few seconds by the gateway, or by `paywarden alerts sweep`):
  `breaker_opened` and `halt` from the audit log's `breaker.opened` and `halt.set` entries
  after a cursor kept in the store, and `approval_waiting` for requests pending longer than
  the rule's `after`. A sweep that races another claims nothing twice (the dedup key).
- `audit_failure`: raised by `audit_failed` when a verification of the audit chain fails,
  once per broken entry.

docs/observability.md ("Alerts") documents each kind, its body and the Slack format.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from fractions import Fraction

from paywarden import limits
from paywarden.audit import records
from paywarden.audit.canonical import canonical_text
from paywarden.audit.chain import VerifyResult
from paywarden.errors import StoreError
from paywarden.intent import PaymentIntent
from paywarden.ledger.usage import budget_claims
from paywarden.money import format_minor
from paywarden.policy.alert_settings import AlertRule
from paywarden.policy.budgets import Gates
from paywarden.policy.compiler import CompiledPolicy
from paywarden.policy.decision import BudgetTrace, Decision
from paywarden.policy.fx import ceil_fraction
from paywarden.ports import AlertRow, UnitOfWork
from paywarden.runtime import Runtime

KIND = "alert.raised"  # the audit entry's kind and the webhook event's type
CURSOR_KEY = "alerts.audit_seq"  # meta: the last audit entry the sweep has read
SWEPT_KINDS = {"breaker.opened": "breaker_opened", "halt.set": "halt"}
SWEEP_ENTRIES_MAX = 500
ALERTS_LIST_MAX = 1000
_log = logging.getLogger("paywarden.alerts")
_INERT = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "@": "\uff20"})


@dataclass(frozen=True, slots=True)
class Raised:
    """An alert about to be claimed: what it is about, its one line of text, its details."""

    rule: AlertRule
    about: str  # with the rule id, the dedup key
    ref_id: str
    text: str
    details: dict[str, object]


def inert(text: str) -> str:
    """Text that quotes agents' values, made inert for chat tools as approval events are
    (`approval_request.event`): no mentions, no links, one line."""
    flat = "".join(char if char.isprintable() else " " for char in text)
    return flat.translate(_INERT)


def claim(rt: Runtime, tx: UnitOfWork, raised: Raised, now_us: int) -> AlertRow | None:
    """Claim the alert in `tx`; when this writer wins, audit it and queue its event."""
    rule = raised.rule
    row = AlertRow(
        alert_id=rt.ids("alr"),
        dedup_key=f"{rule.rule_id}|{rule.kind}|{raised.about}",
        rule_id=rule.rule_id,
        kind=rule.kind,
        ref_id=raised.ref_id,
        text=inert(raised.text),
        body=canonical_text(raised.details),
        created_us=now_us,
    )
    if not tx.alerts.insert_if_absent(row):
        return None
    records.append(tx, now_us, KIND, row.alert_id, {"actor": "system", **event(row)})
    if tx.meta.get("webhooks") == "on":
        tx.outbox.insert(KIND, canonical_text(event(row)), now_us)
    return row


def event(row: AlertRow) -> dict[str, object]:
    """The webhook event (and audit body) of an alert; `text` reads as a Slack message."""
    return {
        "type": KIND,
        "alert_id": row.alert_id,
        "rule_id": row.rule_id,
        "kind": row.kind,
        "ref_id": row.ref_id,
        "created_us": row.created_us,
        "details": json.loads(row.body),
        "text": row.text,
    }


# In the decision's transaction -----------------------------------------------------------


def after_decision(
    rt: Runtime,
    tx: UnitOfWork,
    policy: CompiledPolicy,
    intent: PaymentIntent,
    decision: Decision,
    now_us: int,
) -> None:
    """Raise the decision's alerts in its own transaction (nothing when the policy has none)."""
    rules = policy.alerts.rules
    if not rules:
        return
    for rule in rules:
        if rule.kind == "budget_threshold" and decision.hold_id is not None:
            raised = budget_crossings(rule, policy, intent, decision)
        elif rule.kind == "large_transaction":
            raised = large_transaction(rule, policy, intent, decision)
        elif rule.kind == "rate_spike" and rate_spike_of(decision):
            raised = [rate_spike(rule, policy, intent, decision, now_us)]
        else:
            continue
        for item in raised:
            claim(rt, tx, item, now_us)


def rate_spike_of(decision: Decision) -> bool:
    """Whether the decision's anomaly facts saw a rate spike (`anomaly.rate_spike`; the policy
    reads that fact whenever it has a `rate_spike` alert rule)."""
    anomaly = decision.trace.anomaly
    return anomaly is not None and anomaly.rate_spike


def budget_crossings(
    rule: AlertRule, policy: CompiledPolicy, intent: PaymentIntent, decision: Decision
) -> list[Raised]:
    """Each threshold of `rule` that a budget's use (spent + held, this hold included) has
    reached in its current window, keyed by budget, scope value, window and threshold. The
    common case, nothing reached, costs a few integer comparisons per budget."""
    specs = {spec.budget_id: spec for spec in policy.budgets}
    reached: dict[str, tuple[BudgetTrace, list[tuple[str, Fraction]]]] = {}
    for trace in decision.trace.budgets:
        spec = specs.get(trace.budget_id)
        if spec is None or trace.limit_minor <= 0:
            continue
        if rule.budgets is not None and trace.budget_id not in rule.budgets:
            continue
        used = trace.spent_minor + trace.held_minor + trace.amount_minor
        hits = [
            (gate, value)
            for gate, value in _thresholds(rule, spec.gates)
            if used * value.denominator >= value.numerator * trace.limit_minor
        ]
        if hits:
            reached[trace.budget_id] = (trace, hits)
    if not reached:
        return []
    raised = []
    for claim_ in budget_claims(policy, intent, decision.trace.evaluated_at):
        spec = claim_.spec
        if spec.budget_id not in reached:
            continue
        trace, hits = reached[spec.budget_id]
        use = Fraction(trace.spent_minor + trace.held_minor + trace.amount_minor, trace.limit_minor)
        window = claim_.window_start_us
        if claim_.rolling:  # a rolling window starts anew each instant: count in its lengths
            window = claim_.window_start_us // max(spec.window.seconds * 1_000_000, 1)
        for gate, threshold in hits:
            name = f"{_percent(threshold)}%"
            name = f"the {gate} gate ({name})" if gate else name
            about = f"{spec.budget_id}|{claim_.scope_key}|{window}|{threshold}"
            raised.append(_budget_alert(rule, trace, spec.scope, name, threshold, use, about))
    return raised


def _thresholds(rule: AlertRule, gates: Gates) -> list[tuple[str, Fraction]]:
    """(gate name or "", fraction of the limit) of each threshold of `rule` for a budget."""
    named = [("", value) for value in rule.percents]
    if rule.gates:
        for gate in ("warn", "restrict", "halt"):
            value = getattr(gates, gate)
            if value is not None:
                named.append((gate, value))
    return named


def _percent(value: Fraction) -> str:
    return format(float(value * 100), "g")


def _budget_alert(
    rule: AlertRule,
    trace: BudgetTrace,
    scope: str,
    name: str,
    threshold: Fraction,
    use: Fraction,
    about: str,
) -> Raised:
    percent = _percent(use)
    text = f"Budget {trace.budget_id} ({scope}) reached {name}: {percent}% used"
    details: dict[str, object] = {
        "budget_id": trace.budget_id,
        "scope": scope,
        "threshold": f"{_percent(threshold)}%",
        "used_percent": percent,
        "limit_minor": trace.limit_minor,
        "used_minor": trace.spent_minor + trace.held_minor + trace.amount_minor,
        "currency": trace.currency,
    }
    return Raised(rule, about, trace.budget_id, text, details)


def large_transaction(
    rule: AlertRule, policy: CompiledPolicy, intent: PaymentIntent, decision: Decision
) -> list[Raised]:
    """The decision, when its amount (converted to the rule's currency, rounded up) is at
    least the rule's; an amount that cannot be converted is not compared."""
    threshold = rule.amount
    if threshold is None or decision.outcome not in rule.outcomes:
        return []
    if intent.currency == threshold.currency:
        if intent.amount_minor < threshold.amount_minor:
            return []
        return [_decision_alert(rule, intent, decision, f"at least {threshold}")]
    amount = policy.fx.convert_minor(
        intent.amount_minor,
        intent.currency,
        intent.amount.exponent,
        threshold.currency,
        threshold.exponent,
    )
    if amount is None or ceil_fraction(amount) < threshold.amount_minor:
        return []
    return [_decision_alert(rule, intent, decision, f"at least {threshold}")]


def rate_spike(
    rule: AlertRule, policy: CompiledPolicy, intent: PaymentIntent, decision: Decision, now_us: int
) -> Raised:
    """The agent's rate spike, once per agent and rate window (`anomaly.rate_window`)."""
    window_us = max(policy.anomaly.rate_window_seconds, 1) * 1_000_000
    raised = _decision_alert(rule, intent, decision, "a rate spike")
    return replace(raised, about=f"{intent.agent}|{now_us // window_us}")


def _decision_alert(rule: AlertRule, intent: PaymentIntent, decision: Decision, why: str) -> Raised:
    decision_id = str(decision.decision_id)
    text = (
        f"Payment of {intent.amount} by agent {intent.agent} to {intent.recipient} ({why}): "
        f"{decision.outcome} ({decision.reason_code})"
    )
    details: dict[str, object] = {
        "decision_id": decision_id,
        "agent": intent.agent,
        "action": intent.action,
        "amount_minor": intent.amount_minor,
        "currency": intent.currency,
        "recipient": intent.recipient,
        "outcome": decision.outcome,
        "reason_code": decision.reason_code,
    }
    return Raised(rule, decision_id, decision_id, text, details)


# The sweep ------------------------------------------------------------------------------------


def sweep(rt: Runtime) -> list[AlertRow]:
    """Raise the alerts of the audit log's new breaker and halt entries and of approvals
    waiting too long, in one write transaction; the alerts this call claimed."""
    policy = rt.policy
    swept = (*SWEPT_KINDS.values(), "approval_waiting")
    if policy is None or not any(rule.kind in swept for rule in policy.alerts.rules):
        return []  # nothing to sweep for: no transaction at all
    return rt.store.run(lambda tx: _sweep_in(rt, tx, policy))


def _sweep_in(rt: Runtime, tx: UnitOfWork, policy: CompiledPolicy) -> list[AlertRow]:
    now_us = rt.now_us()
    raised: list[Raised] = []
    cursor = tx.meta.get(CURSOR_KEY)
    head = tx.audit.get_head()
    if cursor is None:  # the first sweep starts at the head: history raises nothing
        after = head.seq if head is not None else 0
    else:
        after = int(cursor)
        for entry in tx.audit.list_after(after, SWEEP_ENTRIES_MAX):
            after = entry.seq
            kind = SWEPT_KINDS.get(entry.kind)
            if kind is not None:
                body = json.loads(entry.body)
                raised += _entry_alerts(policy, kind, entry.seq, entry.ref_id, body)
    if cursor != str(after):
        tx.meta.set(CURSOR_KEY, str(after))
    raised += _waiting_alerts(tx, policy, now_us)
    claimed = (claim(rt, tx, item, now_us) for item in raised)
    return [row for row in claimed if row is not None]


def _entry_alerts(
    policy: CompiledPolicy, kind: str, seq: int, ref_id: str, body: dict[str, object]
) -> list[Raised]:
    raised = []
    for rule in policy.alerts.of_kind(kind):
        if kind == "breaker_opened":
            if rule.rails is not None and ref_id not in rule.rails:
                continue
            failures = body.get("consecutive_failures")
            text = f"Circuit breaker of rail {ref_id} opened after {failures} failures in a row"
            details: dict[str, object] = {"rail": ref_id, "consecutive_failures": failures}
        else:
            who = "all agents" if ref_id == "*" else f"agent {ref_id}"
            text = f"Payments halted for {who} by {body.get('actor')}: {body.get('reason')}"
            details = {"scope": ref_id, "actor": body.get("actor"), "reason": body.get("reason")}
        raised.append(Raised(rule, f"seq:{seq}", ref_id, text, {"audit_seq": seq, **details}))
    return raised


def _waiting_alerts(tx: UnitOfWork, policy: CompiledPolicy, now_us: int) -> list[Raised]:
    rules = policy.alerts.of_kind("approval_waiting")
    if not rules:
        return []
    pending = tx.approvals.list_fair_page("pending", None, limits.list_rows_max, 0)
    raised = []
    for rule in rules:
        cutoff_us = now_us - rule.after_seconds * 1_000_000
        for row in pending:
            if row.created_us > cutoff_us or row.expires_us <= now_us:
                continue
            intent = json.loads(row.intent)
            minutes = (now_us - row.created_us) // 60_000_000
            amount = format_minor(int(intent["amount_minor"]), _exponent(policy, intent))
            text = (
                f"Approval {row.approval_id} of agent {row.agent} ({amount} "
                f"{intent['currency']}) has waited {minutes} min"
            )
            details: dict[str, object] = {
                "approval_id": row.approval_id,
                "agent": row.agent,
                "waiting_seconds": (now_us - row.created_us) // 1_000_000,
            }
            raised.append(Raised(rule, row.approval_id, row.approval_id, text, details))
    return raised


def _exponent(policy: CompiledPolicy, intent: dict[str, object]) -> int:
    currency = str(intent["currency"])
    return policy.currencies.exponent(currency) if currency in policy.currencies else 2


# Audit verification ---------------------------------------------------------------------------


def audit_failed(rt: Runtime, result: VerifyResult) -> None:
    """Raise `audit_failure` alerts for a failed verification (once per broken entry). A
    store that cannot take it leaves the failure in the process log, where it is already."""
    policy = rt.policy
    if result.ok or policy is None:
        return
    rules = policy.alerts.of_kind("audit_failure")
    if not rules:
        return
    seq = result.first_bad_seq if result.first_bad_seq is not None else result.head_seq
    text = f"Audit log verification failed at entry {seq}: {result.reason}"
    details: dict[str, object] = {"first_bad_seq": seq, "reason": result.reason}
    now_us = rt.now_us()
    try:
        with rt.store.write() as tx:
            for rule in rules:
                claim(rt, tx, Raised(rule, f"seq:{seq}", f"audit:{seq}", text, details), now_us)
    except StoreError as error:
        _log.error("audit failure alert not raised: %s", error)


def view(row: AlertRow) -> dict[str, object]:
    """An alert as the CLI and REST show it (its details decoded)."""
    return {
        "alert_id": row.alert_id,
        "rule_id": row.rule_id,
        "kind": row.kind,
        "ref_id": row.ref_id,
        "text": row.text,
        "details": json.loads(row.body),
        "created_us": row.created_us,
    }


def alerts(rt: Runtime, kind: str | None = None, limit: int = 100) -> list[AlertRow]:
    """Recent alerts, newest first, optionally of one kind (at most `ALERTS_LIST_MAX`)."""
    with rt.store.read() as tx:
        return tx.alerts.list_recent(kind, max(1, min(limit, ALERTS_LIST_MAX)))
