"""The README's quick start, pasted: every command it shows, run as shown.

Method: a fresh directory that looks like a checkout after `make install` (the repository's
`.venv` and `src` linked in, nothing else). The gateway is started in the background with the
command of the Makefile's `run` target (so `make run` and the README cannot drift apart), plus
`--port 0` so that tests never fight over port 8000; the port it prints replaces 8000 in the
README's commands and the key `keys create` prints replaces `pw_live_...`. Every other line
runs through bash exactly as the README writes it; each block must exit 0 and do what the README
says it does.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from support.servers import stop_process

REPO = Path(__file__).resolve().parents[2]
BANNER = re.compile(r"paywarden gateway on http://127\.0\.0\.1:(\d+) ")


def _quick_start_blocks() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```text\n(.*?)```", section, re.DOTALL)


def _make_run_command() -> str:
    """The recipe of `make run`, with the Makefile's variables filled in."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    variables = dict(re.findall(r"^(\w+) :?= (.*)$", makefile, re.MULTILINE))
    recipe = makefile.split("\nrun: ", 1)[1].split("\n")[1].strip()
    while "$(" in recipe:  # variables may name variables: BIN := $(VENV)/bin
        recipe = re.sub(r"\$\((\w+)\)", lambda match: variables[match.group(1)], recipe)
    return recipe


def _bash(script: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", "-e", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, (script, done.stdout, done.stderr)
    return done.stdout


def _started(process: subprocess.Popen[str]) -> int:
    """The port from the banner, once the gateway answers on it."""
    assert process.stdout is not None
    port = None
    deadline = time.monotonic() + 60
    while port is None and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            pytest.fail(f"`make run`'s command exited with {process.wait()}")
        found = BANNER.match(line)
        port = int(found.group(1)) if found else None
    assert port is not None, "no banner"
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return port
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail("the gateway did not answer in 60 s")


def test_the_readme_quick_start_works_as_pasted(tmp_path: Path) -> None:
    start, pay, own_policy = _quick_start_blocks()
    assert start.split()[:2] == ["make", "run"]
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    (tmp_path / "src").symlink_to(REPO / "src")
    env = {**os.environ, "PAYWARDEN_SANDBOX_STATE": str(tmp_path / "sandbox.db")}
    env.pop("PAYWARDEN_KEY_SECRET", None)  # the README's user has none: the file beside the db
    serve = _make_run_command() + " --port 0 --no-access-log"
    assert serve.startswith(".venv/bin/paywarden serve --database paywarden.db --policy ")
    process = subprocess.Popen(
        ["bash", "-c", f"exec {serve}"],
        cwd=tmp_path,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        port = _started(process)
        create, *rest = pay.strip().splitlines()
        created = _bash(create, tmp_path, env)
        key = re.search(r"pw_live_\S+", created)
        assert key, created
        script = "\n".join(rest).replace("pw_live_...", key.group(0))
        script = script.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        assert script != "\n".join(rest)
        answer = json.loads(_bash(script, tmp_path, env))
        assert answer["decision"]["outcome"] == "allow", answer
        assert answer["payment"]["state"] == "settled"
        again = json.loads(_bash(script, tmp_path, env))  # "nothing is paid twice"
        assert again["payment"]["payment_id"] == answer["payment"]["payment_id"]
    finally:
        stop_process(process)
        if process.stdout is not None:
            process.stdout.close()
    checked = _bash(own_policy, tmp_path, env)
    assert "12/12 cases passed" in checked
    assert re.search(r"outcome:\s+allow", checked) and "api-calls-up-to-50" in checked
