"""Prometheus metrics of a Warden, for the gateway (`GET /metrics`) or any library process.

Decisions are counted where the Warden makes them (`Runtime.decision_observers`): one counter
sample and one latency observation per decision, whether it was asked for over REST, MCP or in
process (an idempotent replay decides nothing and counts nothing). Every label set is bounded:
`outcome` has three values, `reason_code` is a code of the policy in force, and `action` is the
first dot-separated segment of the intent's action (`payments.transfer` -> `payments`), kept
only when it is short plain text and among the first `ACTION_LABELS_MAX` seen; any other is
`other`. Recipients, keys and agent ids are never labels.

Everything else is read from the store at scrape time (`StoreCollector`), never per decision:
budget use, approvals pending and the age of the oldest, holds open, payments by rail and state,
breakers, webhook delivery failures and alerts raised. Each `WardenMetrics` has its registry, so
two apps or Wardens in one process never share counts; several worker processes each count their
own decisions, while the store's gauges are the same from every process.

In a library process: `with serve_metrics(warden, port=9464):` serves the registry on its own
HTTP thread (`prometheus_client.start_http_server`); or `WardenMetrics(lambda: warden)` and its
`attach(warden)` give a registry to mount in an app of your own. Needs the `metrics` extra (no
FastAPI).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from paywarden.errors import PaywardenError
from paywarden.policy.decision import Decision
from paywarden.ports import StoreGauges

if TYPE_CHECKING:
    from paywarden.ledger.status import BudgetStatus

log = logging.getLogger("paywarden.metrics")
# Distinct `action` label values one process keeps before it labels new ones `other`.
ACTION_LABELS_MAX = 32
OTHER_ACTION = "other"
_ACTION_SEGMENT = re.compile(r"[a-z][a-z0-9_-]{0,31}")
# Decision latency buckets, in seconds: a decision takes about a millisecond on SQLite.
DECISION_BUCKETS_SECONDS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
BREAKER_STATES = ("closed", "open", "half_open")
DecisionObserver = Callable[[Decision, str, float], None]


class Observed(Protocol):
    """What metrics read of a Warden (`paywarden.Warden` is one)."""

    def budgets(self) -> list[BudgetStatus]: ...
    def store_gauges(self) -> StoreGauges: ...
    def observe_decisions(self, observer: DecisionObserver) -> Callable[[], None]: ...


WardenSource = Callable[[], "Observed | None"]


class WardenMetrics:
    """The decision counter and latency histogram of one Warden (or app), the store's gauges,
    and their registry. `attach(warden)` starts counting that Warden's decisions."""

    def __init__(self, warden_of: WardenSource) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.decisions = Counter(
            "paywarden_decisions",
            "Decisions made, by outcome, reason code and action (first segment).",
            ("outcome", "reason_code", "action"),
            registry=self.registry,
        )
        self.decision_seconds = Histogram(
            "paywarden_decision_seconds",
            "Time the Warden took to decide (store transaction included), in seconds.",
            buckets=DECISION_BUCKETS_SECONDS,
            registry=self.registry,
        )
        self.registry.register(StoreCollector(warden_of))
        self._actions: dict[str, str] = {}  # action -> label, for the ones seen first
        self._segments: set[str] = set()  # the segments that are labels
        self._lock = threading.Lock()

    def action_label(self, action: str) -> str:
        """The bounded `action` label of an intent's action."""
        label = self._actions.get(action)
        if label is not None:
            return label
        segment = action.split(".", 1)[0]
        with self._lock:
            if _ACTION_SEGMENT.fullmatch(segment) is None:
                label = OTHER_ACTION
            elif segment in self._segments or len(self._segments) < ACTION_LABELS_MAX:
                self._segments.add(segment)
                label = segment
            else:
                label = OTHER_ACTION
            if len(self._actions) < ACTION_LABELS_MAX * 16:  # a bounded memo
                self._actions[action] = label
        return label

    def count(self, decision: Decision, action: str, seconds: float) -> None:
        """Count one decision and observe how long it took (a `DecisionObserver`)."""
        self.decisions.labels(
            decision.outcome, decision.reason_code, self.action_label(action)
        ).inc()
        self.decision_seconds.observe(seconds)

    def attach(self, warden: Observed) -> Callable[[], None]:
        """Count `warden`'s decisions from now on; returns the function that stops it."""
        return warden.observe_decisions(self.count)


class StoreCollector(Collector):
    """Gauges and counters read from the store at each scrape, in two reads."""

    def __init__(self, warden_of: WardenSource) -> None:
        self._warden_of = warden_of

    def describe(self) -> Iterator[Metric]:
        return iter(())  # read only at collect time: nothing touches the store at register

    def collect(self) -> Iterator[Metric]:
        warden = self._warden_of()
        ratio = GaugeMetricFamily(
            "paywarden_budget_use_ratio",
            "Highest (spent + held) / limit among a budget's scope values, current window.",
            labels=("budget_id", "scope"),
        )
        if warden is None:
            yield ratio
            return
        try:
            statuses = warden.budgets()
            gauges = warden.store_gauges()
        except PaywardenError as error:  # the scrape still answers; the log says why
            log.warning("metrics: cannot read the store: %s", error)
            yield ratio
            return
        highest: dict[tuple[str, str], float] = {}
        for status in statuses:
            if status.limit_minor <= 0:
                continue
            use = (status.spent_minor + status.held_minor) / status.limit_minor
            key = (status.budget_id, status.scope)
            highest[key] = max(highest.get(key, 0.0), use)
        for (budget_id, scope), use in sorted(highest.items()):
            ratio.add_metric((budget_id, scope), use)
        yield ratio
        yield from store_families(gauges, time.time_ns() // 1000)


def store_families(gauges: StoreGauges, now_us: int) -> Iterator[Metric]:
    """The store's gauges as metric families (documented in docs/observability.md)."""
    oldest = gauges.approval_oldest_us
    age = 0.0 if oldest is None else max(now_us - oldest, 0) / 1_000_000
    yield _family(
        "paywarden_approvals_pending",
        "Approval requests waiting for operators.",
        [((), gauges.approvals_pending)],
    )
    yield _family(
        "paywarden_approval_oldest_age_seconds",
        "How long the oldest pending approval request has waited, in seconds (0: none).",
        [((), age)],
    )
    yield _family(
        "paywarden_holds_open",
        "Holds not yet captured, voided or expired.",
        [((), gauges.holds_open)],
    )
    yield _family(
        "paywarden_payments",
        "Payments by rail and state.",
        [((row.group, row.state), row.count) for row in gauges.payments],
        ("rail", "state"),
    )
    states = {row.group: row.state for row in gauges.breakers}
    yield _family(
        "paywarden_breaker_state",
        "Each rail's circuit breaker: 1 for its current state, 0 for the others.",
        [
            ((rail, state), 1.0 if states[rail] == state else 0.0)
            for rail in sorted(states)
            for state in BREAKER_STATES
        ],
        ("rail", "state"),
    )
    yield _family(
        "paywarden_webhook_delivery_failures",
        "Webhook delivery attempts that failed (the outbox's attempts less its deliveries).",
        [((), gauges.webhook_failures)],
        counter=True,
    )
    yield _family(
        "paywarden_webhook_events_undelivered",
        "Webhook events not delivered yet: waiting, being retried or given up.",
        [((), gauges.webhook_undelivered)],
    )
    yield _family(
        "paywarden_alerts",
        "Alerts raised (each once), by kind.",
        [((row.group,), row.count) for row in gauges.alerts],
        ("kind",),
        counter=True,
    )


def _family(
    name: str,
    documentation: str,
    samples: list[tuple[tuple[str, ...], float]],
    labels: tuple[str, ...] = (),
    *,
    counter: bool = False,
) -> Metric:
    family: GaugeMetricFamily | CounterMetricFamily
    if counter:
        family = CounterMetricFamily(name, documentation, labels=labels)
    else:
        family = GaugeMetricFamily(name, documentation, labels=labels)
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


class MetricsServer:
    """The HTTP server of `serve_metrics`; `close()` stops serving and counting."""

    def __init__(self, warden: Observed, port: int, addr: str) -> None:
        self.metrics = WardenMetrics(lambda: warden)
        self._detach = self.metrics.attach(warden)
        self._server, self._thread = start_http_server(port, addr, registry=self.metrics.registry)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._detach()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve_metrics(warden: Observed, port: int, addr: str = "127.0.0.1") -> MetricsServer:
    """Serve `warden`'s metrics at `http://addr:port/metrics` from a daemon thread
    (prometheus_client's `start_http_server`), counting its decisions from now on; port 0
    picks a free one (`.port`). Loopback by default: the metrics reveal spend levels."""
    return MetricsServer(warden, port, addr)


__all__ = [
    "ACTION_LABELS_MAX",
    "MetricsServer",
    "StoreCollector",
    "WardenMetrics",
    "serve_metrics",
]
