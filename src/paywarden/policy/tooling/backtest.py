"""`policy backtest`: replay the recorded decisions of a ledger under a new policy.

The log is read as it was written (`decision` entries, and the entries that changed the state a
decision reads: holds captured, voided or expired, session phases, halts). Each recorded
decision is decided again, at its original time, by a `Replayer`: the real engine on a
simulated ledger (the CLI passes an in-memory Warden on a frozen clock). This module never
decides anything itself; it reads the log, says which entries cannot be replayed, maps the
recorded holds to the replayed ones, and counts the flips by count and by money.

An entry cannot be replayed when a field the new policy reads was redacted before it was
recorded (the `redacted` paths of its body), when the new policy does not know its currency,
or when it was refused before any policy ran (`rail_refused`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from paywarden.audit.chain import AuditEntry
from paywarden.clock import to_us
from paywarden.policy.compiler import CompiledPolicy
from paywarden.policy.decision import Decision
from paywarden.policy.tooling.shapes import rule_shapes

STATE_KINDS = frozenset(
    {
        "hold.captured",
        "hold.voided",
        "hold.expired",
        "session.started",
        "session.phase",
        "halt.set",
        "halt.cleared",
    }
)
# Decided before the policy ran: the same refusal would come whatever the policy says.
NOT_POLICY_CODES = frozenset({"rail_refused"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Recorded:
    """One recorded decision: the intent as admitted (`intent` is the body's summary)."""

    seq: int
    at: datetime
    decision_id: str
    intent: Mapping[str, object]
    outcome: str
    reason_code: str
    rule_ids: tuple[str, ...]
    hold_id: str | None
    redacted: tuple[str, ...]

    @property
    def agent(self) -> str:
        return str(self.intent.get("agent"))

    @property
    def amount_minor(self) -> int:
        value = self.intent.get("amount_minor")
        return value if isinstance(value, int) else 0

    @property
    def currency(self) -> str:
        return str(self.intent.get("currency"))


@dataclass(frozen=True, slots=True)
class StateStep:
    """An entry that changed what later decisions read (a hold settled, a phase, a halt)."""

    seq: int
    at: datetime
    kind: str
    body: Mapping[str, object]


Event = Recorded | StateStep


class Replayer(Protocol):
    def decide(self, recorded: Recorded) -> Decision:
        """Decide the recorded intent again at `recorded.at` (raise ValueError when it cannot
        be built under the new policy)."""

    def apply(self, step: StateStep, hold_id: str | None) -> bool:
        """Apply one state change at `step.at`; `hold_id` is the replayed hold of a recorded
        hold entry (None when the replay held nothing for it). False when the simulated ledger
        refused it (a hold that had already expired there)."""


def read_log(
    entries: Iterable[AuditEntry], since: datetime | None = None, until: datetime | None = None
) -> list[Event]:
    """The decisions and state changes of the log in order, from `since` (inclusive) to
    `until` (exclusive)."""
    since_us = None if since is None else to_us(since)
    until_us = None if until is None else to_us(until)
    events: list[Event] = []
    for entry in entries:
        if entry.kind != "decision" and entry.kind not in STATE_KINDS:
            continue
        if since_us is not None and entry.created_us < since_us:
            continue
        if until_us is not None and entry.created_us >= until_us:
            continue
        at = _EPOCH + timedelta(microseconds=entry.created_us)
        body = json.loads(entry.body)
        if entry.kind == "decision":
            events.append(_recorded(entry.seq, at, entry.ref_id, body))
        else:
            events.append(StateStep(entry.seq, at, entry.kind, body))
    events.sort(key=lambda event: event.seq)
    return events


def _recorded(seq: int, at: datetime, decision_id: str, body: Mapping[str, object]) -> Recorded:
    decision = body.get("decision")
    decision = decision if isinstance(decision, Mapping) else {}
    intent = body.get("intent")
    redacted = body.get("redacted")
    hold_id = decision.get("hold_id")
    return Recorded(
        seq=seq,
        at=at,
        decision_id=decision_id,
        intent=intent if isinstance(intent, Mapping) else {},
        outcome=str(decision.get("outcome")),
        reason_code=str(decision.get("reason_code")),
        rule_ids=tuple(str(rule) for rule in _list(decision.get("rule_ids"))),
        hold_id=hold_id if isinstance(hold_id, str) else None,
        redacted=tuple(str(path) for path in _list(redacted)),
    )


def fields_read(text: str, policy: CompiledPolicy) -> frozenset[str]:
    """The intent fields the policy's rules read: each list condition's field, and every
    variable a CEL expression names (over-counted, never under-counted)."""
    read: set[str] = set()
    for shape in rule_shapes(text, policy):
        read.update(condition.field for condition in shape.lists)
        if shape.cel is not None:
            read.update(_IDENTIFIER.findall(shape.cel[0]))
    return frozenset(read)


def not_replayable(recorded: Recorded, read: frozenset[str], policy: CompiledPolicy) -> str | None:
    """Why a recorded decision cannot be replayed under `policy`, or None."""
    if recorded.reason_code in NOT_POLICY_CODES:
        return f"refused before any policy ran ({recorded.reason_code})"
    hidden = sorted({_intent_field(path) for path in recorded.redacted} & read - {""})
    if hidden:
        return f"the new policy reads {', '.join(hidden)}, redacted in the record"
    if recorded.currency not in policy.currencies:
        return f"the new policy does not know the currency {recorded.currency}"
    return None


def _intent_field(path: str) -> str:
    """`$.intent.metadata.order` -> `metadata`; a path outside the intent -> ``."""
    parts = path.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["$", "intent"] else ""


@dataclass(frozen=True, slots=True)
class Replayed:
    recorded: Recorded
    new: Decision | None  # None when not replayable
    skipped: str | None = None

    @property
    def flipped(self) -> bool:
        return self.new is not None and self.new.outcome != self.recorded.outcome

    @property
    def kind(self) -> str:
        new = self.new.outcome if self.new is not None else "?"
        return f"{self.recorded.outcome} -> {new}"

    def to_dict(self) -> dict[str, object]:
        recorded, new = self.recorded, self.new
        return {
            "seq": recorded.seq,
            "at": recorded.at.isoformat(),
            "decision_id": recorded.decision_id,
            "agent": recorded.agent,
            "amount_minor": recorded.amount_minor,
            "currency": recorded.currency,
            "kind": self.kind,
            "old": {
                "outcome": recorded.outcome,
                "reason_code": recorded.reason_code,
                "rule_ids": list(recorded.rule_ids),
            },
            "new": None
            if new is None
            else {
                "outcome": new.outcome,
                "reason_code": new.reason_code,
                "rule_ids": list(new.rule_ids),
            },
            "not_replayable": self.skipped,
        }


def replay(
    events: Iterable[Event], policy: CompiledPolicy, text: str, replayer: Replayer
) -> BacktestReport:
    """Replay every event in order; the report of what flipped."""
    read = fields_read(text, policy)
    report = BacktestReport(policy_version=policy.version)
    holds: dict[str, str | None] = {}  # recorded hold id -> replayed hold id
    for event in events:
        if isinstance(event, StateStep):
            recorded_hold = event.body.get("hold_id")
            replayed_hold = holds.get(recorded_hold) if isinstance(recorded_hold, str) else None
            if not replayer.apply(event, replayed_hold):
                report.state_refused += 1
            continue
        skipped = not_replayable(event, read, policy)
        if skipped is None:
            try:
                new = replayer.decide(event)
            except ValueError as error:
                skipped = f"the intent is not valid under the new policy: {error}"
        if skipped is not None:
            report.add(Replayed(event, None, skipped))
            continue
        if event.hold_id is not None:
            holds[event.hold_id] = new.hold_id
        report.add(Replayed(event, new))
    return report


@dataclass(slots=True)
class BacktestReport:
    policy_version: str
    replayed: int = 0
    flips: list[Replayed] = field(default_factory=list)
    skipped: list[Replayed] = field(default_factory=list)
    state_refused: int = 0  # state changes the simulated ledger could not apply

    def add(self, result: Replayed) -> None:
        if result.new is None:
            self.skipped.append(result)
            return
        self.replayed += 1
        if result.flipped:
            self.flips.append(result)

    @property
    def first_divergence(self) -> Replayed | None:
        return self.flips[0] if self.flips else None

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(flip.kind for flip in self.flips).items()))

    def money(self) -> dict[str, dict[str, int]]:
        """Per flip kind, the amounts that flipped in minor units, per currency."""
        totals: dict[str, Counter[str]] = {}
        for flip in self.flips:
            totals.setdefault(flip.kind, Counter())[flip.recorded.currency] += (
                flip.recorded.amount_minor
            )
        return {kind: dict(sorted(by.items())) for kind, by in sorted(totals.items())}

    def by_agent(self) -> dict[str, dict[str, int]]:
        return _grouped(self.flips, lambda flip: flip.recorded.agent)

    def by_reason(self) -> dict[str, dict[str, int]]:
        """Per reason code of the new decision (`no_rule_matched`, `denied_by_rule`, ...)."""
        return _grouped(self.flips, lambda flip: flip.new.reason_code if flip.new else "")

    def to_dict(self) -> dict[str, object]:
        first = self.first_divergence
        return {
            "policy_version": self.policy_version,
            "replayed": self.replayed,
            "not_replayable": len(self.skipped),
            "state_refused": self.state_refused,
            "flips": len(self.flips),
            "counts": self.counts(),
            "money_minor": self.money(),
            "by_agent": self.by_agent(),
            "by_reason": self.by_reason(),
            "first_divergence": first.to_dict() if first else None,
            "flipped": [flip.to_dict() for flip in self.flips],
            "skipped": [skip.to_dict() for skip in self.skipped],
        }


def _grouped(flips: list[Replayed], key: Callable[[Replayed], str]) -> dict[str, dict[str, int]]:
    groups: dict[str, Counter[str]] = {}
    for flip in flips:
        groups.setdefault(key(flip), Counter())[flip.kind] += 1
    return {name: dict(sorted(counts.items())) for name, counts in sorted(groups.items())}


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []
