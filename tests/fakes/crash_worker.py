"""A payment worker that kills itself with SIGKILL at one step boundary of `Warden.pay`.

Run as a script: `python crash_worker.py CONFIG_JSON`. The worker opens its own Warden on the
shared ledger file, with a sandbox rail on the shared state file, and pays `payments` in order.
Before payment number `kill_at` it arms the kill: the next time the chosen boundary is reached
it prints one `{"event": "kill", ...}` line naming the hold, then kills itself, so nothing
after that point runs (no `finally`, no close, no commit). Payments it finishes print
`{"event": "paid", ...}` lines. The kill is injected by wrapping functions in this process
only; paywarden has no test hooks.

Boundaries, in the order `pay` reaches them:

| boundary | killed |
| --- | --- |
| `after_authorize` | after the decision and its hold were committed; no payment row yet |
| `in_begin` | inside the transaction that inserts the payment row, before it commits |
| `after_begin` | after the payment row (`submitted`) was committed, before the rail is called |
| `in_rail` | inside the sandbox's own transaction, before the rail recorded anything |
| `after_call` | after the rail answered, before the answer is applied ("before capture") |
| `in_finish` | inside the transaction that applies the answer, before it commits |
| `after_finish` | after `pay` returned |
| `none` | never |
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from paywarden import FrozenClock, PaymentIntent, Warden
from paywarden.actions import authorize as authorize_actions
from paywarden.actions import payments, rail_calls
from paywarden.adapters.rails import sandbox
from paywarden.adapters.rails.sandbox import SandboxRail

BOUNDARIES = (
    "after_authorize",
    "in_begin",
    "after_begin",
    "in_rail",
    "after_call",
    "in_finish",
    "after_finish",
    "none",
)


class Killer:
    def __init__(self, boundary: str) -> None:
        self.boundary = boundary
        self.armed = False

    def reached(self, boundary: str, hold_id: object) -> None:
        if self.armed and boundary == self.boundary:
            _emit({"event": "kill", "boundary": boundary, "hold_id": str(hold_id)})
            os.kill(os.getpid(), signal.SIGKILL)


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def _install(killer: Killer, warden: Warden) -> None:
    """Wrap the steps of `pay` so that `killer` sees every boundary."""
    authorize, begin, call, finish = (
        authorize_actions.decide_admitted,  # what `pay` runs after its checks: decision + hold
        payments.begin,
        rail_calls.call,
        payments.finish,
    )
    put = sandbox._FilePage.put

    def authorize_then(*args: Any, **kwargs: Any) -> Any:
        decision = authorize(*args, **kwargs)
        killer.reached("after_authorize", decision.hold_id)
        return decision

    def begin_then(tx: Any, decision: Any, *args: Any) -> Any:
        result = begin(tx, decision, *args)
        killer.reached("in_begin", decision.hold_id)
        return result

    def call_around(rail: Any, row: Any, sleep: Callable[[float], None]) -> Any:
        killer.reached("after_begin", row.hold_id)
        receipt = call(rail, row, sleep)
        killer.reached("after_call", row.hold_id)
        return receipt

    def finish_then(tx: Any, row: Any, *args: Any) -> Any:
        updated = finish(tx, row, *args)
        killer.reached("in_finish", row.hold_id)
        return updated

    def put_then(page: Any, key: str, entry: Any) -> None:
        put(page, key, entry)
        killer.reached("in_rail", key.removeprefix("pw_"))

    authorize_actions.decide_admitted = authorize_then
    payments.begin = begin_then
    rail_calls.call = call_around
    payments.finish = finish_then
    sandbox._FilePage.put = put_then


def main(config: dict[str, Any]) -> None:
    killer = Killer(config["boundary"])
    rail = SandboxRail(state_path=config["state"], sleep=lambda seconds: None)
    with Warden.open(
        config["policy"],
        database=config["database"],
        clock=FrozenClock(config["now"]),
        rails={"sandbox": rail},
        sleep=lambda seconds: None,
        busy_timeout_seconds=30,
    ) as warden:
        _install(killer, warden)
        for number, payment in enumerate(config["payments"]):
            killer.armed = number == config["kill_at"]
            outcome = warden.pay(
                PaymentIntent(
                    agent=payment.get("agent", "agent-a"),
                    action="payments.transfer",
                    amount=payment["amount"],
                    currency="USD",
                    recipient="vendor.example.com",
                    idempotency_key=payment["key"],
                    metadata={"sandbox_scenario": payment["scenario"]},
                )
            )
            _emit(
                {
                    "event": "paid",
                    "hold_id": outcome.decision.hold_id,
                    "replayed": outcome.decision.replayed,
                    "state": outcome.state,
                    "payment_id": outcome.payment.payment_id if outcome.payment else None,
                }
            )
            killer.reached("after_finish", outcome.decision.hold_id)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
