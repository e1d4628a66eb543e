"""The policy in force lives in the ledger: a Warden without a policy decides with the ledger's,
every process follows a version another one records (its next decision and `ready()`), a
restart with an older file does not roll the ledger back, and `paywarden policy load|current`
upload and show it."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from paywarden import FrozenClock, Warden
from paywarden.entrypoints.cli.main import cli
from paywarden.testing import example_intent
from support.audit import entries

POLICY = """
currency: USD
rules:
  - {id: too-large, effect: deny, amount: {gt: 100}}
  - {id: pay, effect: allow, actions: ["payments.*"]}
"""
STRICTER = POLICY.replace("gt: 100", "gt: 10")


def _open(database: Path, clock: FrozenClock, policy: str | None) -> Warden:
    return Warden.open(policy, database=database, clock=clock)


def _run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)


def _kinds(database: Path) -> list[str]:
    return [entry.kind for entry in entries(database)]


def test_a_warden_without_a_policy_decides_with_the_ledgers(
    database: Path, clock: FrozenClock
) -> None:
    with _open(database, clock, None) as empty:
        assert empty.ready() and empty.ready()[0].startswith("policy:")
        assert empty.authorize(example_intent("5.00")).reason_code == "policy_missing"
    with _open(database, clock, POLICY) as first:
        version = first.policy.version if first.policy else None
    with _open(database, clock, None) as later:
        assert later.ready() == []
        assert later.policy is not None and later.policy.version == version
        assert later.authorize(example_intent("50.00")).outcome == "allow"
        assert later.authorize(example_intent("150.00")).outcome == "deny"
    assert _kinds(database).count("policy.loaded") == 1  # adopting records nothing


def test_every_process_follows_a_version_another_one_records(
    database: Path, clock: FrozenClock
) -> None:
    with _open(database, clock, POLICY) as gateway_a, _open(database, clock, None) as gateway_b:
        assert gateway_b.authorize(example_intent("50.00")).outcome == "allow"
        gateway_a.reload_policy(STRICTER, actor="admin:ops")
        stricter = gateway_a.policy.version if gateway_a.policy else None
        assert gateway_b.ready() == []  # readiness reads the ledger's version too
        assert gateway_b.policy is not None and gateway_b.policy.version == stricter
        assert gateway_b.authorize(example_intent("50.00")).outcome == "deny"


def test_a_process_started_with_an_invalid_file_is_not_ready_until_a_valid_upload(
    database: Path, clock: FrozenClock
) -> None:
    with (
        _open(database, clock, POLICY) as healthy,
        _open(database, clock, "rules: [") as broken,
    ):
        assert broken.policy is None and broken.ready()
        assert broken.authorize(example_intent("5.00")).reason_code == "policy_invalid"
        # The others keep the ledger's policy: the rejected file recorded nothing there.
        assert healthy.authorize(example_intent("5.00")).outcome == "allow"
        healthy.reload_policy(STRICTER, actor="admin:ops")
        assert broken.ready() == []
        assert broken.authorize(example_intent("5.00")).outcome == "allow"
    kinds = _kinds(database)
    assert kinds.count("policy.rejected") == 1 and kinds.count("policy.loaded") == 2


def test_policy_load_and_current_upload_and_show_the_ledgers_policy(
    database: Path, clock: FrozenClock, tmp_path: Path
) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(POLICY)
    bad.write_text("currency: USD\nrules:\n  - {id: x, effect: maybe}\n")
    assert _run("policy", "current", "--database", tmp_path / "none.db").exit_code == 2
    with _open(database, clock, None):
        pass  # an empty ledger
    assert _run("policy", "current", "--database", database).exit_code == 1
    loaded = _run("policy", "load", "--database", database, "--actor", "ops", good)
    assert loaded.exit_code == 0, loaded.output
    assert loaded.output.startswith("policy in force: version sha256:")
    shown = _run("policy", "current", "--database", database, "--json")
    current = json.loads(shown.output)
    assert current["text"] == POLICY and current["version"] in loaded.output
    refused = _run("policy", "load", "--database", database, "--actor", "ops", bad)
    assert refused.exit_code == 1
    assert f"{bad}:3:" in refused.output and "unchanged" in refused.output
    assert json.loads(_run("policy", "current", "--database", database, "--json").output) == current
    assert _kinds(database)[-2:] == ["policy.loaded", "policy.rejected"]
    with _open(database, clock, None) as warden:
        assert warden.authorize(example_intent("50.00")).outcome == "allow"
