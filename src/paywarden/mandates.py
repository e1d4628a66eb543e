"""AP2 payment mandates as paywarden sees them once verified: exact values, pure checks.

`paywarden.ap2` verifies a presented AP2 v0.2 mandate chain (signatures, key binding, `sd_hash`,
time, audience, nonce) and hands the Warden one of two values from this module: a `Mandate`
(what the user's open mandate allows and what the agent's closed mandate pays, every amount in
integer minor units) or a `MandateRefusal` (why the chain was not accepted). The Warden never
sees the token itself, and nothing here does cryptography or I/O.

`mismatch` and `violation` are the pure checks made inside the decision: the closed mandate
must pay exactly what the intent asks (amount, currency, payee), and must keep every constraint
of the open mandate that can be checked without the ledger (amount range, allowed payees,
allowed payment instruments and PISPs, execution window). The budget and the recurrence limit
are claimed in the ledger (`paywarden.ledger.mandate_claims`), atomically.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from paywarden.errors import InvalidInputError
from paywarden.money import Money, format_minor
from paywarden.payee import Payee, parse_payee

# The refusals a verifier reports, as reason codes (paywarden.policy.decision.REASON_CODES).
VERIFY_CODES = frozenset(
    {"mandate_invalid", "mandate_expired", "mandate_wrong_audience"},
)
OPEN_PAYMENT_VCT = "mandate.payment.open.1"
CLOSED_PAYMENT_VCT = "mandate.payment.1"


@dataclass(frozen=True, slots=True)
class Party:
    """A merchant or payee as AP2 names it: `id`, `name`, optional `website`."""

    id: str
    name: str
    website: str | None = None


@dataclass(frozen=True, slots=True)
class Pisp:
    """A payment initiation service provider, matched on all three names (as AP2 does)."""

    legal_name: str
    brand_name: str
    domain_name: str


@dataclass(frozen=True, slots=True)
class Constraints:
    """The open mandate's payment constraints, exact. `None` means the constraint is absent.

    `amount_min`/`amount_max` and `budget_max` are minor units of `range_currency` and
    `budget_currency`; the budget's major-unit number was converted with the currency's exponent
    (never `float * 100`). `max_occurrences` counts uses of the open mandate.
    """

    range_currency: str | None = None
    amount_min: int | None = None
    amount_max: int | None = None
    allowed_payees: tuple[Party, ...] | None = None
    allowed_instruments: tuple[str, ...] | None = None
    allowed_pisps: tuple[Pisp, ...] | None = None
    budget_currency: str | None = None
    budget_max: int | None = None
    frequency: str | None = None
    max_occurrences: int | None = None
    not_before: date | None = None
    not_after: date | None = None
    reference: str | None = None


@dataclass(frozen=True, slots=True)
class Mandate:
    """A verified AP2 payment mandate chain (open mandate, then the agent's closed mandate).

    `mandate_id` names the user's open mandate (the hash of its issuer-signed JWT): every closed
    mandate delegated from it shares its budget and recurrence count. `digest` is the hash of
    the whole presentation and `content_digest` that of the closed mandate's content (RFC 8785
    canonical JSON: the same for every presentation of one closed mandate), both recorded in
    the audit entry. `audience` and `nonce` come from the
    last key-binding hop; `(audience, nonce)` is claimed once in the ledger.
    """

    mandate_id: str
    digest: str
    audience: str
    nonce: str
    transaction_id: str
    payee: Party
    amount: Money
    instrument_id: str
    constraints: Constraints
    more: tuple[Constraints, ...] = ()  # pre-set claims and delegated open mandates
    pisp: Pisp | None = None
    execution_date: date | None = None
    expires_us: int | None = None
    hops: int = 2
    content_digest: str = ""  # SHA-256 of the closed mandate's RFC 8785 canonical JSON

    def summary(self) -> dict[str, object]:
        """What the audit entry records about the mandate (no token, no key)."""
        return {
            "mandate_id": self.mandate_id,
            "digest": self.digest,
            "content_digest": self.content_digest,
            "audience": self.audience,
            "nonce": self.nonce,
            "transaction_id": self.transaction_id,
            "payee_id": self.payee.id,
            "amount_minor": self.amount.amount_minor,
            "currency": self.amount.currency,
        }


@dataclass(frozen=True, slots=True)
class MandateRefusal:
    """A presented mandate that was not accepted: a reason code of `VERIFY_CODES` and why."""

    code: str
    reason: str
    digest: str | None = None

    def __post_init__(self) -> None:
        if self.code not in VERIFY_CODES:
            raise ValueError(f"unknown mandate refusal code `{self.code}`")

    def summary(self) -> dict[str, object]:
        return {"refused": self.code, "digest": self.digest}


Presented = Mandate | MandateRefusal
Problem = tuple[str, str]  # (reason code, reason)


def mismatch(mandate: Mandate, amount: Money, payee: Payee) -> Problem | None:
    """`mandate_mismatch` when the closed mandate does not pay exactly what the intent asks."""
    paid = mandate.amount
    if paid.currency != amount.currency or paid.amount_minor != amount.amount_minor:
        return "mandate_mismatch", (
            f"the mandate pays {paid} but the intent asks for {amount}; denied"
        )
    if paid.exponent != amount.exponent:  # the verifier's currency table is not the policy's
        return "mandate_mismatch", (
            f"the mandate was read with {paid.exponent} decimals for {paid.currency}, the "
            f"policy has {amount.exponent}; denied"
        )
    if payee_identity(mandate.payee.id) != payee.identity:
        return "mandate_mismatch", (
            f"the mandate pays payee `{mandate.payee.id}`, not `{payee.text}`; denied"
        )
    return None


def payee_identity(text: str) -> str | None:
    """The canonical identity (`paywarden.payee`) of an AP2 payee `id`, None when it is no
    payee. Only the `id` binds: `payee.allowed_payees` matches on it too, so a `website` the
    agent wrote beside an allowed `id` can never name who is paid."""
    try:
        return parse_payee(text).identity
    except InvalidInputError:
        return None


def violation(mandate: Mandate, today: date) -> Problem | None:
    """`mandate_constraint` when the closed mandate breaks a constraint of the open one (or
    of a pre-set claim, or of a delegated open mandate further down the chain)."""
    for c in (mandate.constraints, *mandate.more):
        for problem in (
            _unenforced_problem(c, mandate),
            _range_problem(c, mandate.amount),
            _budget_problem(c, mandate.amount),
            _payee_problem(c, mandate.payee),
            _instrument_problem(c, mandate),
            _window_problem(c, today),  # paywarden decides (and pays) today
            _window_problem(c, mandate.execution_date),  # and the agent's own date, if any
            _reference_problem(c),
        ):
            if problem is not None:
                return "mandate_constraint", f"{problem}; denied"
    return None


def _unenforced_problem(c: Constraints, mandate: Mandate) -> str | None:
    """The ledger reserves the root open mandate's budget and uses only: a delegated open
    mandate's own limit would be ignored, so it is refused instead."""
    if c is mandate.constraints or (c.budget_max is None and c.max_occurrences is None):
        return None
    return (
        "a delegated open mandate sets its own `payment.budget` or `max_occurrences`, which "
        "paywarden does not reserve (only the user's open mandate's)"
    )


def _reference_problem(c: Constraints) -> str | None:
    if c.reference is None:
        return None
    return (
        "the mandate is bound to a checkout (`payment.reference`), and paywarden does not "
        "verify checkout mandates"
    )


def _range_problem(c: Constraints, amount: Money) -> str | None:
    if c.range_currency is None:
        return None
    if c.range_currency != amount.currency:
        return (
            f"the mandate's amount range is in {c.range_currency}, the payment in {amount.currency}"
        )
    if c.amount_min is not None and amount.amount_minor < c.amount_min:
        return f"{amount} is below the mandate's minimum of {_text(c.amount_min, amount)}"
    if c.amount_max is not None and amount.amount_minor > c.amount_max:
        return f"{amount} is above the mandate's maximum of {_text(c.amount_max, amount)}"
    return None


def _budget_problem(c: Constraints, amount: Money) -> str | None:
    if c.budget_currency is not None and c.budget_currency != amount.currency:
        return f"the mandate's budget is in {c.budget_currency}, the payment in {amount.currency}"
    return None


def _text(amount_minor: int, like: Money) -> str:
    return f"{format_minor(amount_minor, like.exponent)} {like.currency}"


def _payee_problem(c: Constraints, payee: Party) -> str | None:
    if c.allowed_payees is None:
        return None
    if any(_party_matches(allowed, payee) for allowed in c.allowed_payees):
        return None
    return f"payee `{payee.id}` is not among the mandate's allowed payees"


def _party_matches(allowed: Party, payee: Party) -> bool:
    """AP2's rule: by `id` (the same id, or ids naming the same canonical payee); by `name`
    and `website` only where an id is empty."""
    if allowed.id and payee.id:
        if allowed.id == payee.id:
            return True
        identity = payee_identity(allowed.id)
        return identity is not None and identity == payee_identity(payee.id)
    return bool(allowed.name and allowed.website) and (allowed.name, allowed.website) == (
        payee.name,
        payee.website,
    )


def _instrument_problem(c: Constraints, mandate: Mandate) -> str | None:
    if c.allowed_instruments is not None and mandate.instrument_id not in c.allowed_instruments:
        return f"payment instrument `{mandate.instrument_id}` is not allowed by the mandate"
    if c.allowed_pisps is not None and mandate.pisp not in c.allowed_pisps:
        return "the payment initiation service provider is not allowed by the mandate"
    return None


def _window_problem(c: Constraints, day: date | None) -> str | None:
    if day is None:
        return None
    if c.not_before is not None and day < c.not_before:
        return f"execution date {day} is before the mandate's window ({c.not_before})"
    if c.not_after is not None and day > c.not_after:
        return f"execution date {day} is after the mandate's window ({c.not_after})"
    return None


def cel_facts(mandate: Presented | None, usage: tuple[int, int] | None) -> Mapping[str, object]:
    """The CEL variable `mandate`: `present` always; the rest only when a mandate was verified
    (test them with `has(mandate.budget_max_minor)`). `usage` is (spent minor units, uses) of
    the open mandate before this payment."""
    if not isinstance(mandate, Mandate):
        return {"present": False}
    c = mandate.constraints
    spent, uses = usage if usage else (0, 0)
    facts: dict[str, object] = {
        "present": True,
        "mandate_id": mandate.mandate_id,
        "payee_id": mandate.payee.id,
        "amount_minor": mandate.amount.amount_minor,
        "currency": mandate.amount.currency,
        "instrument_id": mandate.instrument_id,
        "uses": uses,
        "spent_minor": spent,
    }
    optional = {
        "amount_min_minor": c.amount_min,
        "amount_max_minor": c.amount_max,
        "budget_max_minor": c.budget_max,
        "budget_remaining_minor": None if c.budget_max is None else max(c.budget_max - spent, 0),
        "frequency": c.frequency,
        "max_occurrences": c.max_occurrences,
    }
    facts.update({key: value for key, value in optional.items() if value is not None})
    return facts
