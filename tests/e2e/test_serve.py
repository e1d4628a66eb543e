"""`paywarden serve` for real: a uvicorn subprocess on a free loopback port.

Method: create an agent key with the `paywarden keys` CLI, start `paywarden serve` on the same
SQLite file, wait for `/healthz`, then pay and read the payment back over HTTP. A second test
starts two worker processes and fires one Idempotency-Key from many threads at once: exactly
one payment must exist afterwards, whichever process took each request.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

from paywarden import Warden
from support.policies import write_policy
from support.servers import serve_process

PAYWARDEN = str(Path(sys.executable).with_name("paywarden"))
POLICY = """
currency: USD
rules:
  - {id: small, effect: allow, actions: ["payments.*"], amount: {lte: 100}}
budgets:
  - {id: daily, limit: 100000, window: day}
"""
BODY = {
    "action": "payments.transfer",
    "amount": "25.00",
    "currency": "USD",
    "recipient": "vendor.example.com",
}


def _cli(*args: str) -> str:
    done = subprocess.run(
        [PAYWARDEN, *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@contextmanager
def _serve(tmp_path: Path, *extra: str) -> Iterator[tuple[str, list[str]]]:
    """Run the gateway; yields its URL and a list that holds its output once it stopped."""
    policy = write_policy(tmp_path, POLICY)
    with serve_process(
        tmp_path, policy, "--no-access-log", "--log-level", "warning", *extra
    ) as served:
        yield served


def _agent_key(tmp_path: Path) -> str:
    out = _cli(
        "keys", "create", "--database", str(tmp_path / "pw.db"), "--role", "agent",
        "--agent", "agent-a", "--json",
    )  # fmt: skip
    key: str = json.loads(out)["key"]
    return key


def test_serve_pay_and_read_back(tmp_path: Path) -> None:
    key = _agent_key(tmp_path)
    with _serve(tmp_path) as (url, _), httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/readyz").json()["status"] == "ready"
        assert client.get("/v1/payments").status_code == 401
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "e2e-1"}
        paid = client.post("/v1/payments", json=BODY, headers=headers)
        assert paid.status_code == 200, paid.text
        payment = paid.json()["payment"]
        assert payment["state"] == "settled" and payment["agent"] == "agent-a"
        read = client.get(f"/v1/payments/{payment['payment_id']}", headers=headers)
        assert read.status_code == 200
        assert read.json() == payment
    listed = json.loads(_cli("keys", "list", "--database", str(tmp_path / "pw.db"), "--json"))
    assert [row["agent"] for row in listed] == ["agent-a"]


def test_the_banner_says_where_and_how_to_get_a_key(tmp_path: Path) -> None:
    with _serve(tmp_path) as (url, output):
        pass
    assert f"paywarden gateway on {url}" in output[0]
    assert "paywarden keys create --database" in output[0]
    assert "policy:  " in output[0] and "NOT READY" not in output[0]


def test_a_bad_setting_refuses_to_start() -> None:
    done = subprocess.run(
        [PAYWARDEN, "serve", "--port", "70000"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "setting `port`" in done.stderr


def test_two_workers_pay_one_key_exactly_once(tmp_path: Path) -> None:
    key = _agent_key(tmp_path)
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "race-1"}
    with _serve(tmp_path, "--workers", "2") as (url, _):

        def pay(_: int) -> int:
            with httpx.Client(base_url=url, timeout=30) as client:
                return client.post("/v1/payments", json=BODY, headers=headers).status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            statuses = list(pool.map(pay, range(32)))
    assert set(statuses) <= {200, 409}, statuses
    assert 200 in statuses
    with Warden.open(None, database=tmp_path / "pw.db") as warden:
        payments = warden.payments()
    assert len(payments) == 1 and payments[0].state == "settled"
