"""Prometheus metrics of the gateway, served at `GET /metrics` (docs/rest.md, "Metrics").

The metrics themselves live in `paywarden.metrics` (no FastAPI): the app keeps one
`WardenMetrics` (`app.state.metrics`) and attaches it to its Warden for as long as it runs, so
every decision the Warden makes is counted, whether asked for over REST or over MCP at `/mcp`.
The route only renders the registry, for operator and admin keys.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from paywarden.entrypoints.rest.deps import StaffCaller
from paywarden.entrypoints.rest.problems import problem_responses
from paywarden.errors import NotFoundError
from paywarden.metrics import ACTION_LABELS_MAX, WardenMetrics
from paywarden.warden import Warden

__all__ = [
    "ACTION_LABELS_MAX",
    "GatewayMetrics",
    "install_metrics",
    "metrics_of",
    "router",
    "start_observing",
]

GatewayMetrics = WardenMetrics  # the name the gateway's code and tests knew it by
router = APIRouter(tags=["admin"])


def metrics_of(request: Request) -> WardenMetrics | None:
    """The app's metrics, or None when `metrics_enabled` is off."""
    metrics: WardenMetrics | None = getattr(request.app.state, "metrics", None)
    return metrics


def install_metrics(app: FastAPI, enabled: bool, warden: Warden | None) -> None:
    """The app's metrics (None when off) and the `/metrics` route; a Warden given to the app
    is counted at once (the lifespan attaches the one it opens)."""
    app.state.metrics = (
        WardenMetrics(lambda: getattr(app.state, "warden", None)) if enabled else None
    )
    app.include_router(router)
    if warden is not None:
        attach_metrics(app, warden)


def start_observing(app: FastAPI, warden: Warden) -> Callable[[], None]:
    """For the app's run: count `warden`'s decisions (REST and MCP alike) and sweep for the
    alerts no transaction raises (`routes_alerts.AlertSweeper`); returns what stops both."""
    from paywarden.entrypoints.rest.routes_alerts import AlertSweeper

    attach_metrics(app, warden)
    sweeper = AlertSweeper(lambda: getattr(app.state, "warden", None))

    def stop() -> None:
        sweeper.stop()
        detach_metrics(app)

    return stop


def attach_metrics(app: FastAPI, warden: Warden) -> None:
    """Count `warden`'s decisions in the app's metrics (once; no-op when they are off)."""
    metrics: WardenMetrics | None = getattr(app.state, "metrics", None)
    if metrics is not None and getattr(app.state, "metrics_detach", None) is None:
        app.state.metrics_detach = metrics.attach(warden)


def detach_metrics(app: FastAPI) -> None:
    detach = getattr(app.state, "metrics_detach", None)
    if detach is not None:
        detach()
        app.state.metrics_detach = None


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
