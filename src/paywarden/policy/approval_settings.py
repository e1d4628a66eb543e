"""The policy's `approvals:` settings: how long an approval lives and when four eyes apply.

```yaml
approvals:
  ttl: 15m                 # default lifetime of an approval request (and of its hold)
  two_person_above: 1000   # above this amount (policy currency) two distinct operators approve
```

A rule may override the lifetime with `approval_ttl: 1h`.
"""

from __future__ import annotations

from dataclasses import dataclass

from paywarden import limits
from paywarden.money import Money
from paywarden.policy.budgets import parse_window
from paywarden.policy.document import LocMap, Mark
from paywarden.policy.rules import RuleContext, parse_threshold


@dataclass(frozen=True, slots=True)
class ApprovalSettings:
    ttl_seconds: int = limits.approval_ttl_seconds
    two_person_above: Money | None = None


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
    if not isinstance(value, LocMap) or set(value) - {"ttl", "two_person_above"}:
        ctx.report.error("`approvals` must be a mapping with `ttl` and/or `two_person_above`", mark)
        return ApprovalSettings()
    ttl = limits.approval_ttl_seconds
    if "ttl" in value:
        ttl = duration_seconds(value["ttl"], ctx, value.mark_of("ttl"), "approvals.ttl") or ttl
    threshold = None
    if "two_person_above" in value:
        threshold = parse_threshold(
            value["two_person_above"], ctx.default_currency, ctx, value.mark_of("two_person_above")
        )
    return ApprovalSettings(ttl, threshold)
