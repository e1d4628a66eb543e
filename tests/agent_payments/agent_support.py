"""What the agent tests share: the goal policy and a scripted planner."""

from __future__ import annotations

import json
from collections.abc import Sequence

from paywarden import Warden
from paywarden.agents.port import Feedback
from support.agent_goals import GOAL_POLICY

__all__ = ["GOAL_POLICY", "ScriptedPlanner", "decision_keys"]


def decision_keys(warden: Warden) -> list[str | None]:
    """The idempotency key of each decision recorded, oldest first (from the audit log)."""
    entries = warden.audit_entries(limit=1000)
    bodies = [json.loads(e.body) for e in entries if e.kind == "decision"]
    return [body["intent"]["idempotency_key"] for body in bodies]


class ScriptedPlanner:
    """Answers each call with the next scripted text (or raises it when it is an exception),
    and keeps what it was told."""

    def __init__(self, *answers: str | BaseException) -> None:
        self.answers = list(answers)
        self.seen: list[tuple[str, tuple[Feedback, ...]]] = []

    def propose(self, goal: str, feedback: Sequence[Feedback]) -> str:
        self.seen.append((goal, tuple(feedback)))
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer
