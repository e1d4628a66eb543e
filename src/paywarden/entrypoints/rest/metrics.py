"""Prometheus metrics of the gateway, served at `GET /metrics` (docs/rest.md, "Metrics").

Decisions are counted where the REST routes decide (`POST /v1/authorizations`,
`POST /v1/payments`): one counter sample and one latency observation per decision the Warden
made (an idempotent replay decides nothing and counts nothing). Every label set is bounded:
`outcome` has three values, `reason_code` is a code of the policy in force, and `action` is the
first dot-separated segment of the intent's action (`payments.transfer` -> `payments`), kept only
when it is short plain text and among the first `ACTION_LABELS_MAX` seen; any other is `other`.
Recipients, keys and agent ids are never labels.

Budget use is read at scrape time (`StoreCollector`), not per decision: one read of the budget
status per scrape. Each registry belongs to one app, so two apps in one process never share
counts; with several worker processes each process counts its own decisions.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from paywarden.actions.payments import PaymentOutcome
from paywarden.entrypoints.rest.deps import StaffCaller
from paywarden.entrypoints.rest.problems import problem_responses
from paywarden.errors import NotFoundError, PaywardenError
from paywarden.policy.decision import Decision
from paywarden.warden import Warden

log = logging.getLogger("paywarden.rest.metrics")
router = APIRouter(tags=["admin"])
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


class GatewayMetrics:
    """The decision counter and latency histogram of one app, and its registry."""

    def __init__(self, warden_of: Callable[[], Warden | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.decisions = Counter(
            "paywarden_decisions",
            "Decisions made by the gateway, by outcome, reason code and action (first segment).",
            ("outcome", "reason_code", "action"),
            registry=self.registry,
        )
        self.decision_seconds = Histogram(
            "paywarden_decision_seconds",
            "Time the Warden took to decide (and, for POST /v1/payments, to pay), in seconds.",
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
        """Count one decision and observe how long it took."""
        self.decisions.labels(
            decision.outcome, decision.reason_code, self.action_label(action)
        ).inc()
        self.decision_seconds.observe(seconds)


def timed(metrics: GatewayMetrics | None, action: str, run: Callable[[], Decision]) -> Decision:
    """`run()`, counted in `metrics` when there are metrics."""
    if metrics is None:
        return run()
    started = time.perf_counter()
    decision = run()
    metrics.count(decision, action, time.perf_counter() - started)
    return decision


def timed_pay(
    metrics: GatewayMetrics | None, action: str, run: Callable[[], PaymentOutcome]
) -> PaymentOutcome:
    """`run()` (a payment), its decision counted in `metrics` when there are metrics."""
    if metrics is None:
        return run()
    started = time.perf_counter()
    outcome = run()
    metrics.count(outcome.decision, action, time.perf_counter() - started)
    return outcome


def metrics_of(request: Request) -> GatewayMetrics | None:
    """The app's metrics, or None when `metrics_enabled` is off."""
    metrics: GatewayMetrics | None = getattr(request.app.state, "metrics", None)
    return metrics


class StoreCollector(Collector):
    """Gauges read from the store at each scrape: the use of each budget."""

    def __init__(self, warden_of: Callable[[], Warden | None]) -> None:
        self._warden_of = warden_of

    def describe(self) -> Iterator[Metric]:
        return iter(())  # read only at collect time: nothing touches the store at register

    def collect(self) -> Iterator[Metric]:
        ratio = GaugeMetricFamily(
            "paywarden_budget_use_ratio",
            "Highest (spent + held) / limit among a budget's scope values, current window.",
            labels=("budget_id", "scope"),
        )
        warden = self._warden_of()
        if warden is None:
            yield ratio
            return
        try:
            statuses = warden.budgets()
        except PaywardenError as error:  # the scrape still answers; the log says why
            log.warning("metrics: cannot read budgets: %s", error)
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


@router.get(
    "/metrics",
    summary="Prometheus metrics (operator or admin key)",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "The metrics"},
        **problem_responses(401, 403, 404, 422, 503),
    },
)
def metrics_endpoint(request: Request, principal: StaffCaller) -> Response:
    """The gateway's metrics in Prometheus text format. They reveal spend levels, so they need
    an operator or admin key; 404 when `metrics_enabled` is off."""
    metrics = metrics_of(request)
    if metrics is None:
        raise NotFoundError("metrics are turned off (setting `metrics_enabled`)")
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
