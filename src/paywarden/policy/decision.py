"""Decision: the outcome of a payment request, why, and the proof trace behind it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from paywarden import limits

Outcome = Literal["allow", "deny", "require_approval"]
Effect = Literal["deny", "require_approval", "allow"]

# Every reason code, in order of descending precedence, with its one-line meaning. When several
# apply, the decision carries the first. docs/reason-codes.md documents each (a test checks).
REASON_CODES: Mapping[str, str] = {
    "invalid_input": "the request could not be parsed into a payment intent",
    "policy_missing": "no policy is loaded, so everything is denied",
    "policy_invalid": "the policy failed to compile, so everything is denied",
    "store_unavailable": "the store failed, so the request is denied rather than guessed",
    "store_busy": "the store stayed locked past the busy timeout",
    "internal_error": "an unexpected internal fault; paywarden denies rather than guess",
    "halted": "payments are halted by the kill switch",
    "environment_mismatch": "the intent names an environment other than the deployment's",
    "rail_refused": "the rail cannot take this payment (unknown, or no route for this payee)",
    "idempotency_key_reused": "the idempotency key was used before for a different intent",
    "mandate_invalid": "the AP2 mandate presented failed verification (signature, binding, form)",
    "mandate_expired": "a hop of the AP2 mandate is expired, or issued in the future",
    "mandate_wrong_audience": "the AP2 mandate is addressed to another verifier",
    "mandate_required": "the policy requires a verified AP2 mandate for this intent",
    "mandate_mismatch": "the AP2 mandate does not pay what the intent asks (amount or payee)",
    "mandate_constraint": "the AP2 mandate breaks a constraint of the user's open mandate",
    "mandate_replayed": "the AP2 mandate's nonce was used before",
    "mandate_budget_exceeded": "the AP2 mandate's budget or number of uses is used up",
    "phase_required": "the policy requires payments to come from a tracked session",
    "phase_not_allowed": "the agent's session is not in a phase where payments are allowed",
    "rule_error": "a rule failed to evaluate; paywarden fails closed",
    "denied_by_rule": "a deny rule matched",
    "currency_not_convertible": "a budget applies but the intent's currency has no FX rate",
    "budget_exceeded": "the amount does not fit in a budget's remaining room",
    "budget_halt": "the budget would pass its halt gate",
    "rate_limit_exceeded": "too many payments in the velocity window",
    "cooldown_active": "the cooldown since the previous payment has not passed",
    "approval_queue_full": "the agent's waiting approval requests reach the policy's cap",
    "approval_required": "a require_approval rule matched; a human decides (see approval_id)",
    "budget_restricted": "the budget would pass its restrict gate, so approval is required",
    "approved": "an operator approved this exact intent; the approval is now consumed",
    "allowed_by_grant": "an operator's grant covers this intent in place of an approval",
    "allowed": "an allow rule matched and no deny or approval rule did",
    "no_rule_matched": "no allow rule matched; paywarden denies by default",
}


@dataclass(frozen=True, slots=True)
class RuleTrace:
    """One rule as the evaluator saw it."""

    rule_id: str
    effect: Effect
    matched: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class BudgetTrace:
    """A budget's state as the decision saw it (minor units of the budget's currency)."""

    budget_id: str
    currency: str
    limit_minor: int
    spent_minor: int
    held_minor: int
    amount_minor: int
    gate: str

    @property
    def remaining_minor(self) -> int:
        return max(self.limit_minor - self.spent_minor - self.held_minor, 0)

    @property
    def ratio(self) -> float:
        """(spent + held + this amount) / limit, for display only; gates compare exactly."""
        if self.limit_minor == 0:
            return 1.0
        return (self.spent_minor + self.held_minor + self.amount_minor) / self.limit_minor


@dataclass(frozen=True, slots=True)
class AnomalyFacts:
    """The anomaly facts a decision saw (`paywarden.policy.anomaly`): the amount's robust score
    against `history` earlier allowed payments, whether the recipient is new to the agent, and
    the rate spike with the counts behind it (`recent` in the short window, `baseline` in the
    long one, this decision included); `flagged` when they count as an anomaly (`auto_halt`)."""

    amount_score: float
    new_recipient: bool
    rate_spike: bool
    history: int
    recent: int
    baseline: int
    flagged: bool = False

    def to_dict(self) -> dict[str, object]:
        """As JSON values; the score as decimal text to 6 places (the audit log takes no
        floats: a record must hash the same on every platform)."""
        return {
            "amount_score": format(self.amount_score, ".6f"),
            "new_recipient": self.new_recipient,
            "rate_spike": self.rate_spike,
            "history": self.history,
            "recent": self.recent,
            "baseline": self.baseline,
            "flagged": self.flagged,
        }


def _anomaly_facts(data: Mapping[str, Any] | None) -> AnomalyFacts | None:
    if not data:
        return None
    return AnomalyFacts(**{**data, "amount_score": float(data["amount_score"])})


class Trace:
    """The proof trace: every rule considered, the state seen, the policy version and time.

    `rules` lists every rule of the policy with whether it matched. The evaluator hands it over
    as a recipe and the tuple is built on first access, because most decisions are never
    inspected rule by rule on the hot path. Treat a Trace as immutable.
    """

    __slots__ = (
        "_lazy_rules",
        "_rules",
        "anomaly",
        "budgets",
        "evaluated_at",
        "notes",
        "phase",
        "policy_version",
    )

    def __init__(
        self,
        policy_version: str,
        evaluated_at: datetime,
        rules: tuple[RuleTrace, ...] | None = (),
        budgets: tuple[BudgetTrace, ...] = (),
        phase: str | None = None,
        notes: tuple[str, ...] = (),
        *,
        lazy_rules: Callable[[], tuple[RuleTrace, ...]] | None = None,
        anomaly: AnomalyFacts | None = None,
    ) -> None:
        self.anomaly = anomaly  # only when the policy uses anomaly facts
        self.policy_version = policy_version
        self.evaluated_at = evaluated_at
        self._rules = rules if lazy_rules is None else None
        self._lazy_rules = lazy_rules
        self.budgets = budgets
        self.phase = phase
        self.notes = notes

    @property
    def rules(self) -> tuple[RuleTrace, ...]:
        if self._rules is None:
            self._rules = self._lazy_rules() if self._lazy_rules is not None else ()
            self._lazy_rules = None
        return self._rules

    def _key(self) -> tuple[object, ...]:
        return (
            self.policy_version,
            self.evaluated_at,
            self.rules,
            self.budgets,
            self.phase,
            self.notes,
            self.anomaly,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trace):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"Trace(policy_version={self.policy_version!r}, rules={len(self.rules)}, "
            f"budgets={self.budgets!r}, phase={self.phase!r})"
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trace:
        return cls(
            policy_version=str(data["policy_version"]),
            evaluated_at=datetime.fromisoformat(str(data["evaluated_at"])),
            rules=tuple(RuleTrace(**rule) for rule in data["rules"]),
            budgets=tuple(
                BudgetTrace(**{k: v for k, v in budget.items() if k != "remaining_minor"})
                for budget in data["budgets"]
            ),
            phase=data.get("phase"),
            notes=tuple(data.get("notes", ())),
            anomaly=_anomaly_facts(data.get("anomaly")),
        )

    def to_dict(self) -> dict[str, object]:
        """The trace as JSON values. A policy of more than `limits.trace_rules_listed_max`
        rules lists only the rules that matched or failed (at most that many), and counts the
        others (`rules_not_listed`): the policy version and the facts reproduce them, and a
        decision record stays a few KB whatever the size of the policy."""
        rules = self.rules
        listed = rules
        if len(rules) > limits.trace_rules_listed_max:
            listed = tuple(r for r in rules if r.matched or r.error is not None)
        return self._with_rules(rules, listed)

    def to_record(self) -> dict[str, object]:
        """The trace as recorded in the audit log: only the rules that matched or failed (at
        most `limits.trace_rules_listed_max`), in policy order, and the count of the others
        (`rules_not_listed`), which did not match and raised no error. The policy version
        names the rest: `expand_rules` rebuilds the whole list from the policy's text."""
        rules = self.rules
        return self._with_rules(rules, tuple(r for r in rules if r.matched or r.error is not None))

    def _with_rules(
        self, rules: tuple[RuleTrace, ...], listed: tuple[RuleTrace, ...]
    ) -> dict[str, object]:
        data: dict[str, object] = {
            "policy_version": self.policy_version,
            "evaluated_at": self.evaluated_at.isoformat(),
            "rules": [
                {"rule_id": r.rule_id, "effect": r.effect, "matched": r.matched, "error": r.error}
                for r in listed[: limits.trace_rules_listed_max]
            ],
            "budgets": [
                {
                    "budget_id": b.budget_id,
                    "currency": b.currency,
                    "limit_minor": b.limit_minor,
                    "spent_minor": b.spent_minor,
                    "held_minor": b.held_minor,
                    "amount_minor": b.amount_minor,
                    "gate": b.gate,
                    "remaining_minor": b.remaining_minor,
                }
                for b in self.budgets
            ],
            "phase": self.phase,
            "notes": list(self.notes),
        }
        if self.anomaly is not None:
            data["anomaly"] = self.anomaly.to_dict()
        shown = min(len(listed), limits.trace_rules_listed_max)
        if shown != len(rules):
            data["rules_not_listed"] = len(rules) - shown
        return data


def expand_rules(
    trace: Mapping[str, Any], policy_rules: Sequence[tuple[str, str]]
) -> list[dict[str, object]] | None:
    """Every rule of a recorded trace (`Trace.to_record` or `to_dict` output) as JSON values,
    given the `(rule_id, effect)` of each rule of the policy version it cites, in order: the
    listed rules as recorded, every other rule unmatched and without error.

    None when the record cannot be expanded exactly: nothing was left out, the listing was
    cut at `limits.trace_rules_listed_max` (an unlisted rule may have matched), or the rules
    do not fit the policy (another policy, or an edited record).
    """
    listed = trace.get("rules")
    not_listed = trace.get("rules_not_listed")
    if not isinstance(listed, list) or type(not_listed) is not int or not_listed <= 0:
        return None
    if len(listed) >= limits.trace_rules_listed_max:
        return None
    if len(listed) + not_listed != len(policy_rules):
        return None
    expanded: list[dict[str, object]] = []
    position = 0
    for rule_id, effect in policy_rules:
        recorded = listed[position] if position < len(listed) else None
        if isinstance(recorded, dict) and recorded.get("rule_id") == rule_id:
            if recorded.get("effect") != effect:
                return None
            expanded.append(dict(recorded))
            position += 1
        else:
            expanded.append({"rule_id": rule_id, "effect": effect, "matched": False, "error": None})
    return expanded if position == len(listed) else None


@dataclass(frozen=True, slots=True)
class Decision:
    """What paywarden decided about one intent, and why.

    `rule_ids` are the rules that decided it; `trace` holds every rule considered and the
    budget state seen. `hold_id` names the ledger hold of an allowed or pending intent.
    A Decision is a value (frozen): a changed one is a new copy (`dataclasses.replace`).
    """

    outcome: Outcome
    reason_code: str
    reason: str
    rule_ids: tuple[str, ...]
    trace: Trace
    warnings: tuple[str, ...] = ()
    decision_id: str | None = None
    hold_id: str | None = None
    replayed: bool = False
    approval_id: str | None = None

    @property
    def allowed(self) -> bool:
        return self.outcome == "allow"

    @property
    def policy_version(self) -> str:
        return self.trace.policy_version

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        """Rebuild a decision from `to_dict()` output (how stored decisions are replayed)."""
        outcome = data["outcome"]
        if outcome not in ("allow", "deny", "require_approval"):
            raise ValueError(f"unknown outcome `{outcome}`")
        return cls(
            outcome=outcome,
            reason_code=str(data["reason_code"]),
            reason=str(data["reason"]),
            rule_ids=tuple(data["rule_ids"]),
            trace=Trace.from_dict(data["trace"]),
            warnings=tuple(data.get("warnings", ())),
            decision_id=data.get("decision_id"),
            hold_id=data.get("hold_id"),
            replayed=bool(data.get("replayed", False)),
            approval_id=data.get("approval_id"),
        )

    def to_dict(self) -> dict[str, object]:
        return self._as_dict(self.trace.to_dict())

    def to_record(self) -> dict[str, object]:
        """The decision as its audit entry records it: `to_dict` with the trace's compact
        listing (`Trace.to_record`)."""
        return self._as_dict(self.trace.to_record())

    def _as_dict(self, trace: dict[str, object]) -> dict[str, object]:
        return {
            "decision_id": self.decision_id,
            "outcome": self.outcome,
            "reason_code": self.reason_code,
            "reason": self.reason,
            "rule_ids": list(self.rule_ids),
            "warnings": list(self.warnings),
            "hold_id": self.hold_id,
            "approval_id": self.approval_id,
            "replayed": self.replayed,
            "policy_version": self.policy_version,
            "trace": trace,
        }
