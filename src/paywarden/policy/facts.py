"""Facts: the inputs of one evaluation (intent, state snapshot, time), with lazy derived values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from paywarden.policy.decision import BudgetTrace

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

    __slots__ = ("_cel", "_local", "intent", "now", "state", "timezone")

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
        self._cel: dict[str, object] | None = None

    def local(self) -> datetime:
        """The evaluation instant in the policy time zone (from a UTC instant: DST-safe)."""
        if self._local is None:
            self._local = self.now.astimezone(self.timezone)
        return self._local

    def cel_variables(self) -> dict[str, object]:
        if self._cel is None:
            self._cel = _cel_variables(self)
        return self._cel


def _cel_variables(facts: Facts) -> dict[str, object]:
    intent = facts.intent
    local = facts.local()
    budgets = {
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
    ratios = [budget.ratio for budget in facts.state.budgets]
    return {
        "agent": intent.agent,
        "action": intent.action,
        "amount_minor": intent.amount_minor,
        "currency": intent.currency,
        "recipient": intent.recipient,
        "environment": intent.environment,
        "category": intent.category,
        "purpose": intent.purpose,
        "recipient_name": intent.recipient_name,
        "rail": intent.rail,
        "session_id": intent.session_id,
        "metadata": dict(intent.metadata),
        "phase": facts.state.phase,
        "local_hour": local.hour,
        "local_minute": local.minute,
        "local_weekday": WEEKDAYS[local.weekday()],
        "budgets": budgets,
        "budget_ratio": max(ratios) if ratios else 0.0,
    }


CEL_VARIABLES = frozenset(
    {
        "agent",
        "action",
        "amount_minor",
        "currency",
        "recipient",
        "environment",
        "category",
        "purpose",
        "recipient_name",
        "rail",
        "session_id",
        "metadata",
        "phase",
        "local_hour",
        "local_minute",
        "local_weekday",
        "budgets",
        "budget_ratio",
    }
)
