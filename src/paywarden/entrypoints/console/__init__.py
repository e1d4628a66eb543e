"""The operator console at `/console`: server-rendered pages and plain HTML forms (htmx, served
from `/console/static`, only refreshes the approvals inbox). See docs/console.md.

`install(app)` adds the console's routes, its static files and the offline `/docs` page to the
gateway app; `pages_*.py` hold the pages, `web.py` what they share, `security.py` the browser
security, `sessions.py` the sign-in sessions.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse

from paywarden.entrypoints.console import (
    pages_admin,
    pages_approvals,
    pages_audit,
    pages_auth,
    pages_payments,
    pages_spend,
)
from paywarden.entrypoints.console.sessions import SessionStore
from paywarden.entrypoints.console.web import HERE
from paywarden.entrypoints.rest.settings import Settings

STATIC = "/console/static"


def install(app: FastAPI, settings: Settings) -> None:
    """Serve the console (and `/docs` from local assets) in `app`."""
    app.state.console_sessions = SessionStore(
        settings.console_session_idle_seconds, settings.console_session_max_seconds
    )
    app.state.console_roles = {}
    for module in (
        pages_auth,
        pages_approvals,
        pages_payments,
        pages_admin,
        pages_audit,
        pages_spend,
    ):
        app.include_router(module.router)
    app.mount(STATIC, StaticFiles(directory=HERE / "static"), name="console-static")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        """Swagger UI from the gateway's own files: the page works offline."""
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="paywarden API",
            swagger_js_url=f"{STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC}/favicon-32x32.png",
        )
