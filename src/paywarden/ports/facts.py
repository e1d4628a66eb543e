"""The store port's decision facts (issue 17): analytics over a time range, and one agent's
history for the anomaly facts, both read from `decision_facts` (one slim row per decision,
written by `DecisionRepository.insert` in the decision's own transaction).

Ranges are half-open, `[since_us, until_us)`, in microseconds; `agent` None means every agent.
Money is summed per currency only (each row names its currency), in minor units.
"""

from __future__ import annotations

from typing import Literal, Protocol

from paywarden.ports.rows import AgentActivity, DenialRow, SpendRow, TurnaroundRow

SpendGroup = Literal["agent", "currency", "recipient", "category", "action", "bucket"]


class FactRepository(Protocol):
    """Aggregates and per-agent history of decision facts."""

    def list_spend(
        self,
        group: SpendGroup,
        since_us: int,
        until_us: int,
        agent: str | None,
        bucket_us: int,
        top: int | None,
    ) -> list[SpendRow]:
        """Decisions in the range per group and currency (`bucket`: per `bucket_us` interval
        from the epoch); with `top`, only the `top` groups of each currency with the most
        allowed spend. Sorted by currency, then most allowed spend, then key."""
        ...

    def list_denials(self, since_us: int, until_us: int, agent: str | None) -> list[DenialRow]:
        """Denied decisions in the range per reason code, most first, then by code."""
        ...

    def get_turnaround(self, since_us: int, until_us: int, agent: str | None) -> TurnaroundRow:
        """Approval requests created in the range: counts and how long decided ones waited."""
        ...

    def list_amounts(self, agent: str, currency: str, limit: int) -> list[int]:
        """The amounts of the agent's last `limit` allowed decisions in `currency`, newest
        first."""
        ...

    def get_recipient_paid(self, agent: str, recipient: str) -> bool:
        """Whether the agent was ever allowed to pay this canonical recipient."""
        ...

    def get_anomaly_count(self, agent: str, since_us: int) -> int:
        """The agent's decisions since `since_us` that the anomaly facts flagged."""
        ...

    def get_activity(self, agent: str, recent_us: int, baseline_us: int) -> AgentActivity:
        """The agent's decisions since `recent_us` and since `baseline_us`."""
        ...
