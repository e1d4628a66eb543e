"""The gateway's HTTP layer under abuse: ambiguous framing, forged Host headers, slow clients,
connection floods, secrets in query strings, 405s and idempotency fingerprints.

Method: most tests talk raw HTTP/1.1 over sockets to a real `paywarden serve` subprocess on a
free loopback port, started once for the module with short limits (header and body deadlines
of 1 s, 24 connections, access log on, written to a file the tests read). Socket-level
behaviour is what a client sees, so it is checked there. Route-by-route checks (every route
with a forged Host, 405 `Allow` headers, stored fingerprints) use the app in process.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from rest_support import Gateway

from paywarden import Warden
from paywarden.entrypoints.rest import Settings, create_app, load_settings
from paywarden.entrypoints.rest.http_guard import framing_problem
from paywarden.entrypoints.rest.models import PaymentRequest
from paywarden.errors import InvalidInputError
from support.intents import intent_body
from support.ledger_file import rows
from support.policies import write_policy
from support.servers import free_port, stop_process

PAYWARDEN = str(Path(sys.executable).with_name("paywarden"))
POLICY = """
currency: USD
rules:
  - {id: small, effect: allow, actions: ["payments.*"], amount: {lte: 100}}
"""
HEADER_TIMEOUT_SECONDS = 1.0
BODY_TIMEOUT_SECONDS = 1.0
CONNECTIONS_MAX = 24
# How long past a deadline the server may take to act on it (a loaded CI machine).
SLACK_SECONDS = 3.0


@dataclass
class Server:
    port: int
    key: str
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "paywarden serve exited"
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail("paywarden serve did not become healthy in 30 s")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("serve")
    database = root / "pw.db"
    policy = write_policy(root, POLICY)
    created = subprocess.run(
        [PAYWARDEN, "keys", "create", "--database", str(database), "--role", "agent",
         "--agent", "agent-a", "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    port, log = free_port(), root / "serve.log"
    command = [
        PAYWARDEN, "serve", "--database", str(database), "--policy", str(policy),
        "--port", str(port), "--access-log", "--log-level", "info",
        "--header-timeout-seconds", str(HEADER_TIMEOUT_SECONDS),
        "--body-timeout-seconds", str(BODY_TIMEOUT_SECONDS),
        "--connections-max", str(CONNECTIONS_MAX), "--keep-alive-timeout-seconds", "1",
    ]  # fmt: skip
    env = {**os.environ, "PAYWARDEN_SANDBOX_STATE": str(root / "sandbox.db")}
    with log.open("wb") as output:
        env["PYTHONUNBUFFERED"] = "1"
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", process)
        yield Server(port, json.loads(created.stdout)["key"], log)
    finally:
        stop_process(process)


@contextmanager
def _connection(server: Server) -> Iterator[socket.socket]:
    with closing(socket.create_connection(("127.0.0.1", server.port), timeout=10)) as sock:
        yield sock


def _read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """Everything the server sends within `timeout`, and whether it closed the connection."""
    data, deadline = b"", time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65_536)
        except TimeoutError:
            return data, False
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def _exchange(server: Server, request: bytes, timeout: float = 5.0) -> tuple[bytes, bool]:
    with _connection(server) as sock:
        sock.sendall(request)
        return _read_until_closed(sock, timeout)


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def _problem(response: bytes) -> dict[str, object]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head.lower(), head
    problem: dict[str, object] = json.loads(body)
    return problem


def _payments(server: Server) -> list[object]:
    response = httpx.get(
        f"{server.url}/v1/payments", headers={"Authorization": f"Bearer {server.key}"}
    )
    assert response.status_code == 200, response.text
    payments: list[object] = response.json()
    return payments


# Ambiguous framing ------------------------------------------------------------------------------

PAYMENT = json.dumps(intent_body("5.00")).encode()
CHUNKED_PAYMENT = b"%x\r\n%s\r\n0\r\n\r\n" % (len(PAYMENT), PAYMENT)
SMUGGLED = b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"


def _payment_request(server: Server, framing: bytes, body: bytes) -> bytes:
    return (
        b"POST /v1/payments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + server.key.encode() + b"\r\nIdempotency-Key: smuggle-"
        + str(time.monotonic_ns()).encode() + b"\r\n" + framing + b"\r\n" + body
    )  # fmt: skip


@pytest.mark.parametrize(
    ("framing", "body"),
    [
        # Content-Length and chunked together: h11 reads the chunks, a proxy may read the length.
        (b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(PAYMENT), CHUNKED_PAYMENT),
        (b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", CHUNKED_PAYMENT + SMUGGLED),
        (b"Content-Length: %d\r\nContent-Length: 3\r\n" % len(PAYMENT), PAYMENT),
        (b"Transfer-Encoding: gzip, chunked\r\n", CHUNKED_PAYMENT),
        (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", CHUNKED_PAYMENT),
        (b"Transfer-Encoding: identity\r\nContent-Length: %d\r\n" % len(PAYMENT), PAYMENT),
        (b"Content-Length: +%d\r\n" % len(PAYMENT), PAYMENT),
    ],
    ids=["cl-te", "te-cl-smuggle", "two-lengths", "te-gzip", "te-twice", "te-identity", "cl-sign"],
)
def test_ambiguous_framing_is_refused_closed_and_never_processed(
    server: Server, framing: bytes, body: bytes
) -> None:
    before = len(_payments(server))
    response, closed = _exchange(server, _payment_request(server, framing, body) + SMUGGLED)
    assert _status(response) == 400, response
    assert closed, "the connection must be closed after an ambiguous request"
    assert response.count(b"HTTP/1.1 ") == 1, "a smuggled request was answered"
    assert len(_payments(server)) == before  # the payment was never made


def test_a_paywarden_framing_refusal_is_a_problem(server: Server) -> None:
    """h11 itself refuses most bad framings with a plain 400; the one it lets through
    (Content-Length with chunked) is refused by paywarden's guard, as problem+json."""
    framing = b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(PAYMENT)
    response, _ = _exchange(server, _payment_request(server, framing, CHUNKED_PAYMENT))
    problem = _problem(response)
    assert problem["code"] == "bad_request" and problem["status"] == 400
    assert "Content-Length and Transfer-Encoding" in str(problem["detail"])


def test_unambiguous_requests_still_pass(server: Server) -> None:
    before = len(_payments(server))
    close = b"Connection: close\r\n"
    chunked = _payment_request(server, close + b"Transfer-Encoding: chunked\r\n", CHUNKED_PAYMENT)
    length = _payment_request(server, close + b"Content-Length: %d\r\n" % len(PAYMENT), PAYMENT)
    for request in (chunked, length):
        response, closed = _exchange(server, request)
        assert _status(response) == 200 and closed, response
    assert len(_payments(server)) == before + 2


_NAMES = st.sampled_from(
    [b"content-length", b"Content-Length", b"transfer-encoding", b"Transfer-Encoding", b"host"]
)
_VALUES = st.sampled_from([b"0", b"12", b" 7 ", b"chunked", b"Chunked", b"gzip", b"-1", b"1,1"])


@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=4))
def test_framing_is_accepted_only_when_it_has_one_reading(
    headers: list[tuple[bytes, bytes]],
) -> None:
    lengths = [v for n, v in headers if n.lower() == b"content-length"]
    codings = [v for n, v in headers if n.lower() == b"transfer-encoding"]
    one_length = len(lengths) == 1 and lengths[0].strip().isdigit() and not codings
    one_coding = len(codings) == 1 and codings[0].strip().lower() == b"chunked" and not lengths
    unambiguous = (not lengths and not codings) or one_length or one_coding
    assert (framing_problem(headers) is None) == unambiguous


# Forged Host headers and redirects ------------------------------------------------------------


def _route_paths(client: TestClient) -> list[str]:
    paths = {"/mcp", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"}
    paths |= set(client.get("/openapi.json").json()["paths"])
    filled = {path.replace("{", "").replace("}", "") for path in paths}  # {id} -> id
    return sorted(filled | {path + "/" for path in filled} | {"/v1//payments"})


def test_no_response_points_a_client_to_the_host_it_named(gateway: Gateway) -> None:
    client = gateway.client
    paths = _route_paths(client)
    assert "/v1/payments/" in paths and "/mcp/" in paths and "/docs/" in paths
    forged = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}
    for path in paths:
        for method in ("GET", "POST", "PUT", "DELETE", "HEAD"):
            response = client.request(
                method, path, headers={**gateway.auth("admin"), **forged}, follow_redirects=False
            )
            location = response.headers.get("location")
            assert location is None or urlsplit(location).netloc == "", (method, path, location)
            assert not 300 <= response.status_code < 400, (method, path, response.status_code)


def test_a_trailing_slash_is_a_404_problem_not_a_redirect(server: Server) -> None:
    for path in (b"/v1/payments/", b"/mcp/", b"/docs/", b"/healthz/", b"//evil.example/"):
        request = b"GET " + path + b" HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
        response, _ = _exchange(server, request)
        assert _status(response) == 404, response
        assert b"\r\nlocation:" not in response.lower()
        assert _problem(response)["code"] == "not_found"


# Slow clients and the connection limit ----------------------------------------------------------

HALF_HEADS = [
    b"",  # connects and says nothing
    b"GET /heal",  # half a request line
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ",  # half the headers
]


def _drip(sock: socket.socket, stop: threading.Event) -> None:
    """Send a request head one byte every 0.2 s, never finishing it (slowloris)."""
    head = b"GET /healthz HTTP/1.1\r\n" + b"X-Padding: " + b"a" * 10_000
    for byte in head:
        if stop.wait(0.2):
            return
        try:
            sock.send(bytes([byte]))
        except OSError:
            return


def test_slow_clients_are_cut_off_and_do_not_block_others(server: Server) -> None:
    sockets = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(18)]
    dripper = socket.create_connection(("127.0.0.1", server.port))
    stop = threading.Event()
    thread = threading.Thread(target=_drip, args=(dripper, stop), daemon=True)
    opened = time.monotonic()
    try:
        for number, sock in enumerate(sockets):
            sock.sendall(HALF_HEADS[number % len(HALF_HEADS)])
        thread.start()
        # 19 connections hang; a normal client is still served at once.
        assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200
        limit = HEADER_TIMEOUT_SECONDS + SLACK_SECONDS
        for number, sock in enumerate([*sockets, dripper]):
            data, closed = _read_until_closed(sock, limit - (time.monotonic() - opened))
            assert closed, f"connection {number} still open {limit} s after it opened"
            if number < len(sockets) and HALF_HEADS[number % len(HALF_HEADS)]:
                assert _status(data) == 408 and _problem(data)["code"] == "request_timeout"
        # Not cut off before its deadline: the server waited for the headers first.
        assert time.monotonic() - opened >= HEADER_TIMEOUT_SECONDS * 0.9
    finally:
        stop.set()
        thread.join(timeout=5)
        for sock in [*sockets, dripper]:
            sock.close()


def test_a_half_sent_body_gets_408_and_the_connection_closes(server: Server) -> None:
    head = _payment_request(server, b"Content-Length: %d\r\n" % len(PAYMENT), b"")
    with _connection(server) as sock:
        sock.sendall(head + PAYMENT[:10])
        started = time.monotonic()
        data, closed = _read_until_closed(sock, BODY_TIMEOUT_SECONDS + SLACK_SECONDS)
        waited = time.monotonic() - started
    assert closed and _status(data) == 408, data
    assert _problem(data)["code"] == "request_timeout"
    assert BODY_TIMEOUT_SECONDS * 0.9 <= waited <= BODY_TIMEOUT_SECONDS + SLACK_SECONDS


def test_at_the_connection_limit_requests_get_503_until_idle_ones_are_dropped(
    server: Server,
) -> None:
    sockets = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(CONNECTIONS_MAX)]
    try:
        time.sleep(0.2)  # every one is accepted before the probe
        refused = httpx.get(f"{server.url}/readyz", timeout=5)
        assert refused.status_code == 503  # refused at once, not left hanging
        deadline = time.monotonic() + HEADER_TIMEOUT_SECONDS + SLACK_SECONDS
        while httpx.get(f"{server.url}/readyz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "idle connections were never dropped"
            time.sleep(0.1)
    finally:
        for sock in sockets:
            sock.close()


# The access log -------------------------------------------------------------------------------


def test_the_access_log_never_contains_a_query_string(server: Server) -> None:
    auth = {"Authorization": f"Bearer {server.key}"}
    secrets = ["sk_live_leak1", "sk_live_leak2", "sk_live_leak3"]
    httpx.get(f"{server.url}/healthz?api_key={secrets[0]}")
    httpx.get(f"{server.url}/v1/payments?limit=5&state={secrets[1]}", headers=auth)
    httpx.get(f"{server.url}/v1/nothing?token={secrets[2]}#frag")
    marker = f"/v1/payments/pay_{time.monotonic_ns()}"
    httpx.get(f"{server.url}{marker}?x=1", headers=auth)
    deadline = time.monotonic() + 5
    while marker not in (log := server.log.read_text(encoding="utf-8", errors="replace")):
        assert time.monotonic() < deadline, "the access log never showed the request"
        time.sleep(0.05)
    access = [line for line in log.splitlines() if '" ' in line and "HTTP/1.1" in line]
    assert any('"GET /healthz HTTP/1.1"' in line for line in access)
    assert any(f'"GET {marker} HTTP/1.1" 422' in line for line in access)  # `x` is unknown
    assert not any("?" in line for line in access), access
    assert not any(secret in log for secret in secrets)


# 405 Allow ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/payments", {"GET", "POST"}),
        ("PUT", "/v1/authorizations", {"POST"}),
        ("GET", "/v1/halt", {"POST"}),
        ("PATCH", "/healthz", {"GET"}),
        ("POST", "/v1/payments/pay_x", {"GET"}),
        ("GET", "/v1/payments/pay_x/refund", {"POST"}),
        ("DELETE", "/v1/policy", {"GET", "PUT"}),
        ("PUT", "/mcp", {"GET", "HEAD", "POST", "DELETE"}),
    ],
)
def test_a_405_lists_exactly_the_methods_the_path_accepts(
    gateway: Gateway, method: str, path: str, allowed: set[str]
) -> None:
    response = gateway.client.request(method, path, headers=gateway.auth("admin"))
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    listed = {name.strip() for name in response.headers["allow"].split(",")}
    assert listed == allowed
    for name in listed - {"HEAD"}:  # each one listed is really routed (HEAD has no body)
        answer = gateway.client.request(name, path, headers=gateway.auth("admin"))
        assert answer.status_code != 405, (name, path)


# Idempotency fingerprints ---------------------------------------------------------------------


def _stored_fingerprints(database: Path) -> dict[str, str]:
    return dict(rows(database, "SELECT key, fingerprint FROM idempotency_keys"))


def _pay_once(tmp_path: Path, secret: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """One payment under `Idempotency-Key: same` on a fresh deployment; its stored fingerprint."""
    monkeypatch.setenv("PAYWARDEN_KEY_SECRET", secret)
    tmp_path.mkdir()
    database = tmp_path / "ledger.db"
    with Warden.open(POLICY, database=database) as warden:
        key, _ = warden.create_key(role="agent", agent="agent-a", actor="test")
        settings = Settings(database=str(database), policy_poll_seconds=0)
        with TestClient(create_app(settings, warden=warden)) as client:
            headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "same"}
            first = client.post("/v1/payments", json=intent_body("5.00"), headers=headers)
            again = client.post("/v1/payments", json=intent_body("5.00"), headers=headers)
    assert first.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    return _stored_fingerprints(database)["same"]


def test_stored_fingerprints_are_keyed_by_the_deployment_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = _pay_once(tmp_path / "one", "a" * 40, monkeypatch)
    two = _pay_once(tmp_path / "two", "b" * 40, monkeypatch)
    body = PaymentRequest.model_validate(intent_body("5.00"))
    plain = hashlib.sha256(
        json.dumps(
            ["POST", "/v1/payments", body.model_dump()], sort_keys=True, separators=(",", ":")
        ).encode()
    ).hexdigest()
    raw_body = json.dumps(intent_body("5.00"), sort_keys=True, separators=(",", ":"))
    assert one != two  # another secret, another fingerprint of the same request
    assert plain not in (one, two)
    assert hashlib.sha256(raw_body.encode()).hexdigest() not in (one, two)
    assert len(one) == len(two) == 64


# Settings -------------------------------------------------------------------------------------


def test_http_limits_come_from_the_environment_and_config(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("connections_max = 50\nheader_timeout_seconds = 2.5\n", encoding="utf-8")
    environ = {"PAYWARDEN_BODY_TIMEOUT_SECONDS": "7", "PAYWARDEN_KEEP_ALIVE_TIMEOUT_SECONDS": "3"}
    settings = load_settings(config, environ)
    assert (settings.connections_max, settings.header_timeout_seconds) == (50, 2.5)
    assert (settings.body_timeout_seconds, settings.keep_alive_timeout_seconds) == (7.0, 3)
    assert Settings().connections_max == 1000 and Settings().header_timeout_seconds == 10.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CONNECTIONS_MAX", "0"),
        ("HEADER_TIMEOUT_SECONDS", "0"),
        ("BODY_TIMEOUT_SECONDS", "-1"),
        ("BODY_TIMEOUT_SECONDS", "nan"),
        ("HEADER_TIMEOUT_SECONDS", "inf"),
        ("KEEP_ALIVE_TIMEOUT_SECONDS", "1.5"),
        ("KEEP_ALIVE_TIMEOUT_SECONDS", "100000"),
    ],
)
def test_bad_http_limits_refuse_to_start(name: str, value: str) -> None:
    with pytest.raises(InvalidInputError, match=name.lower()):
        load_settings(environ={f"PAYWARDEN_{name}": value})


def test_serve_refuses_a_bad_limit_and_documents_the_options() -> None:
    done = subprocess.run(
        [PAYWARDEN, "serve", "--header-timeout-seconds", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "header_timeout_seconds" in done.stderr
    shown = subprocess.run(
        [PAYWARDEN, "serve", "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    for option in (
        "--connections-max",
        "--header-timeout-seconds",
        "--body-timeout-seconds",
        "--keep-alive-timeout-seconds",
        "--store-backlog-max",
    ):
        assert option in shown
