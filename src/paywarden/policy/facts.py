"""Facts: the inputs of one evaluation (intent, state snapshot, time), with lazy derived values."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from paywarden.policy.decision import AnomalyFacts, BudgetTrace

if TYPE_CHECKING:
    from paywarden.intent import PaymentIntent

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """Server-side state the policy may read: session phase and the budgets that apply.

    It comes from the store and the deployment, never from fields the agent sends.
    """

    phase: str | None = None
    budgets: tuple[BudgetTrace, ...] = ()
    # Read from the agent's stored history when the policy uses anomaly facts, else None.
    anomaly: AnomalyFacts | None = None
    # The verified AP2 mandate's facts (`paywarden.mandates.cel_facts`), else None.
    mandate: Mapping[str, object] | None = None

    def __post_init__(self) -> None:
        # Policies name phases in any case and the compiler upper-cases them; the fact must
        # match, or `phase: explore` would slip past a deny rule on EXPLORE.
        if self.phase is not None:
            object.__setattr__(self, "phase", self.phase.upper())


EMPTY_STATE = StateSnapshot()


class RuleEvaluationError(Exception):
    """A rule could not be evaluated on these facts; the decision fails closed."""


class Facts:
    """One evaluation's inputs. Local time and the CEL variables are computed at most once."""

    __slots__ = ("_local", "intent", "now", "state", "timezone")

    def __init__(
        self, intent: PaymentIntent, state: StateSnapshot, now: datetime, timezone: ZoneInfo
    ) -> None:
        if now.tzinfo is None:
            raise ValueError("now must be an aware datetime")
        self.intent = intent
        self.state = state
        self.now = now
        self.timezone = timezone
        self._local: datetime | None = None

    def local(self) -> datetime:
        """The evaluation instant in the policy time zone (from a UTC instant: DST-safe)."""
        if self._local is None:
            self._local = self.now.astimezone(self.timezone)
        return self._local

    def cel_variables(self, names: tuple[str, ...] | None = None) -> dict[str, object]:
        """The CEL variables named (all of them by default), read from these facts."""
        return {name: CEL_GETTERS[name](self) for name in (names or tuple(CEL_GETTERS))}


def _budgets(facts: Facts) -> dict[str, object]:
    return {
        budget.budget_id: {
            "currency": budget.currency,
            "limit_minor": budget.limit_minor,
            "spent_minor": budget.spent_minor,
            "held_minor": budget.held_minor,
            "remaining_minor": budget.remaining_minor,
            "ratio": budget.ratio,
        }
        for budget in facts.state.budgets
    }


def _budget_ratio(facts: Facts) -> float:
    ratios = [budget.ratio for budget in facts.state.budgets]
    return max(ratios) if ratios else 0.0


def _metadata_text(facts: Facts, key: str) -> str | None:
    value = facts.intent.metadata.get(key)
    return value if isinstance(value, str) else None


# Outside a decision that computed them (a policy test case, `explain`, a backtest, the shadow
# policy), the anomaly facts read as nothing unusual.
NO_ANOMALY = AnomalyFacts(0.0, False, False, 0, 0, 0)


def _anomaly(facts: Facts) -> AnomalyFacts:
    return facts.state.anomaly or NO_ANOMALY


def _anomaly_map(facts: Facts) -> dict[str, object]:
    found = _anomaly(facts)
    return {
        "amount_score": found.amount_score,
        "new_recipient": found.new_recipient,
        "rate_spike": found.rate_spike,
    }


# The members of the CEL variable `anomaly`, read one by one by compiled expressions.
ANOMALY_GETTERS: Mapping[str, Callable[[Facts], object]] = {
    "anomaly.amount_score": lambda f: _anomaly(f).amount_score,
    "anomaly.new_recipient": lambda f: _anomaly(f).new_recipient,
    "anomaly.rate_spike": lambda f: _anomaly(f).rate_spike,
}

# How each CEL variable is read from the facts. A compiled expression reads only the variables
# it names, so an expression about `amount_minor` never pays for time zones or budgets.
CEL_GETTERS: Mapping[str, Callable[[Facts], object]] = {
    "agent": lambda f: f.intent.agent,
    "action": lambda f: f.intent.action,
    "amount_minor": lambda f: f.intent.amount_minor,
    "currency": lambda f: f.intent.currency,
    "recipient": lambda f: f.intent.recipient,
    "payee_kind": lambda f: f.intent.payee.kind,
    "payee_identity": lambda f: f.intent.payee.identity,
    "payee_host": lambda f: f.intent.payee.host,
    "environment": lambda f: f.intent.environment,
    "category": lambda f: f.intent.category,
    "purpose": lambda f: f.intent.purpose,
    "recipient_name": lambda f: f.intent.recipient_name,
    "rail": lambda f: f.intent.rail,
    "session_id": lambda f: f.intent.session_id,
    "metadata": lambda f: dict(f.intent.metadata),
    "phase": lambda f: f.state.phase,
    "local_hour": lambda f: f.local().hour,
    "local_minute": lambda f: f.local().minute,
    "local_weekday": lambda f: WEEKDAYS[f.local().weekday()],
    "budgets": _budgets,
    "budget_ratio": _budget_ratio,
    "anomaly": _anomaly_map,
    # x402 payments (paywarden.x402 sets them in the intent's metadata); null otherwise.
    "x402_pay_to": lambda f: _metadata_text(f, "x402_pay_to"),
    "x402_network": lambda f: _metadata_text(f, "x402_network"),
    "x402_scheme": lambda f: _metadata_text(f, "x402_scheme"),
    "x402_resource": lambda f: _metadata_text(f, "x402_resource"),
    # The AP2 mandate presented with the intent (docs/ap2.md): `mandate.present` and more.
    "mandate": lambda f: dict(f.state.mandate or {"present": False}),
}
CEL_VARIABLES = frozenset(CEL_GETTERS)
