"""The store port's observability repositories: alerts raised, and the gauges metrics read.

`AlertRow` is one alert, claimed once: its `dedup_key` says what it is about (an alert rule and a
budget window, a breaker opening, an approval ...), and `AlertRepository.insert_if_absent` is
one INSERT that only the first writer of a key wins, whichever process or host it runs in.
`StoreGauges` is what a metrics scrape reads in one snapshot (docs/observability.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class AlertRow:
    alert_id: str
    dedup_key: str  # unique: the alert rule, and what it fired about, once
    rule_id: str
    kind: str
    ref_id: str  # the decision, budget, rail, scope, approval or audit entry it is about
    text: str  # one line for humans (Slack's `text`)
    body: str  # the details, canonical JSON
    created_us: int


@dataclass(frozen=True, slots=True)
class StateCount:
    """How many rows of one group (a rail and state, an alert kind ...) there are."""

    group: str
    state: str
    count: int


@dataclass(frozen=True, slots=True)
class StoreGauges:
    """What a metrics scrape reads from the store, in one read transaction."""

    approvals_pending: int
    approval_oldest_us: int | None  # when the oldest pending request was made
    holds_open: int
    payments: tuple[StateCount, ...]  # group: rail, state: payment state
    breakers: tuple[StateCount, ...]  # group: rail, state: breaker state, count 1
    webhook_failures: int  # failed delivery attempts, ever (attempts less deliveries)
    webhook_undelivered: int  # events not delivered yet (waiting, retrying or given up)
    alerts: tuple[StateCount, ...]  # group: alert kind, state: "raised"


class AlertRepository(Protocol):
    """Alerts raised, each at most once per `dedup_key`."""

    def insert_if_absent(self, row: AlertRow) -> bool:
        """False, and nothing written, when an alert with this `dedup_key` exists."""
        ...

    def list_recent(self, kind: str | None, limit: int) -> list[AlertRow]:
        """Newest first, ties by id; None filters nothing."""
        ...


class GaugeRepository(Protocol):
    """Counts over the store for metrics, read at scrape time."""

    def get_snapshot(self) -> StoreGauges:
        """Every gauge of `StoreGauges`, from indexed counts."""
        ...
