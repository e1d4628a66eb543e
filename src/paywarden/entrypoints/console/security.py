"""The console's browser security: where the console is (its origin, behind trusted proxies),
cross-site request refusal, the cookie's flags and the response headers.

A state-changing request counts only when the browser says it came from the console's own
origin (`Sec-Fetch-Site: same-origin`, or, from browsers that do not send it, an `Origin` equal
to the console's) and carries the session's CSRF token. `127.0.0.1:8001` and `127.0.0.1:8000`
are the same *site* (the port does not count), so `SameSite=Strict` alone would not stop one
from posting to the other: the origin check does.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from starlette.requests import Request

from paywarden.entrypoints.rest.settings import Settings
from paywarden.errors import ForbiddenError

COOKIE_NAME = "paywarden_console"
# Strict: no inline script or style, nothing from another origin, never framed.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def origin_of(settings: Settings, request: Request) -> str:
    """The console's origin: `public_url`'s when set, else the scheme the request came in with
    (`https` from `X-Forwarded-Proto` only when it came through one of `trusted_proxies`: uvicorn
    applies it, see server.py) and its `Host` header."""
    if settings.public_url:
        parts = urlsplit(settings.public_url.lower())
        default = {"https": 443, "http": 80}.get(parts.scheme)
        port = "" if parts.port in (None, default) else f":{parts.port}"
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        return f"{parts.scheme}://{host}{port}"  # as a browser's `Origin` says it
    return f"{request.url.scheme}://{request.headers.get('host', '')}".lower()


def secure_cookie(settings: Settings, request: Request) -> bool:
    """`Secure` when the console is served over https."""
    return origin_of(settings, request).startswith("https://")


def check_same_origin(settings: Settings, request: Request) -> None:
    """Refuse a request another site (or another origin on this site) made the browser send."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site != "same-origin":
        raise ForbiddenError(f"a cross-origin form post was refused (Sec-Fetch-Site: {fetch_site})")
    origin = request.headers.get("origin")
    if origin is None and fetch_site is None:
        raise ForbiddenError("a form post without Origin or Sec-Fetch-Site was refused")
    if origin is not None and origin.lower() != origin_of(settings, request):
        raise ForbiddenError("a form post from another origin was refused")


def check_token(expected: str, given: str | None) -> None:
    if not given or not hmac.compare_digest(expected.encode(), given.encode()):
        raise ForbiddenError("the form's security token is missing or stale; reload the page")
