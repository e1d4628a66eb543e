"""The policy's settings for agent goal runs (`actions.goals`, docs/agents.md).

```yaml
agents:
  max_attempts: 3          # proposals per goal, denied ones included (default 3, at most 20)
  llm_timeout_seconds: 30  # one planner call (default 30)
  run_timeout_seconds: 120 # one whole goal run (default 120)
```

A caller may ask for fewer attempts than the policy allows, never more; the goal text never
changes any of these.
"""

from __future__ import annotations

from dataclasses import dataclass

from paywarden.policy.document import LocMap, Mark
from paywarden.policy.report import CompileReport

ATTEMPTS_MAX = 20
TIMEOUT_SECONDS_MAX = 3600
_KEYS = {"max_attempts": ATTEMPTS_MAX, "llm_timeout_seconds": TIMEOUT_SECONDS_MAX}
_KEYS["run_timeout_seconds"] = TIMEOUT_SECONDS_MAX


@dataclass(frozen=True, slots=True)
class AgentSettings:
    max_attempts: int = 3
    llm_timeout_seconds: int = 30
    run_timeout_seconds: int = 120


def compile_agent_settings(value: object, report: CompileReport, mark: Mark) -> AgentSettings:
    if value is None:
        return AgentSettings()
    if not isinstance(value, LocMap) or set(value) - set(_KEYS):
        allowed = ", ".join(f"`{key}`" for key in sorted(_KEYS))
        report.error(f"`agents` must be a mapping with {allowed}", mark)
        return AgentSettings()
    numbers: dict[str, int] = {}
    for key, most in _KEYS.items():
        if key not in value:
            continue
        number = value[key]
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= most:
            report.error(
                f"`agents.{key}` must be a whole number from 1 to {most}", value.mark_of(key)
            )
            continue
        numbers[key] = number
    return AgentSettings(**numbers)
