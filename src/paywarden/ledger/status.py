"""Budget status for operators: spent, held, remaining and gate per budget and scope."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from paywarden.clock import to_us
from paywarden.ledger.usage import ROLLING_HEAD_US, BudgetClaim, gate_of
from paywarden.policy.compiler import CompiledPolicy
from paywarden.ports import UnitOfWork


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    budget_id: str
    scope: str
    scope_key: str
    window: str
    window_start_us: int
    currency: str
    limit_minor: int
    spent_minor: int
    held_minor: int
    gate: str

    @property
    def remaining_minor(self) -> int:
        return max(self.limit_minor - self.spent_minor - self.held_minor, 0)


def budget_status(tx: UnitOfWork, policy: CompiledPolicy, now: datetime) -> list[BudgetStatus]:
    rows = tx.budgets.list_counters()
    result = []
    for spec in policy.budgets:
        start_us = to_us(spec.window.start(now, policy.timezone))
        rolling = spec.window.kind == "rolling"
        wanted = ROLLING_HEAD_US if rolling else start_us
        for row in rows:
            if row.budget_id != spec.budget_id or row.window_start_us != wanted:
                continue
            spent, held = row.spent_minor, row.held_minor
            if rolling:
                spent, held = tx.budgets.get_rolling_usage(spec.budget_id, row.scope_key, start_us)
            claim = BudgetClaim(spec, row.scope_key, start_us, 0)
            result.append(
                BudgetStatus(
                    budget_id=spec.budget_id,
                    scope=spec.scope,
                    scope_key=row.scope_key,
                    window=str(spec.window),
                    window_start_us=start_us,
                    currency=spec.limit.currency,
                    limit_minor=spec.limit.amount_minor,
                    spent_minor=spent,
                    held_minor=held,
                    gate=gate_of(claim, spent + held),
                )
            )
    return result
