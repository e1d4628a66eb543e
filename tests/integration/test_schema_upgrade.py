"""A ledger written before the compact audit form (schema version 7) keeps working.

The file is built by hand exactly as version 7 stored it (every migration up to 7, hashes as
64 hex digits and bodies as canonical JSON text, a decision row with its idempotency key), then:
- the read-only audit commands read, verify and export it without migrating it;
- opening it migrates it to the current version; the old entries verify unchanged, new
  entries chain onto them, and the old idempotency key still replays its decision.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from click.testing import CliRunner

from paywarden import FrozenClock, Warden
from paywarden.adapters.storage.sqlite_audit import iter_audit_readonly, verify_file
from paywarden.adapters.storage.sqlite_schema import MIGRATIONS, SCHEMA_VERSION, statements
from paywarden.audit.canonical import canonical_text
from paywarden.audit.chain import AuditEntry, link
from paywarden.entrypoints.cli.main import cli
from paywarden.testing import example_intent

POLICY = """
currency: USD
rules:
  - {id: pay-vendors, effect: allow, actions: ["payments.*"]}
"""
LEGACY_VERSION = 7
T0_US = 1_767_225_600_000_000


def _legacy_ledger(path: Path) -> list[AuditEntry]:
    """A version-7 file with two audit entries and one decision under an idempotency key."""
    decision_body = canonical_text(
        {
            "actor": "agent:legacy-agent",
            "decision": {"decision_id": "dec_legacy", "outcome": "deny", "reason": "old"},
        }
    )
    first = link(None, T0_US, "operator.added", "op_1", canonical_text({"actor": "admin"}))
    second = link(first, T0_US + 1, "decision", "dec_legacy", decision_body)
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
        " applied_us INTEGER NOT NULL) STRICT"
    )
    for version, sql in MIGRATIONS:
        if version <= LEGACY_VERSION:
            for statement in statements(sql):
                connection.execute(statement)
            connection.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, T0_US))
    for entry in (first, second):
        connection.execute(
            "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?)",
            (entry.seq, entry.created_us, entry.kind, entry.ref_id, entry.parent_hash,
             entry.entry_hash, entry.body),
        )  # fmt: skip
    connection.execute(
        "INSERT INTO decisions (decision_id, created_us, agent, action, amount_minor, currency,"
        " recipient, outcome, reason_code, idempotency_key, fingerprint, hold_id,"
        " policy_version, audit_seq) VALUES ('dec_legacy', ?, 'legacy-agent',"
        " 'payments.transfer', 100, 'USD', 'vendor.example', 'deny', 'rule_denied',"
        " 'key-1', 'fp-legacy', NULL, 'sha256:old', 2)",
        (T0_US,),
    )
    connection.close()
    return [first, second]


def _version(path: Path) -> int:
    connection = sqlite3.connect(path)
    try:
        return int(connection.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0])
    finally:
        connection.close()


def test_the_audit_commands_read_a_legacy_ledger_without_migrating_it(tmp_path: Path) -> None:
    database = tmp_path / "legacy.db"
    written = _legacy_ledger(database)
    assert list(iter_audit_readonly(database)) == written
    result = verify_file(database)
    assert (result.ok, result.entries_checked) == (True, 2), result.describe()
    runner = CliRunner()
    verified = runner.invoke(cli, ["audit", "verify", "--database", str(database)])
    assert verified.exit_code == 0, verified.output
    exported = runner.invoke(cli, ["audit", "export", "--database", str(database)])
    assert exported.exit_code == 0, exported.output
    lines = [json.loads(line) for line in exported.output.splitlines() if line.strip()]
    assert [(line["seq"], line["entry_hash"]) for line in lines] == [
        (entry.seq, entry.entry_hash) for entry in written
    ]
    shown = runner.invoke(cli, ["audit", "show", "dec_legacy", "--database", str(database)])
    assert shown.exit_code == 0 and f"hash {written[1].entry_hash[:16]}" in shown.output
    assert _version(database) == LEGACY_VERSION  # read-only: nothing migrated


def test_opening_a_legacy_ledger_migrates_it_and_keeps_its_chain_and_keys(
    tmp_path: Path,
) -> None:
    database = tmp_path / "legacy.db"
    written = _legacy_ledger(database)
    clock = FrozenClock("2026-06-01T12:00:00Z")
    with Warden.open(POLICY, database=database, clock=clock) as warden:
        assert _version(database) == SCHEMA_VERSION
        assert warden.audit_entries(0, 2) == written  # decoded back to the hashed form
        new = warden.authorize(example_intent(agent="fresh-agent", amount="5.00"))
        assert new.outcome == "allow"
        stored = sqlite3.connect(database).execute(
            "SELECT agent, idempotency_key, decision_id, fingerprint FROM decision_keys"
        )
        assert stored.fetchall() == [("legacy-agent", "key-1", "dec_legacy", "fp-legacy")]
    result = verify_file(database)
    assert result.ok and result.entries_checked > len(written), result.describe()
    entries = list(iter_audit_readonly(database))
    assert entries[: len(written)] == written
    assert entries[len(written)].parent_hash == written[-1].entry_hash
