"""The console's security at the HTTP level, against a real gateway on loopback: the CSRF
token and origin checks, the session cookie's flags (behind a TLS proxy too), sessions that end
(sign out, a revoked key, idle and absolute expiry), the response headers, and `/docs` served
from the gateway's own files."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from paywarden.actions.analytics import SpendLine
from paywarden.entrypoints.console.pages_spend import CHART_HEIGHT, CHART_WIDTH, charts
from paywarden.entrypoints.console.sessions import SessionStore
from paywarden.entrypoints.rest.app import create_app
from paywarden.entrypoints.rest.server import uvicorn_options
from paywarden.entrypoints.rest.settings import Settings, load_settings
from paywarden.errors import InvalidInputError
from support.console import Gateway
from support.servers import serving


@contextlib.contextmanager
def _signed_in(url: str, key: str) -> Iterator[tuple[httpx.Client, str]]:
    """A client signed in with `key` (posting as the console's own origin) and its CSRF token."""
    with httpx.Client(base_url=url, headers={"Origin": url}, timeout=10) as client:
        response = client.post("/console/login", data={"key": key})
        assert response.status_code == 303, response.text
        page = client.get("/console/halts")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None
        yield client, token.group(1)


def _halt(client: httpx.Client, token: str | None, **headers: str) -> httpx.Response:
    data = {"reason": "test", "confirm": "yes"}
    if token is not None:
        data["csrf"] = token
    return client.post("/console/halt", data=data, headers=headers)


def test_a_post_needs_the_sessions_token_and_the_consoles_origin(gateway: Gateway) -> None:
    with _signed_in(gateway.url, gateway.alice) as (client, token):
        assert _halt(client, None).status_code == 403
        assert _halt(client, "not-the-token").status_code == 403
        assert _halt(client, token, Origin="http://evil.example").status_code == 403
        cross = _halt(client, token, **{"Sec-Fetch-Site": "same-site"})
        assert cross.status_code == 403 and "cross-origin" in cross.text
        assert gateway.warden.halts() == []
        client.headers.pop("Origin")  # neither Origin nor Sec-Fetch-Site: refused too
        assert _halt(client, token).status_code == 403
        assert gateway.warden.halts() == []
        done = _halt(client, token, Origin=gateway.url, **{"Sec-Fetch-Site": "same-origin"})
        assert done.status_code == 303
        assert [halt.actor for halt in gateway.warden.halts()] == ["alice"]


def test_pages_carry_a_strict_content_security_policy(gateway: Gateway) -> None:
    with _signed_in(gateway.url, gateway.alice) as (client, _):
        for path in ("/console/login", "/console/approvals", "/console/audit"):
            headers = client.get(path).headers
            csp = headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert headers["x-frame-options"] == "DENY"
            assert headers["cache-control"] == "no-store"


def test_the_cookie_is_httponly_strict_and_secure_only_over_https(gateway: Gateway) -> None:
    plain = httpx.post(
        f"{gateway.url}/console/login", data={"key": gateway.alice}, headers={"Origin": gateway.url}
    ).headers["set-cookie"]
    assert "HttpOnly" in plain and "SameSite=strict" in plain and "Secure" not in plain
    public = "https://console.example.com"
    settings = Settings(public_url=public, policy_poll_seconds=0)
    with serving(create_app(settings, warden=gateway.warden)) as url:
        response = httpx.post(f"{url}/console/login", data={"key": gateway.alice})
        assert response.status_code == 403  # no Origin: refused, even for sign-in
        response = httpx.post(
            f"{url}/console/login", data={"key": gateway.alice}, headers={"Origin": public}
        )
        assert response.status_code == 303 and "Secure" in response.headers["set-cookie"]
        wrong = httpx.post(
            f"{url}/console/login", data={"key": gateway.alice}, headers={"Origin": url}
        )
        assert wrong.status_code == 403  # the console is at its public URL only


@pytest.mark.parametrize(("proxies", "trusted"), [("127.0.0.1", True), ("10.0.0.0/8", False)])
def test_a_forwarded_scheme_counts_only_from_trusted_proxies(
    gateway: Gateway, proxies: str, trusted: bool
) -> None:
    """Behind a TLS proxy the console is https (a Secure cookie, an https origin), if the
    proxy is trusted; uvicorn runs with the options `paywarden serve` gives it."""
    settings = Settings(trusted_proxies=proxies, policy_poll_seconds=0)
    options = uvicorn_options(settings)
    assert (options["proxy_headers"], options["forwarded_allow_ips"]) == (True, proxies)
    assert uvicorn_options(Settings())["proxy_headers"] is False
    proxied = {key: options[key] for key in ("proxy_headers", "forwarded_allow_ips")}
    with serving(create_app(settings, warden=gateway.warden), **proxied) as url:
        host = url.removeprefix("http://")
        response = httpx.post(
            f"{url}/console/login",
            data={"key": gateway.alice},
            headers={"X-Forwarded-Proto": "https", "Origin": f"https://{host}"},
        )
    assert response.status_code == (303 if trusted else 403)
    if trusted:
        assert "Secure" in response.headers["set-cookie"]


def test_sign_out_and_a_revoked_key_end_the_session(gateway: Gateway) -> None:
    with _signed_in(gateway.url, gateway.alice) as (client, token):
        cookie = client.cookies.get("paywarden_console")
        assert client.post("/console/logout", data={"csrf": token}).status_code == 303
        client.cookies.set("paywarden_console", str(cookie), path="/console")
        again = client.get("/console/approvals")
        assert again.status_code == 303 and again.headers["location"] == "/console/login"
        refresh = client.get("/console/approvals/live", headers={"HX-Request": "true"})
        assert (refresh.status_code, refresh.headers["hx-redirect"]) == (204, "/console/login")
    with _signed_in(gateway.url, gateway.bob) as (client, _):
        assert client.get("/console/approvals").status_code == 200
        rows = gateway.warden.keys()
        bob_key = next(row for row in rows if row.operator == "bob")
        gateway.warden.revoke_key(bob_key.key_id, actor="test")
        assert client.get("/console/approvals").status_code == 303


def test_a_session_ends_when_idle_and_at_its_absolute_limit() -> None:
    now = [0.0]
    store = SessionStore(idle_seconds=60, max_seconds=300, now=lambda: now[0])
    session = store.create("secret")
    for _ in range(4):  # used every 50 s: never idle long enough
        now[0] += 50
        assert store.get(session.session_id) is session
    now[0] += 101  # 301 s since sign-in
    assert store.get(session.session_id) is None
    idle = store.create("secret")
    now[0] += 61
    assert store.get(idle.session_id) is None and len(store) == 0


def test_an_operator_key_cannot_open_admin_pages(gateway: Gateway) -> None:
    with _signed_in(gateway.url, gateway.alice) as (client, _):
        refused = client.get("/console/keys")
        assert refused.status_code == 403 and "needs an admin key" in refused.text


def test_docs_are_served_without_any_outside_url(gateway: Gateway) -> None:
    page = httpx.get(f"{gateway.url}/docs").text
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(source.startswith("/") for source in sources), sources
    assert "cdn" not in page.lower()
    for source in sources:
        assert httpx.get(f"{gateway.url}{source}").status_code == 200


def test_console_settings_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="public_url"):
        load_settings(environ={}, overrides={"public_url": "console.example.com"})
    with pytest.raises(InvalidInputError, match="trusted_proxies"):
        load_settings(environ={"PAYWARDEN_TRUSTED_PROXIES": "10.0.0.1, proxy.local"})
    with pytest.raises(InvalidInputError, match="console_session_idle_seconds"):
        load_settings(environ={}, overrides={"console_session_idle_seconds": 0})


def test_the_spend_chart_puts_each_bucket_in_its_slot() -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    until = since + timedelta(days=4)
    lines = tuple(
        SpendLine(key, "USD", 1, 1, 0, 0, minor, minor, text, text)
        for key, minor, text in (
            ("2026-01-02T00:00:00Z", 1000, "10.00"),
            ("2026-01-04T00:00:00Z", 500, "5.00"),
        )
    )
    (chart,) = charts(lines, since, until, 86_400)
    slot = CHART_WIDTH / 4
    assert [(round(bar.x), round(bar.height)) for bar in chart.bars] == [
        (round(slot + 1), CHART_HEIGHT),
        (round(3 * slot + 1), CHART_HEIGHT // 2),
    ]
    assert (chart.currency, chart.peak, chart.first) == ("USD", "10.00", "2026-01-01 00:00")


def test_signing_in_again_ends_the_browsers_previous_session(gateway: Gateway) -> None:
    with _signed_in(gateway.url, gateway.alice) as (client, _):
        first = str(client.cookies.get("paywarden_console"))
        again = client.post("/console/login", data={"key": gateway.bob})
        assert again.status_code == 303
        assert str(client.cookies.get("paywarden_console")) != first
        client.cookies.set("paywarden_console", first, path="/console")
        assert client.get("/console/approvals").status_code == 303  # alice's session is gone


def test_a_grant_with_non_ascii_digits_is_refused_not_a_server_error(gateway: Gateway) -> None:
    with _signed_in(gateway.url, gateway.alice) as (client, token):
        form = {"csrf": token, "agent": "agent-a", "currency": "USD", "per_payment": "1.00"}
        form |= {"total": "5.00", "expires_in_minutes": "²"}
        response = client.post("/console/grants", data=form)
        assert response.status_code == 303
        page = client.get(response.headers["location"])
        assert "whole numbers" in page.text and gateway.warden.grants() == []


def test_a_public_url_with_its_default_port_matches_the_browsers_origin(gateway: Gateway) -> None:
    public = "https://Console.Example.com:443"
    settings = Settings(public_url=public, policy_poll_seconds=0)
    with serving(create_app(settings, warden=gateway.warden)) as url:
        origin = {"Origin": "https://console.example.com"}
        response = httpx.post(f"{url}/console/login", data={"key": gateway.alice}, headers=origin)
        assert response.status_code == 303 and "Secure" in response.headers["set-cookie"]
