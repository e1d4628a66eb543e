"""Real servers on loopback for the tests: free ports, an ASGI app under uvicorn in a thread,
and subprocesses stopped the way an operator would (SIGINT, then kill if it hangs)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp


def free_port() -> int:
    """A loopback port that was free a moment ago (closed again, so nothing listens on it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def serving(app: ASGIApp, **options: Any) -> Iterator[str]:
    """Run `app` under uvicorn on a free loopback port; yield its base URL. `options` go to
    uvicorn's `Config` (such as `proxy_headers`)."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


class LoopbackHTTPServer:
    """`http.server` on 127.0.0.1 (a port of its own) in a daemon thread, answering with
    `handler`; `close()` shuts it down."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], poll_seconds: float = 0.5) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": poll_seconds}, daemon=True
        )
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGINT, as Ctrl-C would; killed if it has not exited within 20 s."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


PAYWARDEN = str(Path(sys.executable).with_name("paywarden"))


@contextlib.contextmanager
def serve_process(directory: Path, policy: Path, *extra: str) -> Iterator[tuple[str, list[str]]]:
    """A real `paywarden serve` on a free port, a ledger and sandbox state in `directory`;
    yields its URL (once healthy) and a list that holds its output once it stopped."""
    port = free_port()
    command = [PAYWARDEN, "serve", "--database", str(directory / "pw.db"), "--policy", str(policy)]
    command += ["--port", str(port), *extra]
    env = {
        **os.environ,
        "PAYWARDEN_SANDBOX_STATE": str(directory / "sandbox.db"),
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    url = f"http://127.0.0.1:{port}"
    output: list[str] = []
    try:
        _wait_healthy(url, process)
        yield url, output
    finally:
        stop_process(process)
        if process.stdout is not None:
            output.append(process.stdout.read())
            process.stdout.close()


def _wait_healthy(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    with httpx.Client(timeout=1) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                pytest.fail(f"paywarden serve exited with {process.returncode}: {output}")
            try:
                if client.get(f"{url}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    pytest.fail("paywarden serve did not become healthy in 30 s")
