"""The policy's `approvals:` settings: how long an approval lives, when four eyes apply, and
how many requests one agent may keep waiting.

```yaml
approvals:
  ttl: 15m                            # default lifetime of an approval request (and its hold)
  two_person_above: 1000              # above this amount (policy currency) two operators approve
  pending_max_per_agent: 20           # at most this many requests of one agent wait at once
  pending_amount_max_per_agent: 5000  # and at most this much money (policy currency)
```

A rule may override the lifetime with `approval_ttl: 1h`.
"""

from __future__ import annotations

from dataclasses import dataclass

from paywarden import limits
from paywarden.errors import InvalidInputError
from paywarden.money import Money
from paywarden.policy.budgets import parse_window
from paywarden.policy.document import LocMap, Mark
from paywarden.policy.rules import RuleContext, parse_threshold

# One agent's waiting requests: enough for a busy agent, few enough that no agent can bury the
# operators' inbox (each request also pins its amount against budgets while it waits).
PENDING_MAX_PER_AGENT_DEFAULT = 20
# The largest cap a policy may set: beyond this an inbox is unreadable anyway.
PENDING_MAX_PER_AGENT_LIMIT = 10_000

_KEYS = frozenset(
    {"ttl", "two_person_above", "pending_max_per_agent", "pending_amount_max_per_agent"}
)


@dataclass(frozen=True, slots=True)
class ApprovalSettings:
    ttl_seconds: int = limits.approval_ttl_seconds
    two_person_above: Money | None = None
    pending_max_per_agent: int = PENDING_MAX_PER_AGENT_DEFAULT
    pending_amount_max_per_agent: Money | None = None


def duration_seconds(value: object, ctx: RuleContext, mark: Mark, name: str) -> int | None:
    window = parse_window(value)
    if window is None or window.kind != "rolling":
        ctx.error(f"`{name}` must be a duration such as `15m`, `1h` or `2d`", mark)
        return None
    if window.seconds > limits.approval_ttl_seconds_max:
        ctx.error(
            f"`{name}` is longer than the maximum of "
            f"{limits.approval_ttl_seconds_max // 86400} days",
            mark,
        )
        return None
    return window.seconds


def compile_approval_settings(value: object, ctx: RuleContext, mark: Mark) -> ApprovalSettings:
    if value is None:
        return ApprovalSettings()
    if not isinstance(value, LocMap) or set(value) - _KEYS:
        ctx.report.error(
            "`approvals` must be a mapping with `ttl`, `two_person_above`, "
            "`pending_max_per_agent` and/or `pending_amount_max_per_agent`",
            mark,
        )
        return ApprovalSettings()
    ttl = limits.approval_ttl_seconds
    if "ttl" in value:
        ttl = duration_seconds(value["ttl"], ctx, value.mark_of("ttl"), "approvals.ttl") or ttl
    threshold = None
    if "two_person_above" in value:
        threshold = parse_threshold(
            value["two_person_above"], ctx.default_currency, ctx, value.mark_of("two_person_above")
        )
    return ApprovalSettings(
        ttl,
        threshold,
        _pending_count_max(value, ctx),
        _pending_amount_max(value, ctx),
    )


def _pending_count_max(value: LocMap, ctx: RuleContext) -> int:
    name = "pending_max_per_agent"
    if name not in value:
        return PENDING_MAX_PER_AGENT_DEFAULT
    count = value[name]
    if type(count) is not int or not 1 <= count <= PENDING_MAX_PER_AGENT_LIMIT:
        ctx.error(
            f"`approvals.{name}` must be an integer from 1 to {PENDING_MAX_PER_AGENT_LIMIT}",
            value.mark_of(name),
        )
        return PENDING_MAX_PER_AGENT_DEFAULT
    return count


def _pending_amount_max(value: LocMap, ctx: RuleContext) -> Money | None:
    name = "pending_amount_max_per_agent"
    if name not in value:
        return None
    raw, mark = value[name], value.mark_of(name)
    try:
        if isinstance(raw, bool):
            raise InvalidInputError("must be an amount such as `5000`")
        amount = Money.parse(raw, ctx.default_currency, currencies=ctx.currencies)
    except InvalidInputError as error:
        ctx.error(f"`approvals.{name}`: {error}", mark)
        return None
    return amount
