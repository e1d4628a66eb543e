"""Shared set-up for the REST tests: a gateway app in process on a SQLite file, with a sandbox
rail that counts money movements, two agents, two operators and an admin, each with a key."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi.testclient import TestClient

from paywarden import FrozenClock, Warden
from paywarden.adapters.rails.sandbox import SandboxRail
from paywarden.entrypoints.rest import Settings, create_app
from support.policies import write_policy
from support.wardens import no_sleep

POLICY = """
currency: USD
rules:
  - {id: small, effect: allow, actions: ["payments.*"], amount: {lte: 100}}
  - {id: large, effect: require_approval, actions: ["payments.*"], amount: {gt: 100, lte: 5000}}
budgets:
  - {id: daily, limit: 100000, window: day}
  - {id: per-agent, limit: 50000, window: day, scope: agent}
"""
KEY_SECRET = b"k" * 32


@dataclass
class Gateway:
    """The app's client and the Warden behind it, with one key per role."""

    client: TestClient
    warden: Warden
    rail: SandboxRail
    clock: FrozenClock
    database: Path
    keys: dict[str, str] = field(default_factory=dict)

    def auth(self, who: str, **headers: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}", **headers}


def gateway_warden(database: Path, clock: FrozenClock, rail: SandboxRail, policy: str) -> Warden:
    """The Warden behind a gateway: the sandbox rail given, no real sleeping, the test key
    secret."""
    warden = Warden.open(
        policy, database=database, clock=clock, rails={"sandbox": rail}, sleep=no_sleep
    )
    warden.use_key_secret(KEY_SECRET)
    return warden


def make_keys(warden: Warden) -> dict[str, str]:
    warden.add_operator("alice", name="Alice")
    warden.add_operator("bob", name="Bob")
    return {
        "agent-a": warden.create_key(role="agent", agent="agent-a", actor="test")[0],
        "agent-b": warden.create_key(role="agent", agent="agent-b", actor="test")[0],
        "operator": warden.create_key(role="operator", operator="alice", actor="test")[0],
        "operator-bob": warden.create_key(role="operator", operator="bob", actor="test")[0],
        "admin": warden.create_key(role="admin", actor="test")[0],
    }


@contextmanager
def open_gateway(tmp_path: Path, policy_text: str = POLICY) -> Iterator[Gateway]:
    """The gateway for one test, on `policy_text` (by default POLICY); the `gateway` fixture
    of tests/integration/conftest.py is this with POLICY."""
    clock = FrozenClock()
    rail = SandboxRail(sleep=no_sleep)
    database = tmp_path / "gateway.db"
    policy = write_policy(tmp_path, policy_text)
    warden = gateway_warden(database, clock, rail, policy_text)
    keys = make_keys(warden)
    settings = Settings(database=str(database), policy=str(policy), policy_poll_seconds=0)
    try:
        with TestClient(create_app(settings, warden=warden)) as client:
            yield Gateway(client, warden, rail, clock, database, keys)
    finally:
        warden.close()
