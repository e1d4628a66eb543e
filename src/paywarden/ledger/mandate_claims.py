"""AP2 mandates inside the decision's transaction: the requirement, the checks, the claims.

`gate` runs before the policy: a refused presentation denies with its own code; an intent that
the policy's `mandates.requires_mandate` covers is denied `mandate_required` without a verified
mandate; a verified one must pay exactly what the intent asks (`mandate_mismatch`) and keep the
open mandate's constraints (`mandate_constraint`). `claim` runs once the decision would allow
or hold: the nonce is claimed once per audience (`mandate_replayed`) and the amount and one use
are reserved against the open mandate's budget and recurrence limit in one conditional UPDATE
(`mandate_budget_exceeded`). `release` undoes a claim when the decision then becomes a denial,
in the same transaction, so a refusal leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from paywarden import mandates
from paywarden.intent import PaymentIntent
from paywarden.mandates import Mandate, MandateRefusal, Presented, Problem
from paywarden.money import format_minor
from paywarden.policy.compiler import CompiledPolicy
from paywarden.policy.facts import Facts, StateSnapshot
from paywarden.ports import UnitOfWork
from paywarden.ports.mandates import Reservation


def gate(
    policy: CompiledPolicy,
    intent: PaymentIntent,
    phase: str | None,
    presented: Presented | None,
    now: datetime,
) -> Problem | None:
    """Why the intent cannot go on to the policy because of its mandate, or None."""
    if isinstance(presented, MandateRefusal):
        return presented.code, f"{presented.reason}; denied"
    if presented is None:
        facts = Facts(intent, StateSnapshot(phase=phase), now, policy.timezone)
        entry = policy.mandates.requirement(facts)
        if entry is None:
            return None
        return "mandate_required", (
            f"`mandates.requires_mandate` entry `{entry}` requires a verified AP2 mandate for "
            f"`{intent.action}` of {intent.amount}; denied"
        )
    today = now.astimezone(policy.timezone).date()
    return mandates.mismatch(presented, intent.amount, intent.payee) or mandates.violation(
        presented, today
    )


def facts(tx: UnitOfWork, presented: Presented | None) -> Mapping[str, object]:
    """The CEL variable `mandate` for this decision (usage read in its transaction)."""
    usage = tx.mandates.get_usage(presented.mandate_id) if isinstance(presented, Mandate) else None
    return mandates.cel_facts(presented, usage)


def claim(tx: UnitOfWork, mandate: Mandate, now_us: int) -> Problem | None:
    """Claim the nonce, then reserve the amount and one use; None when both succeeded."""
    if not tx.mandates.claim(
        mandate.audience, mandate.nonce, mandate.mandate_id, mandate.digest, now_us
    ):
        return "mandate_replayed", (
            f"nonce `{mandate.nonce[:64]}` of audience `{mandate.audience}` was used before; denied"
        )
    c, amount = mandate.constraints, mandate.amount
    use = Reservation(
        mandate.mandate_id,
        amount.currency,
        amount.amount_minor,
        c.budget_max,
        c.max_occurrences,
        now_us,
    )
    if tx.mandates.reserve(use):
        return None
    tx.mandates.delete(mandate.audience, mandate.nonce, mandate.digest)
    spent, uses = tx.mandates.get_usage(mandate.mandate_id) or (0, 0)
    if c.max_occurrences is not None and uses >= c.max_occurrences:
        return "mandate_budget_exceeded", (
            f"the mandate allows {c.max_occurrences} uses and {uses} were made; denied"
        )
    budget = "no" if c.budget_max is None else format_minor(c.budget_max, amount.exponent)
    return "mandate_budget_exceeded", (
        f"{amount} does not fit in the mandate's budget of {budget} {amount.currency} "
        f"({format_minor(spent, amount.exponent)} used); denied"
    )


def release(tx: UnitOfWork, mandate: Mandate) -> None:
    """Undo `claim` (same transaction): the decision became a denial after it."""
    tx.mandates.release(mandate.mandate_id, mandate.amount.amount_minor)
    tx.mandates.delete(mandate.audience, mandate.nonce, mandate.digest)
