"""What operators watch: decisions as they are made, and the store's gauges that metrics read
at scrape time."""

from __future__ import annotations

from collections.abc import Callable

from paywarden.ports import StoreGauges
from paywarden.runtime import DecisionObserver, Runtime


def observe_decisions(rt: Runtime, observer: DecisionObserver) -> Callable[[], None]:
    """Tell `observer` of each decision from now on (see `actions.authorize.decide_admitted`);
    returns the function that stops it."""
    rt.decision_observers.append(observer)

    def stop() -> None:
        if observer in rt.decision_observers:
            rt.decision_observers.remove(observer)

    return stop


def store_gauges(rt: Runtime) -> StoreGauges:
    """Approvals pending (and the oldest), holds open, payments by rail and state, breakers,
    webhook delivery failures and alerts raised, in one read transaction."""
    with rt.store.read() as tx:
        return tx.gauges.get_snapshot()
