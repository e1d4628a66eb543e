"""Which budgets and velocity limits an intent touches, in which window, for how much.

Pure functions: the store supplies counters, these decide what to reserve and what the gates
say. A budget counts intents in its own currency; another currency counts only through the
policy's `fx:` table, rounded up (against the budget holder). With no rate the claim is
`unconvertible` and the intent is denied: currency can never route around a budget.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from paywarden.clock import to_us
from paywarden.intent import PaymentIntent
from paywarden.money import format_minor
from paywarden.policy.budgets import BudgetSpec, Scope, VelocitySpec, applies
from paywarden.policy.compiler import CompiledPolicy
from paywarden.policy.decision import BudgetTrace, Decision
from paywarden.policy.fx import ceil_fraction

NO_VALUE = "(none)"
ROLLING_HEAD_US = -1  # the counter row that serialises a rolling budget's reservations


def scope_key(scope: Scope, intent: PaymentIntent) -> str:
    """The bucket an intent counts in. A missing value is its own shared bucket, never a pass.

    A session belongs to its agent: the key is `agent|session` (`|` is in no identifier), so
    another agent naming the same session id neither spends from nor reads its budget. A payee
    counts under its identity (a URL under its host), so every spelling shares one counter.
    """
    value: str | None
    if scope == "global":
        return "*"
    if scope == "agent":
        value = intent.agent
    elif scope == "session":
        if intent.session_id is None:
            return f"{intent.agent}|{NO_VALUE}"
        value = f"{intent.agent}|{intent.session_id}"
    elif scope == "recipient":
        value = intent.payee.identity
    elif scope == "category":
        value = intent.category
    else:
        value = intent.action
    return value if value is not None else NO_VALUE


@dataclass(frozen=True, slots=True)
class BudgetClaim:
    """One budget counter an intent must fit into. `amount_minor` is in the budget currency."""

    spec: BudgetSpec
    scope_key: str
    window_start_us: int
    amount_minor: int | None  # None: no FX rate from the intent's currency

    @property
    def rolling(self) -> bool:
        return self.spec.window.kind == "rolling"

    @property
    def counter_window_us(self) -> int:
        return ROLLING_HEAD_US if self.rolling else self.window_start_us

    @property
    def lock_key(self) -> tuple[str, str, int]:
        return (self.spec.budget_id, self.scope_key, self.counter_window_us)


@dataclass(frozen=True, slots=True)
class VelocityClaim:
    spec: VelocitySpec
    scope_key: str


def budget_claims(
    policy: CompiledPolicy, intent: PaymentIntent, now: datetime
) -> list[BudgetClaim]:
    """Claims sorted by lock key, the fixed order in which counters are locked."""
    claims = []
    for spec in policy.budgets:
        if not applies(spec.agents, spec.actions, intent.agent, intent.action):
            continue
        window_start_us = to_us(spec.window.start(now, policy.timezone))
        claims.append(
            BudgetClaim(
                spec,
                scope_key(spec.scope, intent),
                window_start_us,
                _converted(policy, spec, intent),
            )
        )
    return sorted(claims, key=lambda claim: claim.lock_key)


def velocity_claims(policy: CompiledPolicy, intent: PaymentIntent) -> list[VelocityClaim]:
    return sorted(
        (
            VelocityClaim(spec, scope_key(spec.scope, intent))
            for spec in policy.velocity
            if applies(spec.agents, spec.actions, intent.agent, intent.action)
        ),
        key=lambda claim: (claim.spec.velocity_id, claim.scope_key),
    )


def _converted(policy: CompiledPolicy, spec: BudgetSpec, intent: PaymentIntent) -> int | None:
    amount, limit = intent.amount, spec.limit
    if amount.currency == limit.currency:
        return amount.amount_minor
    value = policy.fx.convert_minor(
        amount.amount_minor, amount.currency, amount.exponent, limit.currency, limit.exponent
    )
    return None if value is None else max(ceil_fraction(value), 1)


def budget_trace(claim: BudgetClaim, spent_minor: int, held_minor: int) -> BudgetTrace:
    amount = claim.amount_minor or 0
    return BudgetTrace(
        budget_id=claim.spec.budget_id,
        currency=claim.spec.limit.currency,
        limit_minor=claim.spec.limit.amount_minor,
        spent_minor=spent_minor,
        held_minor=held_minor,
        amount_minor=amount,
        gate=gate_of(claim, spent_minor + held_minor + amount),
    )


def gate_of(claim: BudgetClaim, used_minor: int) -> str:
    """`over`, `halt`, `restrict`, `warn` or `ok` for a projected use; exact comparisons."""
    limit = claim.spec.limit.amount_minor
    gates = claim.spec.gates
    if used_minor > limit:
        return "over"
    for name, fraction in (
        ("halt", gates.halt),
        ("restrict", gates.restrict),
        ("warn", gates.warn),
    ):
        # used / limit > fraction  <=>  used * denominator > numerator * limit
        if fraction is not None and used_minor * fraction.denominator > fraction.numerator * limit:
            return name
    return "ok"


def apply_budget_gates(
    decision: Decision, claims: list[BudgetClaim], traces: list[BudgetTrace]
) -> Decision:
    """Budgets after the policy: over -> deny, halt -> deny, restrict -> approval, warn -> warning.

    A deny from the policy stands as it is. Budgets can only make a decision stricter.
    """
    if decision.outcome == "deny":
        return decision
    for claim in claims:
        if claim.amount_minor is None:
            return _deny(
                decision,
                "currency_not_convertible",
                f"budget `{claim.spec.budget_id}` counts {claim.spec.limit.currency} and the "
                "policy has no fx rate from the intent's currency; denied",
                f"budget:{claim.spec.budget_id}",
            )
    warnings = list(decision.warnings)
    restricted: list[str] = []
    for claim, trace in zip(claims, traces, strict=True):
        denial = _budget_denial(decision, claim, trace)
        if denial is not None:
            return denial
        if trace.gate == "restrict":
            restricted.append(trace.budget_id)
        if trace.gate in ("warn", "restrict"):
            used = _money(trace.spent_minor + trace.held_minor + trace.amount_minor, claim)
            warnings.append(
                f"budget `{trace.budget_id}` is past its {trace.gate} gate "
                f"({used} of {claim.spec.limit})"
            )
    if restricted and decision.outcome == "allow":
        return replace(
            decision,
            outcome="require_approval",
            reason_code="budget_restricted",
            reason=f"budget `{restricted[0]}` is past its restrict gate; approval required",
            rule_ids=(*decision.rule_ids, f"budget:{restricted[0]}"),
            warnings=tuple(warnings),
        )
    return replace(decision, warnings=tuple(warnings))


def _money(amount_minor: int, claim: BudgetClaim) -> str:
    return f"{format_minor(amount_minor, claim.spec.limit.exponent)} {claim.spec.limit.currency}"


def _budget_denial(decision: Decision, claim: BudgetClaim, trace: BudgetTrace) -> Decision | None:
    limit_id = f"budget:{trace.budget_id}"
    if trace.gate == "over":
        return _deny(
            decision,
            "budget_exceeded",
            f"budget `{trace.budget_id}` ({claim.spec.limit} per {claim.spec.window}) has "
            f"{_money(trace.remaining_minor, claim)} left and the intent needs "
            f"{_money(trace.amount_minor, claim)}; denied",
            limit_id,
        )
    if trace.gate == "halt":
        return _deny(
            decision,
            "budget_halt",
            f"budget `{trace.budget_id}` would pass its halt gate; denied",
            limit_id,
        )
    return None


def _deny(decision: Decision, reason_code: str, reason: str, limit_id: str) -> Decision:
    """A ledger denial names the budget or velocity limit that decided it in `rule_ids`."""
    return replace(
        decision, outcome="deny", reason_code=reason_code, reason=reason, rule_ids=(limit_id,)
    )


def velocity_denial(
    decision: Decision, claim: VelocityClaim, count_in_window: int, last_us: int | None, now_us: int
) -> Decision | None:
    """The denial for one velocity limit, or None when the intent passes it."""
    spec = claim.spec
    if spec.max_count is not None and count_in_window >= spec.max_count:
        return _deny(
            decision,
            "rate_limit_exceeded",
            f"velocity `{spec.velocity_id}` allows {spec.max_count} payments per "
            f"{spec.window_seconds}s for {spec.scope} `{claim.scope_key}`; denied",
            f"velocity:{spec.velocity_id}",
        )
    if (
        spec.cooldown_seconds
        and last_us is not None
        and now_us - last_us < spec.cooldown_seconds * 1_000_000
    ):
        return _deny(
            decision,
            "cooldown_active",
            f"velocity `{spec.velocity_id}` needs {spec.cooldown_seconds}s between "
            f"payments for {spec.scope} `{claim.scope_key}`; denied",
            f"velocity:{spec.velocity_id}",
        )
    return None
