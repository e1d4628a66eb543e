"""Two real `paywarden serve` processes on one PostgreSQL database, as two hosts behind a load
balancer would be, both deciding with the policy the database keeps (no policy file given):
twenty 40.00 USD payments of one agent against an hourly 200.00 USD budget, sent to both
gateways at once, pay exactly five; the audit log is one chain that verifies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from paywarden.adapters.storage.postgres_audit import verify_database
from support.servers import free_port, stop_process

POLICY = Path(__file__).parents[1] / "data" / "policies" / "pay_200_an_hour_per_agent.yaml"
PAYMENTS = 20

pytestmark = pytest.mark.slow


def _paywarden(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paywarden.entrypoints.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )


def _wait_ready(url: str, process: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"a gateway exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2):
                return  # 200: the database's policy is in force here
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    pytest.fail(f"{url} never became ready")


def _pay(url: str, key: str, number: int) -> dict[str, Any]:
    body = json.dumps(
        {
            "action": "payments.transfer",
            "amount": "40.00",
            "currency": "USD",
            "recipient": "vendor.example.com",
            "purpose": f"payment {number}",
        }
    ).encode()
    request = urllib.request.Request(
        f"{url}/v1/payments",
        data=body,
        method="POST",
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Idempotency-Key": f"order-{number}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return dict(json.load(response))
    except urllib.error.HTTPError as error:
        return dict(json.load(error))


def test_two_gateways_on_one_database_pay_exactly_what_the_budget_allows(
    pg_database: str, key_secret: str, tmp_path: Path
) -> None:
    env = {**os.environ, "PAYWARDEN_KEY_SECRET": key_secret}
    created = _paywarden(
        "keys", "create", "--database", pg_database, "--role", "agent", "--agent", "buyer", env=env
    )
    key = next(line.split()[1] for line in created.stdout.splitlines() if line.startswith("key:"))
    # The policy lives in the database: uploaded once, and neither gateway is given a file.
    loaded = _paywarden(
        "policy", "load", "--database", pg_database, "--actor", "ops", str(POLICY), env=env
    )
    assert loaded.stdout.startswith("policy in force: version sha256:")
    gateways = []
    logs = [(tmp_path / f"gateway-{number}.log").open("w") for number in range(2)]
    for log in logs:
        port = free_port()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "paywarden.entrypoints.cli.main",
                "serve",
                "--database",
                pg_database,
                "--port",
                str(port),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        gateways.append((f"http://127.0.0.1:{port}", process))
    try:
        for url, process in gateways:
            _wait_ready(url, process)
        results: list[dict[str, Any]] = []
        lock = threading.Lock()

        def send(number: int) -> None:
            answer = _pay(gateways[number % 2][0], key, number)
            with lock:
                results.append(answer)

        threads = [threading.Thread(target=send, args=(n,)) for n in range(PAYMENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        for _, process in gateways:
            stop_process(process)
        for log in logs:
            log.close()
    assert len(results) == PAYMENTS
    settled = [r for r in results if r.get("state") == "settled"]
    assert len(settled) == 5  # 5 x 40.00 = the hourly 200.00
    denied = [r for r in results if r.get("decision", {}).get("reason_code") == "budget_exceeded"]
    assert len(denied) == PAYMENTS - 5, results
    result = verify_database(pg_database)
    assert result.ok, result.describe()
