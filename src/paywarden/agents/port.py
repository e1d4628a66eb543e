"""The LLM port: whatever turns a goal in words into a payment proposal.

`Planner.propose(goal, feedback)` returns the proposal as JSON text (see `agents.proposal`).
`feedback` is what happened to every earlier attempt of this goal, oldest first: the denial's
reason code and sentence, so the planner can adapt. Two adapters: `OfflinePlanner` (rules over
the goal text and a small catalog, no network) and `adapters.llm.openai_planner.OpenAIPlanner`
(any OpenAI-compatible endpoint, the `llm` extra).

A planner may raise anything: the loop records a failed attempt (`planner_error`), never a
crash. It never sees the policy, the agent's identity or any key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Feedback:
    """One earlier attempt as the planner sees it."""

    attempt: int
    proposal: str  # the proposal as parsed (canonical JSON), or "" when it was not valid
    outcome: str  # paid | denied | require_approval | invalid_proposal | planner_error | ...
    reason_code: str
    reason: str

    def sentence(self) -> str:
        shown = self.proposal or "(no valid proposal)"
        return (
            f"attempt {self.attempt}: {shown} -> {self.outcome} ({self.reason_code}): {self.reason}"
        )


class Planner(Protocol):
    def propose(self, goal: str, feedback: Sequence[Feedback]) -> str:
        """The next proposal for `goal` as JSON text."""
        ...
