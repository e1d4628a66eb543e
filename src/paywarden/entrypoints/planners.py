"""Which planner an entry point uses for agent goals (`paywarden agent run`, `POST
/v1/agent/goals`): an OpenAI-compatible endpoint when `PAYWARDEN_LLM_MODEL` is set (the `llm`
extra; `PAYWARDEN_LLM_BASE_URL`, `PAYWARDEN_LLM_API_KEY`), else the offline planner."""

from __future__ import annotations

import os
from collections.abc import Mapping

from paywarden.agents.offline import OfflinePlanner
from paywarden.agents.port import Planner


def planner_from_env(
    environ: Mapping[str, str] | None = None, *, timeout_seconds: float = 30.0
) -> Planner:
    env = os.environ if environ is None else environ
    if not env.get("PAYWARDEN_LLM_MODEL", "").strip():
        return OfflinePlanner()
    from paywarden.adapters.llm.openai_planner import OpenAIPlanner

    return OpenAIPlanner.from_env(env, timeout_seconds=timeout_seconds)
