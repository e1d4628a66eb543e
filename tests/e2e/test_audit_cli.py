"""`paywarden audit keygen|checkpoint|verify|show|export`, end to end (catalog AU-01, AU-04,
AU-08 through the command line).

Exit status of `verify`: 0 when the log is intact, 1 when it is broken or the checkpoint does not
verify, 2 for usage errors. Every audit command opens the database read-only: the file's bytes,
its modification time, SQLite's `data_version` and the row counts are unchanged afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from paywarden import FrozenClock, Warden
from paywarden.adapters.storage.sqlite_audit import iter_audit_readonly
from paywarden.audit.chain import AuditEntry
from paywarden.audit.checkpoint import (
    check_signature,
    generate_key,
    key_id,
    load_public_key,
    parse,
)
from paywarden.entrypoints.cli.main import cli
from paywarden.testing import example_intent
from support.ledger_file import tampered_copy

PAYWARDEN = Path(sys.executable).with_name("paywarden")
POLICY = """
currency: USD
rules:
  - id: deny-big
    effect: deny
    amount: {gt: 900}
  - id: allow-payments
    effect: allow
    actions: ["payments.*"]
"""


@dataclass(frozen=True)
class Ledger:
    directory: Path
    database: Path
    key: Path
    public: Path
    allowed_id: str
    denied_id: str
    hold_id: str
    entries: list[AuditEntry]


def _write_log(warden: Warden, clock: FrozenClock) -> tuple[str, str, str]:
    allowed = denied = ""
    hold_id = ""
    for index in range(8):
        clock.advance(5)
        amount = "950.00" if index % 4 == 3 else "20.00"
        decision = warden.authorize(
            example_intent(amount, agent="agent-1", purpose=f"Zoë café #{index}")
        )
        if decision.hold_id is not None:
            if index % 2:
                warden.void(decision.hold_id)
            elif not allowed:
                allowed, hold_id = str(decision.decision_id), decision.hold_id
                warden.capture(hold_id, "5.00")
        elif not denied:
            denied = str(decision.decision_id)
    return allowed, denied, hold_id


@pytest.fixture
def ledger(tmp_path: Path, database: Path) -> Ledger:
    key, public = tmp_path / "audit.key", tmp_path / "audit.pub"
    generate_key(key, public)
    clock = FrozenClock("2026-03-10T15:00:00+00:00")
    with Warden.open(POLICY, database=database, clock=clock) as warden:
        allowed, denied, hold_id = _write_log(warden, clock)
    assert allowed and denied and hold_id
    entries = list(iter_audit_readonly(database))
    assert len(entries) >= 10
    return Ledger(tmp_path, database, key, public, allowed, denied, hold_id, entries)


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, ["audit", *map(str, args)])


def checkpoint(ledger: Ledger, database: Path | None = None) -> Path:
    """Take a checkpoint with the CLI and store it in a file; the file's path."""
    result = run("checkpoint", "--database", database or ledger.database, "--key", ledger.key)
    assert result.exit_code == 0, result.output
    path = ledger.directory / f"checkpoint-{len(list(ledger.directory.glob('*.json')))}.json"
    path.write_text(result.stdout)
    return path


def tampered(ledger: Ledger, name: str, *statements: str) -> Path:
    return tampered_copy(ledger.database, ledger.directory / name, *statements)


def verify_against(ledger: Ledger, path: Path, *extra: str, database: Path | None = None) -> Result:
    """`paywarden audit verify` of `database` (the ledger's by default) against the signed
    checkpoint in `path` and the ledger's public key."""
    return run(
        "verify",
        "--database",
        database or ledger.database,
        "--checkpoint",
        path,
        "--public-key",
        ledger.public,
        *extra,
    )


# keygen -----------------------------------------------------------------------------------------


def test_keygen_creates_a_private_and_a_public_key_and_refuses_to_overwrite(
    tmp_path: Path,
) -> None:
    private = tmp_path / "signing.key"
    result = run("keygen", "--out", private)
    assert result.exit_code == 0, result.output
    public = tmp_path / "signing.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert f"key id {key_id(load_public_key(public))}" in result.stdout
    before = (private.read_bytes(), public.read_bytes())
    again = run("keygen", "--out", private)
    assert again.exit_code == 2
    assert "refusing to overwrite" in again.stderr
    assert (private.read_bytes(), public.read_bytes()) == before
    # A public key alone in the way is refused too, and nothing is written.
    other = tmp_path / "other.key"
    assert run("keygen", "--out", other, "--public-out", public).exit_code == 2
    assert not other.exists()
    assert public.read_bytes() == before[1]


# checkpoint -------------------------------------------------------------------------------------


def test_checkpoint_prints_a_signed_json_checkpoint_of_the_head(ledger: Ledger) -> None:
    directory = ledger.directory / "checkpoints"
    result = run(
        "checkpoint",
        "--database",
        ledger.database,
        "--key",
        ledger.key,
        "--dir",
        directory,
        "--origin",
        "treasury",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"origin", "seq", "head_hash", "time_us", "key_id", "signature"}
    signed = parse(result.stdout)
    verified = check_signature(signed, load_public_key(ledger.public))
    head = ledger.entries[-1]
    assert (verified.origin, verified.seq, verified.head_hash) == (
        "treasury",
        head.seq,
        head.entry_hash,
    )
    written = directory / f"checkpoint-{head.seq:012d}.json"
    assert parse(written.read_text()) == signed


def test_checkpoint_needs_a_private_key_and_a_database(ledger: Ledger) -> None:
    wrong_key = run("checkpoint", "--database", ledger.database, "--key", ledger.public)
    assert wrong_key.exit_code == 2
    assert "cannot read signing key" in wrong_key.stderr
    missing = run("checkpoint", "--database", ledger.directory / "none.db", "--key", ledger.key)
    assert missing.exit_code == 2
    assert "no ledger" in missing.stderr
    assert not (ledger.directory / "none.db").exists()


# verify -----------------------------------------------------------------------------------------


def test_verify_reports_an_intact_log_with_status_0(ledger: Ledger) -> None:
    count = len(ledger.entries)
    plain = run("verify", "--database", ledger.database)
    assert plain.exit_code == 0, plain.output
    assert f"ok: {count} entries verified" in plain.stdout
    assert "tail truncation cannot be ruled out" in plain.stdout
    path = checkpoint(ledger)
    anchored = verify_against(ledger, path)
    assert anchored.exit_code == 0, anchored.output
    assert f"checkpoint at seq {count} matches" in anchored.stdout
    as_json = verify_against(ledger, path, "--json")
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout) == {
        "ok": True,
        "entries_checked": count,
        "head_seq": count,
        "head_hash": ledger.entries[-1].entry_hash,
        "first_bad_seq": None,
        "reason": None,
        "checkpoint_seq": count,
    }


def test_verify_uses_the_latest_checkpoint_in_a_directory(ledger: Ledger) -> None:
    directory = ledger.directory / "checkpoints"
    truncated = tampered(ledger, "older.db", "DELETE FROM audit_log WHERE seq > 5")
    for database in (truncated, ledger.database):
        result = run("checkpoint", "--database", database, "--key", ledger.key, "--dir", directory)
        assert result.exit_code == 0, result.output
    assert len(list(directory.iterdir())) == 2
    args: list[str | Path] = ["--checkpoint-dir", directory, "--public-key", ledger.public]
    current = run("verify", "--database", ledger.database, *args)
    assert current.exit_code == 0, current.output
    assert f"checkpoint at seq {len(ledger.entries)} matches" in current.stdout
    # AU-08: the older copy (a restored backup) is behind the latest checkpoint.
    restored = run("verify", "--database", truncated, *args)
    assert restored.exit_code == 1
    assert "broken at seq 6: log ends at seq 5" in restored.stdout


def test_verify_reports_the_first_broken_seq_with_status_1(ledger: Ledger) -> None:
    edited = tampered(
        ledger, "edited.db", "UPDATE audit_log SET created_us = created_us + 1 WHERE seq = 4"
    )
    result = run("verify", "--database", edited)
    assert result.exit_code == 1
    assert "broken at seq 4: entry hash does not match its contents" in result.stdout
    as_json = json.loads(run("verify", "--database", edited, "--json").stdout)
    assert (as_json["ok"], as_json["first_bad_seq"], as_json["head_seq"]) == (False, 4, 3)
    assert as_json["head_hash"] == ledger.entries[2].entry_hash
    deleted = tampered(ledger, "deleted.db", "DELETE FROM audit_log WHERE seq = 2")
    gap = run("verify", "--database", deleted)
    assert (gap.exit_code, gap.stdout.splitlines()[0]) == (
        1,
        "broken at seq 3: sequence jumps from 1 to 3 (entries deleted)",
    )


def test_a_truncated_tail_is_only_caught_with_a_checkpoint(ledger: Ledger) -> None:
    path = checkpoint(ledger)
    last = len(ledger.entries)
    truncated = tampered(ledger, "truncated.db", f"DELETE FROM audit_log WHERE seq = {last}")
    assert run("verify", "--database", truncated).exit_code == 0  # documented limit
    result = verify_against(ledger, path, database=truncated)
    assert result.exit_code == 1
    assert f"log ends at seq {last - 1} but the signed checkpoint covers seq {last}" in (
        result.stdout
    )


def test_a_checkpoint_signed_by_another_key_or_tampered_is_rejected_with_status_1(
    ledger: Ledger,
) -> None:
    other_key, other_public = ledger.directory / "other.key", ledger.directory / "other.pub"
    generate_key(other_key, other_public)
    foreign = run("checkpoint", "--database", ledger.database, "--key", other_key)
    foreign_path = ledger.directory / "foreign.json"
    foreign_path.write_text(foreign.stdout)
    result = verify_against(ledger, foreign_path)
    assert result.exit_code == 1
    assert "not by the trusted key" in result.stderr
    data = json.loads(checkpoint(ledger).read_text())
    signature = data["signature"]
    data["signature"] = signature[:20] + ("A" if signature[20] != "A" else "B") + signature[21:]
    forged_path = ledger.directory / "forged.json"
    forged_path.write_text(json.dumps(data))
    forged = verify_against(ledger, forged_path)
    assert forged.exit_code == 1
    assert "signature does not verify" in forged.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checkpoint", "{cp}"], "--public-key is required"),
        (["--database", "{dir}/missing.db"], "no ledger"),
        (["--checkpoint-dir", "{dir}/empty", "--public-key", "{pub}"], "no checkpoint in"),
        (["--checkpoint", "{dir}/missing.json", "--public-key", "{pub}"], "cannot read"),
        (["--export", "{dir}/missing.jsonl"], "cannot read"),
        (["--no-such-option"], "No such option"),
    ],
)
def test_verify_usage_errors_exit_2(ledger: Ledger, args: list[str], message: str) -> None:
    (ledger.directory / "empty").mkdir()
    values = {"cp": checkpoint(ledger), "dir": ledger.directory, "pub": ledger.public}
    filled = [arg.format(**values) for arg in args]
    if "--database" not in filled:
        filled += ["--database", str(ledger.database)]
    result = run("verify", *filled)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not (ledger.directory / "missing.db").exists()


def test_a_missing_public_key_file_is_a_usage_error(ledger: Ledger) -> None:
    result = run(
        "verify",
        "--database",
        ledger.database,
        "--checkpoint",
        checkpoint(ledger),
        "--public-key",
        ledger.directory / "missing.pub",
    )
    assert result.exit_code == 2


def test_a_body_that_is_not_utf8_is_a_broken_log(ledger: Ledger) -> None:
    edited = tampered(ledger, "bytes.db", "UPDATE audit_log SET body = X'7BFF7D' WHERE seq = 3")
    result = run("verify", "--database", edited)
    assert result.exit_code == 1
    assert "broken at seq 3" in result.stdout


def test_a_log_with_a_non_utf8_body_exports_and_fails_offline_verification(
    ledger: Ledger,
) -> None:
    edited = tampered(ledger, "bytes.db", "UPDATE audit_log SET body = X'7BFF7D' WHERE seq = 3")
    export = ledger.directory / "bytes.jsonl"
    result = run("export", "--database", edited, "--out", export)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0
    assert len(export.read_text(encoding="utf-8").splitlines()) == len(ledger.entries)
    offline = run("verify", "--export", export)
    assert offline.exit_code == 1
    assert "broken at seq 3" in offline.stdout


@pytest.mark.parametrize("name", ["audits #1", "what?mode=rwc", "100%25 sure"])
def test_verify_reads_a_database_whose_path_needs_quoting(ledger: Ledger, name: str) -> None:
    """An unquoted `#` or `?` would cut the `file:` URI short and open another file."""
    directory = ledger.directory / name
    directory.mkdir()
    database = directory / "ledger.db"
    database.write_bytes(ledger.database.read_bytes())
    before = sorted(path.name for path in ledger.directory.iterdir())
    result = run("verify", "--database", database)
    stray = sorted({path.name for path in ledger.directory.iterdir()} - set(before))
    assert (result.exit_code, stray) == (0, [])
    assert f"ok: {len(ledger.entries)} entries verified" in result.stdout


# Verification never writes ----------------------------------------------------------------------


def _fingerprint(database: Path) -> tuple[str, int]:
    return hashlib.sha256(database.read_bytes()).hexdigest(), database.stat().st_mtime_ns


def _row_counts(db: sqlite3.Connection) -> dict[str, int]:
    tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    return {table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in tables}


@pytest.fixture
def watcher(ledger: Ledger) -> Iterator[sqlite3.Connection]:
    """A connection held open across the command: its `data_version` moves on any commit."""
    with closing(sqlite3.connect(ledger.database, isolation_level=None)) as db:
        yield db


def test_the_audit_commands_never_write_the_database(
    ledger: Ledger, watcher: sqlite3.Connection
) -> None:
    path = checkpoint(ledger)
    before = _fingerprint(ledger.database)
    version = watcher.execute("PRAGMA data_version").fetchone()[0]
    counts = _row_counts(watcher)
    export = ledger.directory / "log.jsonl"
    commands: list[list[str | Path]] = [
        ["verify", "--database", ledger.database],
        [
            "verify",
            "--database",
            ledger.database,
            "--checkpoint",
            path,
            "--public-key",
            ledger.public,
        ],
        ["show", ledger.allowed_id, "--database", ledger.database],
        ["export", "--database", ledger.database, "--out", export],
        ["checkpoint", "--database", ledger.database, "--key", ledger.key],
    ]
    for command in commands:
        completed = subprocess.run(
            [str(PAYWARDEN), "audit", *map(str, command)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
    assert _fingerprint(ledger.database) == before
    assert watcher.execute("PRAGMA data_version").fetchone()[0] == version
    assert _row_counts(watcher) == counts


def test_verify_while_a_warden_is_writing_changes_nothing(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a live Warden the newest entries sit in the WAL; verify reads them, writes none."""
    clock = FrozenClock("2026-03-10T16:00:00+00:00")
    with Warden.open(POLICY, database=ledger.database, clock=clock) as warden:
        _write_log(warden, clock)
        wal = Path(f"{ledger.database}-wal")
        assert wal.stat().st_size > 0
        files = {path: path.read_bytes() for path in (ledger.database, wal)}
        result = run("verify", "--database", ledger.database, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["head_seq"] == warden.verify_audit().head_seq
        assert json.loads(result.stdout)["head_seq"] > len(ledger.entries)
        assert {path: path.read_bytes() for path in files} == files


def test_every_audit_command_opens_the_database_read_only(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[tuple[Any, ...]] = []
    connect = sqlite3.connect

    def spy(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened.append((args, kwargs))
        connection: sqlite3.Connection = connect(*args, **kwargs)
        return connection

    monkeypatch.setattr(sqlite3, "connect", spy)
    commands: list[list[str | Path]] = [
        ["verify", "--database", ledger.database],
        ["show", ledger.allowed_id, "--database", ledger.database],
        ["export", "--database", ledger.database, "--out", ledger.directory / "log.jsonl"],
        ["checkpoint", "--database", ledger.database, "--key", ledger.key],
    ]
    for command in commands:
        before = len(opened)
        assert run(*command).exit_code == 0
        assert len(opened) > before, f"{command[0]} opened no connection the spy saw"
    for args, kwargs in opened:
        assert kwargs.get("uri") is True
        assert str(args[0]).startswith("file:") and str(args[0]).endswith("?mode=ro")


# show -------------------------------------------------------------------------------------------


def test_show_prints_the_entry_and_proof_trace_of_a_decision(ledger: Ledger) -> None:
    result = run("show", ledger.allowed_id, "--database", ledger.database)
    assert result.exit_code == 0, result.output
    entry = next(entry for entry in ledger.entries if entry.ref_id == ledger.allowed_id)
    header, _, rest = result.stdout.partition("\n")
    assert header == f"seq {entry.seq}  decision  hash {entry.entry_hash[:16]}"
    recorded, expanded_header, expanded = rest.partition("trace with every rule of policy ")
    body = json.loads(recorded)
    assert body == json.loads(entry.body)  # the entry exactly as recorded (and hashed)
    decision = body["decision"]
    assert (decision["decision_id"], decision["outcome"], decision["reason_code"]) == (
        ledger.allowed_id,
        "allow",
        "allowed",
    )
    # The entry lists the rule that matched and counts the other; `show` expands the whole
    # trace from the policy version's text kept in the ledger.
    recorded_trace = decision["trace"]
    assert [rule["rule_id"] for rule in recorded_trace["rules"]] == ["allow-payments"]
    assert recorded_trace["rules_not_listed"] == 1
    version, _, trace_text = expanded.partition(":\n")
    assert expanded_header and version == decision["policy_version"]
    trace = json.loads(trace_text)
    assert [rule["rule_id"] for rule in trace["rules"]] == ["deny-big", "allow-payments"]
    assert [rule["matched"] for rule in trace["rules"]] == [False, True]
    assert "rules_not_listed" not in trace
    assert trace["policy_version"] == decision["policy_version"]
    assert {k: v for k, v in trace.items() if k != "rules"} == {
        k: v for k, v in recorded_trace.items() if k not in ("rules", "rules_not_listed")
    }
    assert body["intent"]["purpose"].startswith("Zoë café")


def test_show_prints_a_denial_and_the_changes_of_a_hold(ledger: Ledger) -> None:
    denied = run("show", ledger.denied_id, "--database", ledger.database)
    assert denied.exit_code == 0
    assert '"outcome": "deny"' in denied.stdout
    assert '"rule_ids": [\n      "deny-big"\n    ]' in denied.stdout
    hold = run("show", ledger.hold_id, "--database", ledger.database)
    assert hold.exit_code == 0
    assert " hold.captured " in hold.stdout
    assert json.loads(hold.stdout.partition("\n")[2])["captured_minor"] == 500
    unknown = run("show", "dec_unknown", "--database", ledger.database)
    assert unknown.exit_code == 1
    assert "no audit entry for `dec_unknown`" in unknown.stderr


# export and offline verification ----------------------------------------------------------------


def test_export_writes_every_entry_and_verifies_offline(ledger: Ledger) -> None:
    export = ledger.directory / "log.jsonl"
    assert run("export", "--database", ledger.database, "--out", export).exit_code == 0
    lines = export.read_text(encoding="utf-8").splitlines()
    assert [AuditEntry(**json.loads(line)) for line in lines] == ledger.entries
    to_stdout = run("export", "--database", ledger.database)
    assert to_stdout.stdout.splitlines() == lines
    path = checkpoint(ledger)
    args: list[str | Path] = ["--checkpoint", path, "--public-key", ledger.public]
    offline = run("verify", "--export", export, *args)
    assert offline.exit_code == 0, offline.output
    assert f"ok: {len(lines)} entries verified" in offline.stdout
    # The export needs no database at all.
    os.remove(ledger.database)
    assert run("verify", "--export", export, "--database", ledger.database).exit_code == 0


def test_a_tampered_or_truncated_export_fails_offline(ledger: Ledger) -> None:
    export = ledger.directory / "log.jsonl"
    assert run("export", "--database", ledger.database, "--out", export).exit_code == 0
    lines = export.read_text(encoding="utf-8").splitlines()
    path = checkpoint(ledger)
    anchor: list[str | Path] = ["--checkpoint", path, "--public-key", ledger.public]

    def verify_lines(name: str, new_lines: list[str], *extra: str | Path) -> Result:
        target = ledger.directory / name
        target.write_text("".join(line + "\n" for line in new_lines), encoding="utf-8")
        return run("verify", "--export", target, *extra)

    row = json.loads(lines[4])
    row["body"] = row["body"].replace("agent-1", "agent-2")
    edited = verify_lines("edited.jsonl", [*lines[:4], json.dumps(row), *lines[5:]])
    assert edited.exit_code == 1
    assert f"broken at seq {row['seq']}: entry hash does not match" in edited.stdout
    swapped = verify_lines("swapped.jsonl", [*lines[:2], lines[3], lines[2], *lines[4:]])
    assert swapped.exit_code == 1
    assert "broken at seq 4: sequence jumps from 2 to 4" in swapped.stdout
    short = lines[:-2]
    assert verify_lines("short.jsonl", short).exit_code == 0  # documented limit
    truncated = verify_lines("short.jsonl", short, *anchor)
    assert truncated.exit_code == 1
    assert "entries deleted from the tail" in truncated.stdout
    malformed = verify_lines("malformed.jsonl", [*lines[:3], "{not json", *lines[3:]])
    assert malformed.exit_code == 1
    assert "malformed export line" in malformed.stderr
