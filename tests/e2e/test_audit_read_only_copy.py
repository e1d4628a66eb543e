"""The read-only audit commands on a read-only copy of a ledger, and on a ledger in use.

Method: a real SQLite ledger written by a Warden and closed, copied into a directory; the copy
and its directory are made read-only (chmod), then `audit verify`, `audit show` and `audit
export` run through the real command. Nothing may appear beside the copy (no `-wal`, `-shm`),
whatever this process's rights (as root, chmod alone would not stop SQLite creating them). A
ledger still open in another Warden, with entries only in its `-wal`, must still be read whole.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from paywarden import PaymentIntent, Warden
from paywarden.entrypoints.cli.main import cli

POLICY = """
currency: USD
rules:
  - {id: pay, effect: allow, actions: [x402.pay]}
"""


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)


def _pay(warden: Warden, amount: str) -> str:
    intent = PaymentIntent(
        agent="agent-a",
        action="x402.pay",
        amount=amount,
        currency="USD",
        recipient="api.example.com",
    )
    return warden.authorize(intent).decision_id


@pytest.fixture
def read_only_copy(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    source = tmp_path / "live" / "pw.db"
    source.parent.mkdir()
    with Warden.open(POLICY, database=source) as warden:
        decision_id = _pay(warden, "1.00")
        _pay(warden, "2.00")
    assert not Path(f"{source}-wal").exists()  # closed cleanly
    archive = tmp_path / "archive"
    archive.mkdir()
    copy = archive / "pw.db"
    shutil.copyfile(source, copy)
    copy.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    archive.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        yield copy, decision_id
    finally:
        archive.chmod(stat.S_IRWXU)


def test_verify_show_and_export_create_nothing_beside_a_read_only_copy(
    read_only_copy: tuple[Path, str], tmp_path: Path
) -> None:
    copy, decision_id = read_only_copy
    before = sorted(os.listdir(copy.parent))
    verified = _run("audit", "verify", "--database", copy)
    assert verified.exit_code == 0, verified.output
    assert "ok: 3 entries verified" in verified.output  # policy.loaded, two decisions
    shown = _run("audit", "show", decision_id, "--database", copy)
    assert shown.exit_code == 0, shown.output
    assert decision_id in shown.output and '"amount_minor": 100' in shown.output
    out = tmp_path / "export.jsonl"
    exported = _run("audit", "export", "--database", copy, "--out", out)
    assert exported.exit_code == 0, exported.output
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [entry["seq"] for entry in lines] == [1, 2, 3]
    assert sorted(os.listdir(copy.parent)) == before == ["pw.db"]
    offline = _run("audit", "verify", "--export", out)
    assert offline.exit_code == 0, offline.output


def test_a_ledger_in_use_is_read_with_the_entries_in_its_wal(tmp_path: Path) -> None:
    database = tmp_path / "pw.db"
    with Warden.open(POLICY, database=database) as warden:
        _pay(warden, "1.00")
        assert Path(f"{database}-wal").exists()  # open: the newest pages may be only here
        latest = _pay(warden, "2.00")
        shown = _run("audit", "show", latest, "--database", database)
        assert shown.exit_code == 0, shown.output
        assert latest in shown.output
        verified = _run("audit", "verify", "--database", database)
        assert verified.exit_code == 0, verified.output
