"""The first run of `paywarden serve`: the port, and the commands its banner prints.

Method: real `paywarden serve` subprocesses on loopback. `--port 0` must print the port the
system picked and serve on it; the banner's `keys create` and `curl` lines are run through a
shell exactly as printed (the key it creates substituted for `<key>`), from the directory the
gateway was started in; a port another socket listens on must fail with status 3 before any
banner. `command_prefix` is checked on its own for the cases a test run cannot produce.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from paywarden.entrypoints.cli.serve_cli import command_prefix
from support.policies import write_policy
from support.servers import stop_process

PAYWARDEN = str(Path(sys.executable).with_name("paywarden"))
POLICY = """
currency: USD
rules:
  - {id: small, effect: allow, actions: ["payments.*"], amount: {lte: 100}}
"""
BANNER = re.compile(r"paywarden gateway on (http://127\.0\.0\.1:(\d+)) ")


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PAYWARDEN_SANDBOX_STATE": str(tmp_path / "sandbox.db"),
        "PYTHONUNBUFFERED": "1",
    }


def _banner(process: subprocess.Popen[str]) -> list[str]:
    """The banner lines, up to the curl line (the last one)."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            pytest.fail(f"serve exited ({process.poll()}) before its banner: {lines}")
        lines.append(line.rstrip("\n"))
        if line.lstrip().startswith("curl "):
            return lines
    pytest.fail("no banner in 30 s")


def _shell(command: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, (command, done.stdout, done.stderr)
    return done.stdout


def _wait_healthy(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail("not healthy in 30 s")


def test_port_zero_serves_on_the_printed_port_and_the_printed_commands_work(
    tmp_path: Path,
) -> None:
    write_policy(tmp_path, POLICY)
    env = _env(tmp_path)
    command = [PAYWARDEN, "serve", "--port", "0", "--database", "pw.db"]
    command += ["--policy", "policy.yaml", "--no-access-log", "--log-level", "warning"]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        lines = _banner(process)
        match = BANNER.match(lines[0])
        assert match, lines
        url, port = match.group(1), int(match.group(2))
        assert port != 0
        _wait_healthy(url)
        keys_line, curl_line = lines[-2].strip(), lines[-1].strip()
        assert " keys create --database pw.db " in keys_line
        created = _shell(keys_line, tmp_path, env)
        key = re.search(r"pw_live_\S+", created)
        assert key, created
        assert "<key>" in curl_line and f"{url}/v1/payments" in curl_line
        answer = _shell(curl_line.replace("<key>", key.group(0)) + " -s", tmp_path, env)
        assert '"outcome":"allow"' in answer.replace(" ", ""), answer
    finally:
        stop_process(process)
        if process.stdout is not None:
            process.stdout.close()


def test_a_busy_port_fails_with_status_3_before_any_banner(tmp_path: Path) -> None:
    write_policy(tmp_path, POLICY)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [PAYWARDEN, "serve", "--port", str(port), "--database", "pw.db"],
            cwd=tmp_path,
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert f"error: cannot listen on 127.0.0.1:{port}: " in done.stderr
    assert "Address already in use" in done.stderr
    assert not (tmp_path / "pw.db").exists()  # nothing was opened


def test_the_banner_names_the_program_as_it_can_be_run_again(tmp_path: Path) -> None:
    script = tmp_path / "venv" / "bin" / "paywarden"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    # Not on PATH (the README's `make run`): the path it was started by, as typed.
    assert command_prefix("venv/bin/paywarden", None) == "venv/bin/paywarden"
    # On PATH, and the same program: its name is enough.
    assert command_prefix(str(script), str(script)) == "paywarden"
    # Another `paywarden` first on PATH: this one, by its path.
    other = tmp_path / "other" / "paywarden"
    assert command_prefix(str(script), str(other)) == str(script)
    with_space = tmp_path / "my dir" / "paywarden"
    assert command_prefix(str(with_space), None) == f"'{with_space}'"
