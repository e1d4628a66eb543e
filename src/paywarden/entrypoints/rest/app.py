"""The gateway's FastAPI application: `create_app(settings)`.

The app opens one Warden for its process (or uses the one it is given), reconciles payments
left open by a previous run once at start, watches the policy file, and serves the routes under
`/v1` plus `/healthz` and `/readyz`. Every error is RFC 9457 problem+json (see problems.py).
Before any route, a request must frame its body one way only, find the store's queue short
enough if it writes, and deliver a body of bounded size in time (http_guard.py); paths are
never redirected (a redirect would be built from the Host header).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from starlette.types import Receive, Scope, Send

from paywarden import __version__, limits
from paywarden.audit.service import AuditOptions
from paywarden.entrypoints import console
from paywarden.entrypoints.mcp.http import McpHttpApp
from paywarden.entrypoints.rest import problems
from paywarden.entrypoints.rest.deps import reject_unknown_query
from paywarden.entrypoints.rest.http_guard import HttpGuard
from paywarden.entrypoints.rest.metrics import install_metrics, start_observing
from paywarden.entrypoints.rest.overload import OverloadGate
from paywarden.entrypoints.rest.policy_watch import PolicyWatcher
from paywarden.entrypoints.rest.request_ids import RequestIds
from paywarden.entrypoints.rest.routes_admin import health_router
from paywarden.entrypoints.rest.routes_admin import router as admin_router
from paywarden.entrypoints.rest.routes_alerts import router as alerts_router
from paywarden.entrypoints.rest.routes_analytics import router as analytics_router
from paywarden.entrypoints.rest.routes_disputes import router as disputes_router
from paywarden.entrypoints.rest.routes_goals import join_goal_runs
from paywarden.entrypoints.rest.routes_goals import router as goals_router
from paywarden.entrypoints.rest.routes_holds import router as holds_router
from paywarden.entrypoints.rest.routes_operations import router as operations_router
from paywarden.entrypoints.rest.routes_oversight import router as oversight_router
from paywarden.entrypoints.rest.routes_payments import router as payments_router
from paywarden.entrypoints.rest.routes_scopes import router as scopes_router
from paywarden.entrypoints.rest.routes_staff import router as staff_router
from paywarden.entrypoints.rest.settings import Settings, load_settings
from paywarden.errors import PaywardenError
from paywarden.warden import Warden

log = logging.getLogger("paywarden.rest")
# The policy upload's JSON body: the policy file limit, each byte escaped (`\u0000`), plus room.
POLICY_BODY_BYTES_MAX = limits.policy_file_bytes_max * 6 + 4096
DESCRIPTION = """The payment firewall for AI agents, over HTTP.

Authenticate with `Authorization: Bearer <key>` (create keys with `paywarden keys create`).
An agent key acts as its agent; an operator key decides approvals as its operator; an admin key
manages keys and policy. Errors are RFC 9457 `application/problem+json` with a `code`.
"""


def open_warden(settings: Settings) -> Warden:
    return Warden.open(
        Path(settings.policy) if settings.policy else None,
        database=settings.database,
        environment=settings.environment,
        hold_ttl_seconds=settings.hold_ttl_seconds,
        busy_timeout_seconds=settings.busy_timeout_seconds,
        audit=AuditOptions(
            signing_key=Path(settings.audit_signing_key) if settings.audit_signing_key else None,
            checkpoint_dir=(
                Path(settings.audit_checkpoint_dir) if settings.audit_checkpoint_dir else None
            ),
            checkpoint_every=settings.audit_checkpoint_every,
        ),
    )


def create_app(settings: Settings | None = None, *, warden: Warden | None = None) -> FastAPI:
    """The gateway app. With `warden`, the app uses it and leaves closing it to the caller;
    otherwise it opens one from `settings` at startup and closes it at shutdown."""
    settings = settings or Settings()
    owned = warden is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        current = open_warden(settings) if owned else warden
        assert current is not None
        watcher = PolicyWatcher(current, settings.policy, settings.policy_poll_seconds)
        app.state.warden, app.state.policy_watcher = current, watcher
        stop_observing = start_observing(app, current)  # metrics and the alert sweep
        try:
            _startup(current, settings)
            watcher.start()
            # MCP over streamable HTTP at /mcp, with the same API keys (agent keys only). The
            # SDK's session manager runs once per instance: a new one for each app run.
            # Sessions live in one process, so several workers serve it stateless (JSON).
            mcp_app = McpHttpApp(
                lambda: app.state.warden,
                host=settings.host,
                stateless=settings.workers > 1,
                json_response=settings.workers > 1,
                sessions_per_key_max=settings.mcp_sessions_per_key_max,
                session_idle_seconds=settings.mcp_session_idle_seconds,
            )
            async with mcp_app.lifespan():
                app.state.mcp_app = mcp_app
                yield
        finally:
            app.state.mcp_app = None
            watcher.stop()
            stop_observing()
            join_goal_runs(app)  # no background run may outlive the store it writes to
            if owned:
                current.close()

    app = FastAPI(
        title="paywarden",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(reject_unknown_query)],
        # No redirect from `/path/` to `/path`: Starlette builds it from the request's Host
        # header, so a forged Host would send clients elsewhere. Such paths are plain 404s.
        redirect_slashes=False,
        docs_url=None,  # served by console.install from the gateway's own files: no CDN
    )
    app.state.settings = settings
    if warden is not None:  # usable without running the lifespan (in-process tests)
        app.state.warden = warden
        app.state.policy_watcher = PolicyWatcher(warden, settings.policy, 0)
    problems.install(app)
    _include_routers(app)
    # GET /metrics (metrics.py): nothing is counted, and the route is a 404, when it is off.
    install_metrics(app, settings.metrics_enabled, warden)
    # A route, not a mount: a mounted app's /mcp would redirect to /mcp/. Starlette serves an
    # endpoint that is not a function as a plain ASGI app (its stub types say otherwise). Not in
    # the OpenAPI document: MCP is its own protocol (see docs/mcp.md).
    app.add_route(
        "/mcp",
        McpRoute(app),  # type: ignore[arg-type]
        methods=["GET", "POST", "DELETE"],
        include_in_schema=False,
    )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    _guard(app, settings)
    return app


def _include_routers(app: FastAPI) -> None:
    for router in (
        payments_router,
        holds_router,
        operations_router,
        scopes_router,
        disputes_router,
        goals_router,
        staff_router,
        oversight_router,
        analytics_router,
        alerts_router,
        admin_router,
        health_router,
    ):
        app.include_router(router)
    # The operator console at /console (server-rendered pages) and the offline /docs page.
    console.install(app, app.state.settings)


def _guard(app: FastAPI, settings: Settings) -> None:
    """The guard in front of every route: framing, overload, body size and deadline."""
    app.state.overload = OverloadGate(settings.store_backlog_max)
    app.add_middleware(
        HttpGuard,
        body_bytes_max=settings.body_bytes_max,
        policy_body_bytes_max=POLICY_BODY_BYTES_MAX,
        body_timeout_seconds=settings.body_timeout_seconds,
    )
    # Outermost: every response, refusals of the guard included, carries its X-Request-Id.
    app.add_middleware(RequestIds)


class McpRoute:
    """`/mcp`: hands each request to the MCP app of the running app (started in its lifespan)."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        mcp_app: McpHttpApp | None = getattr(self._app.state, "mcp_app", None)
        if mcp_app is None:
            body = (
                b'{"error": {"code": "unavailable", "message": "MCP runs only in a started app"}}'
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await mcp_app(scope, receive, send)


def _startup(warden: Warden, settings: Settings) -> None:
    problems_now = warden.ready()
    for problem in problems_now:
        log.warning("not ready, every payment is denied: %s", problem)
    in_force = warden.loaded_policy
    if in_force.policy is not None:
        log.info("policy in force: version %s (from %s)", in_force.policy.version, in_force.source)
    if not settings.reconcile_on_start:
        return
    try:
        changed = warden.reconcile()
    except PaywardenError as error:
        log.error("reconcile at start failed: %s", error)
        return
    for row in changed:
        log.info("reconciled payment %s: now %s", row.payment_id, row.state)
    log.info("reconcile at start: %d payment(s) changed", len(changed))


def create_app_from_environment() -> FastAPI:
    """The uvicorn factory for worker processes: settings from `PAYWARDEN_*` variables."""
    return create_app(load_settings(environ=os.environ))


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with error responses declared as `application/problem+json`."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for response in operation.get("responses", {}).values():
                content = response.get("content", {})
                if content.get("application/json", {}).get("schema") == problem_ref:
                    content[problems.PROBLEM_MEDIA_TYPE] = content.pop("application/json")
    app.openapi_schema = schema
    return schema
