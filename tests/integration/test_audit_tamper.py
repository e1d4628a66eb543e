"""Tamper matrix over a generated audit log (catalog AU-01 to AU-04 and AU-08).

A Warden writes a 200-entry log to a file: decisions (allow, deny, require approval, replays),
full and partial captures, voids, expiries, a policy change, secrets to redact and a clock that
jumps back. Two checkpoints are signed with an Ed25519 key kept outside the database: C1 at
seq 100 and C2 at seq 200, and a backup of the file is taken at seq 150.

Every case then plays an attacker who can write the database but does not hold the signing
key: it copies the file, drops the append-only triggers, changes it through raw SQL (and, where
it says so, recomputes the SHA-256 links, which needs no key) and checks what
`verify(iter_audit_readonly(copy))` reports without and with a checkpoint. Each failing case
must name the first broken sequence number; the entries before it are vouched for.

The attacker writes rows in the form paywarden stores them (`chain.stored_row`: hashes as raw
bytes, bodies compressed), as anyone reading the schema and the source would: a value in
another form would only make the edit easier to see.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paywarden import FrozenClock, PaymentIntent, Warden
from paywarden.adapters.storage.sqlite import read_audit_page
from paywarden.adapters.storage.sqlite_audit import (
    iter_audit_readonly,
    iter_audit_rows_readonly,
    verify_file,
)
from paywarden.audit.body_codec import encode_text
from paywarden.audit.canonical import canonical_text
from paywarden.audit.chain import (
    GENESIS_PARENT,
    AuditEntry,
    Checkpoint,
    VerifyResult,
    stored_row,
    verify,
    verify_rows,
)
from paywarden.audit.chain import entry_hash as compute_hash
from paywarden.audit.checkpoint import (
    CheckpointError,
    SignedCheckpoint,
    check_signature,
    generate_key,
    load_private_key,
    load_public_key,
    parse,
    sign,
)
from paywarden.testing import SequentialIds, example_intent
from paywarden.warden import AuditOptions

LOG_ENTRIES = 200
C1_SEQ = 100
BACKUP_SEQ = 150
SEQ_OFFSET = 1_000_000  # a renumbered row moves far past the end of the log
START = "2026-03-10T15:00:00+00:00"

POLICY_V1 = """
currency: USD
rules:
  - id: deny-blocked
    effect: deny
    recipients: [blocked.example.com]
  - id: deny-big
    effect: deny
    amount: {gt: 900}
  - id: approve-mid
    effect: require_approval
    amount: {gt: 400}
  - id: allow-payments
    effect: allow
    actions: ["payments.*"]
budgets:
  - id: daily
    limit: "20000.00"
    window: day
"""
POLICY_V2 = POLICY_V1.replace("amount: {gt: 400}", "amount: {gt: 300}")

AMOUNTS = ("25.00", "120.50", "450.00", "950.00", "75.00", "310.00", "640.00")
RECIPIENTS = (
    "vendor.example.com",
    "Café.Example",
    "blocked.example.com",
    "acct-123",
    "ops@vendor.example.com",
)


# The generated log -------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratedLog:
    path: Path  # the pristine file: never opened for writing after generation
    data: bytes
    backup: bytes  # the same file when the log had BACKUP_SEQ entries
    entries: tuple[AuditEntry, ...]
    c1: Checkpoint
    c2: Checkpoint
    c2_signed: SignedCheckpoint
    public_key: Path
    attacker_key: Path

    def entry(self, seq: int) -> AuditEntry:
        return self.entries[seq - 1]

    def hash_before(self, seq: int) -> str:
        return GENESIS_PARENT if seq == 1 else self.entry(seq - 1).entry_hash


def _intent(index: int) -> PaymentIntent:
    secrets = index % 7 == 3
    return example_intent(
        AMOUNTS[index % len(AMOUNTS)],
        agent=f"agent-{index % 3}",
        recipient=RECIPIENTS[index % len(RECIPIENTS)],
        purpose=(
            f"card 4242 4242 4242 4242 for order {index}" if secrets else f"Zoë café #{index}"
        ),
        metadata=(
            {"api_key": f"key-{index}-live", "note": "sk_live_4eC39HqLyjWDarjtT1zdp7dc"}
            if secrets
            else {"order": f"o-{index}", "n": index, "flag": index % 2 == 0, "none": None}
        ),
        idempotency_key=f"idem-{index}" if index % 9 == 4 else None,
    )


def _head(warden: Warden) -> int:
    return warden.verify_audit().head_seq


def _traffic(warden: Warden, clock: FrozenClock, rounds: range) -> None:
    """Decisions and settlements, each audited; ends with every open hold expired."""
    open_holds: list[str] = []
    for index in rounds:
        clock.advance(13)
        if index % 11 == 10:
            clock.advance(-1_800)  # the clock jumps back; audit times must not
        decision = warden.authorize(_intent(index))
        if decision.outcome != "deny":
            assert decision.hold_id is not None
        if decision.outcome == "allow":  # holds awaiting approval are left to expire
            open_holds.append(str(decision.hold_id))
        if index % 9 == 4:
            replay = warden.authorize(_intent(index))  # a replay appends nothing
            assert replay.replayed and replay.decision_id == decision.decision_id
        if index % 3 == 2 and open_holds:
            hold_id = open_holds.pop(0)
            choice = (index // 3) % 4
            if choice == 0:
                warden.capture(hold_id)
            elif choice == 1:
                warden.capture(hold_id, "10.00")
            elif choice == 2:
                warden.void(hold_id, actor="operator:alice")
            # choice 3: left to expire
    clock.advance(3_600)
    warden.expire_due()


def _fill_to(warden: Warden, clock: FrozenClock, target: int) -> None:
    """Denied decisions (no holds, so nothing can expire) until the head is `target`."""
    head = _head(warden)
    assert head < target, f"the traffic already reached seq {head}, beyond {target}"
    for index in range(target - head):
        clock.advance(1)
        decision = warden.authorize(
            example_intent("5000.00", agent="filler", purpose=f"filler {index}")
        )
        assert decision.reason_code == "denied_by_rule"
    assert _head(warden) == target


def _generate(directory: Path) -> GeneratedLog:
    key, public_key = directory / "audit.key", directory / "audit.pub"
    attacker_key = directory / "attacker.key"
    generate_key(key, public_key)
    generate_key(attacker_key, directory / "attacker.pub")
    database = directory / "ledger.db"
    clock, ids = FrozenClock(START), SequentialIds()  # unique across the Wardens sharing it
    options = AuditOptions(signing_key=key)

    def open_warden(policy: str) -> Warden:
        return Warden.open(
            policy, database=database, clock=clock, ids=ids, hold_ttl_seconds=600, audit=options
        )

    with open_warden(POLICY_V1) as warden:
        assert _head(warden) == 1  # policy.loaded
        _traffic(warden, clock, range(25))
        _fill_to(warden, clock, C1_SEQ)
        c1 = warden.checkpoint()
        _traffic(warden, clock, range(25, 40))
        _fill_to(warden, clock, BACKUP_SEQ)
    assert not Path(f"{database}-wal").exists()  # closed: everything is in the main file
    backup = database.read_bytes()
    with open_warden(POLICY_V1) as warden:  # the same policy again: nothing appended
        assert _head(warden) == BACKUP_SEQ
    with open_warden(POLICY_V2) as warden:  # a new policy version: policy.loaded
        assert _head(warden) == BACKUP_SEQ + 1
        _traffic(warden, clock, range(40, 55))
        _fill_to(warden, clock, LOG_ENTRIES)
        c2 = warden.checkpoint()
    assert not Path(f"{database}-wal").exists()
    data = database.read_bytes()
    entries = tuple(iter_audit_readonly(database))
    trusted = load_public_key(public_key)
    return GeneratedLog(
        path=database,
        data=data,
        backup=backup,
        entries=entries,
        c1=check_signature(c1, trusted),
        c2=check_signature(c2, trusted),
        c2_signed=c2,
        public_key=public_key,
        attacker_key=attacker_key,
    )


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> GeneratedLog:
    return _generate(tmp_path_factory.mktemp("audit-log"))


# The attacker ------------------------------------------------------------------------------


@pytest.fixture
def copy(log: GeneratedLog, tmp_path: Path) -> Path:
    path = tmp_path / "ledger.db"
    path.write_bytes(log.data)
    return path


@contextmanager
def attacker(path: Path) -> Iterator[sqlite3.Connection]:
    """Raw write access: the append-only triggers are dropped first, then one transaction."""
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA synchronous = OFF")
        db.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        db.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
        db.execute("BEGIN IMMEDIATE")
        yield db
        db.execute("COMMIT")


def rows(db: sqlite3.Connection) -> list[AuditEntry]:
    return read_audit_page(db, 0, 1_000_000)


def put(db: sqlite3.Connection, entry: AuditEntry) -> None:
    db.execute(
        "INSERT INTO audit_log (seq, created_us, kind, ref_id, parent_hash, entry_hash, body)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        stored_row(entry),
    )


def set_body(db: sqlite3.Connection, seq: int, body: str) -> None:
    """Store `body` (canonical JSON text) as entry `seq`'s body, compressed as paywarden does."""
    db.execute("UPDATE audit_log SET body = ? WHERE seq = ?", (encode_text(body), seq))


def rechain(db: sqlite3.Connection, from_seq: int) -> None:
    """Recompute every link from `from_seq` on, as an attacker without the key can."""
    entries = rows(db)
    parent = GENESIS_PARENT if from_seq == 1 else entries[from_seq - 2].entry_hash
    for entry in entries[from_seq - 1 :]:
        digest = compute_hash(
            parent, entry.seq, entry.created_us, entry.kind, entry.ref_id, entry.body
        )
        db.execute(
            "UPDATE audit_log SET parent_hash = ?, entry_hash = ? WHERE seq = ?",
            (bytes.fromhex(parent), bytes.fromhex(digest), entry.seq),
        )
        parent = digest


def forged_body(entry: AuditEntry) -> str:
    """The entry's body with its actor changed, still canonical JSON."""
    body = json.loads(entry.body)
    body["actor"] = "attacker"
    return canonical_text(body)


def check(path: Path, checkpoint: Checkpoint | None = None) -> VerifyResult:
    """Verify on both paths (decoded entries, and the fast raw-bytes rows the CLI uses); they
    must agree on every field of the result, the reason included."""
    slow = verify(iter_audit_readonly(path), checkpoint)
    fast = verify_rows(iter_audit_rows_readonly(path), checkpoint)
    assert fast == slow
    assert verify_file(path, checkpoint, workers=1) == slow
    return slow


def assert_broken_at(
    log: GeneratedLog,
    result: VerifyResult,
    seq: int,
    reason: str,
    *,
    head: int | None = None,
    prefix_intact: bool = True,
) -> None:
    """Broken at `seq`, and every entry up to `head` (default: the one before) vouched for."""
    assert not result.ok
    assert result.first_bad_seq == seq, result
    assert reason in str(result.reason), result
    head = seq - 1 if head is None else head
    assert result.head_seq == head, result
    assert result.entries_checked == head
    if prefix_intact:
        assert result.head_hash == log.hash_before(head + 1)


ALL_SEQS = range(1, LOG_ENTRIES + 1)


# The generated log itself ------------------------------------------------------------------


def test_the_clean_log_verifies_with_and_without_each_checkpoint(log: GeneratedLog) -> None:
    for checkpoint in (None, log.c1, log.c2):
        result = check(log.path, checkpoint)
        assert result.ok, result
        assert (result.entries_checked, result.head_seq) == (LOG_ENTRIES, LOG_ENTRIES)
        assert result.head_hash == log.c2.head_hash
    assert [entry.seq for entry in log.entries] == list(ALL_SEQS)
    assert (log.c1.seq, log.c2.seq) == (C1_SEQ, LOG_ENTRIES)
    assert log.c1.head_hash == log.entry(C1_SEQ).entry_hash


def test_the_generated_log_covers_every_kind_of_entry(log: GeneratedLog) -> None:
    kinds = {entry.kind for entry in log.entries}
    assert kinds == {
        "policy.loaded",
        "decision",
        "hold.captured",
        "hold.voided",
        "hold.expired",
        "approval.requested",
        "approval.expired",
    }
    outcomes = {
        json.loads(entry.body)["decision"]["outcome"]
        for entry in log.entries
        if entry.kind == "decision"
    }
    assert outcomes == {"allow", "deny", "require_approval"}
    loads = [entry.seq for entry in log.entries if entry.kind == "policy.loaded"]
    assert loads == [1, BACKUP_SEQ + 1]
    assert any(
        json.loads(entry.body)["redacted"] for entry in log.entries if entry.kind == "decision"
    )


def test_audit_times_never_go_backwards_though_the_clock_did(log: GeneratedLog) -> None:
    times = [entry.created_us for entry in log.entries]
    assert times == sorted(times)
    evaluated = [
        json.loads(entry.body)["decision"]["trace"]["evaluated_at"]
        for entry in log.entries
        if entry.kind == "decision"
    ]
    assert evaluated != sorted(evaluated)  # the clock did jump back during generation


def test_the_append_only_triggers_stop_a_writer_that_leaves_them_in_place(copy: Path) -> None:
    with closing(sqlite3.connect(copy, isolation_level=None)) as db:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("UPDATE audit_log SET kind = 'x' WHERE seq = 5")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("DELETE FROM audit_log WHERE seq = 5")
    assert check(copy).ok


# AU-01: every stored column of every entry ---------------------------------------------------


def _flip_hex(value: str) -> str:
    return value[:-1] + ("0" if value[-1] != "0" else "1")


def _other_kind(kind: str) -> str:
    return "hold.voided" if kind == "decision" else "decision"


COLUMN_EDITS: dict[str, Callable[[AuditEntry], object]] = {
    "seq": lambda entry: entry.seq + SEQ_OFFSET,
    "created_us": lambda entry: entry.created_us + 1,
    "kind": lambda entry: _other_kind(entry.kind),
    "ref_id": lambda entry: f"forged_{entry.ref_id}",
    "parent_hash": lambda entry: _flip_hex(entry.parent_hash),
    "entry_hash": lambda entry: _flip_hex(entry.entry_hash),
    "body": forged_body,
}


def _stored(column: str, value: object) -> object:
    """A column's value as paywarden stores it."""
    if column in ("parent_hash", "entry_hash"):
        return bytes.fromhex(str(value))
    return encode_text(str(value)) if column == "body" else value


@pytest.mark.parametrize("seq", ALL_SEQS)
@pytest.mark.parametrize("column", list(COLUMN_EDITS))
def test_editing_any_column_of_any_entry_is_detected_at_that_entry(
    log: GeneratedLog, copy: Path, column: str, seq: int
) -> None:
    entry = log.entry(seq)
    value = COLUMN_EDITS[column](entry)
    assert value != getattr(entry, column)
    with attacker(copy) as db:
        stored = _stored(column, value)
        db.execute(f"UPDATE audit_log SET {column} = ? WHERE seq = ?", (stored, seq))
    result = check(copy)
    if column == "seq":
        # The renumbered row moves to the end of the table, so the gap shows first: at the row
        # after it, or at the moved row itself when it was the last one.
        bad = seq + 1 if seq < LOG_ENTRIES else seq + SEQ_OFFSET
        assert_broken_at(log, result, bad, "jumps", head=seq - 1)
    elif column == "parent_hash":
        assert_broken_at(log, result, seq, "parent hash does not match")
    else:
        assert_broken_at(log, result, seq, "entry hash does not match its contents")
    assert not check(copy, log.c2).ok


# AU-01: the fields inside the body (amount, currency, payee, decision, actor, time) ---------


def _set(body: dict[str, Any], path: tuple[str, ...], value: object) -> None:
    for key in path[:-1]:
        body = body[key]
    body[path[-1]] = value


def _get(body: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        body = body[key]
    return body


FLIP_OUTCOME = {"allow": "deny", "deny": "allow", "require_approval": "allow"}
BODY_EDITS: dict[str, tuple[str, tuple[str, ...], Callable[[Any], object]]] = {
    "decision-amount": ("decision", ("intent", "amount_minor"), lambda v: v + 1),
    "decision-currency": ("decision", ("intent", "currency"), lambda v: "EUR"),
    "decision-payee": ("decision", ("intent", "recipient"), lambda v: "attacker.example"),
    "decision-outcome": ("decision", ("decision", "outcome"), lambda v: FLIP_OUTCOME[v]),
    "decision-reason": ("decision", ("decision", "reason_code"), lambda v: "allowed!"),
    "decision-actor": ("decision", ("actor",), lambda v: "attacker"),
    "decision-time": (
        "decision",
        ("decision", "trace", "evaluated_at"),
        lambda v: "2020-01-01T00:00:00+00:00",
    ),
    "decision-hold": ("decision", ("decision", "hold_id"), lambda v: "hold_forged"),
    "decision-redacted": ("decision", ("redacted",), lambda v: [*v, "$.intent.x"]),
    "hold-amount": ("hold.", ("amount_minor",), lambda v: v * 10),
    "hold-currency": ("hold.", ("currency",), lambda v: "EUR"),
    "hold-state": ("hold.", ("state",), lambda v: "voided" if v != "voided" else "captured"),
    "hold-captured": ("hold.", ("captured_minor",), lambda v: 1 if v is None else v - 1),
    "hold-actor": ("hold.", ("actor",), lambda v: "attacker"),
    "policy-version": ("policy.loaded", ("policy_version",), lambda v: "forged"),
}


@pytest.mark.parametrize("edit", list(BODY_EDITS))
def test_editing_a_field_inside_any_body_is_detected_at_that_entry(
    log: GeneratedLog, copy: Path, edit: str
) -> None:
    """Edit, verify and restore each matching entry in turn on one copy of the file."""
    prefix, path, change = BODY_EDITS[edit]
    targets = [entry for entry in log.entries if entry.kind.startswith(prefix)]
    assert targets
    for entry in targets:
        body = json.loads(entry.body)
        _set(body, path, change(_get(body, path)))
        forged = canonical_text(body)
        assert forged != entry.body
        with attacker(copy) as db:
            set_body(db, entry.seq, forged)
        assert_broken_at(log, check(copy), entry.seq, "entry hash does not match")
        with attacker(copy) as db:
            set_body(db, entry.seq, entry.body)
    assert check(copy, log.c2).ok  # restored exactly


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    else:
        yield path


def _mutate(value: Any, salt: int) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + salt
    if isinstance(value, str):
        return value + "x" * salt if salt % 2 else "forged"[: salt % 6] + value[1:]
    if value is None:
        return salt
    return [salt] if isinstance(value, list) else {"forged": salt}


@pytest.fixture(scope="module")
def shared_copy(log: GeneratedLog, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("leaf-edits") / "ledger.db"
    path.write_bytes(log.data)
    return path


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_leaf_of_any_body_edited_is_detected(
    log: GeneratedLog, shared_copy: Path, data: st.DataObject
) -> None:
    entry = log.entry(data.draw(st.integers(1, LOG_ENTRIES), label="seq"))
    body = json.loads(entry.body)
    path = data.draw(st.sampled_from(list(_leaves(body))), label="path")
    salt = data.draw(st.integers(1, 1_000), label="salt")
    if path:
        parent = body
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = _mutate(parent[path[-1]], salt)
    else:
        body = _mutate(body, salt)
    forged = canonical_text(body)
    if forged == entry.body:
        return  # the mutation happened to be a no-op
    try:
        with attacker(shared_copy) as db:
            set_body(db, entry.seq, forged)
        assert_broken_at(log, check(shared_copy), entry.seq, "entry hash does not match")
    finally:
        with attacker(shared_copy) as db:
            set_body(db, entry.seq, entry.body)


# AU-02: an edited row whose own hash the attacker recomputed ---------------------------------


@pytest.mark.parametrize("seq", ALL_SEQS)
def test_an_edit_with_its_hash_recomputed_breaks_the_next_link(
    log: GeneratedLog, copy: Path, seq: int
) -> None:
    entry = log.entry(seq)
    body = forged_body(entry)
    digest = compute_hash(entry.parent_hash, seq, entry.created_us, entry.kind, entry.ref_id, body)
    with attacker(copy) as db:
        db.execute(
            "UPDATE audit_log SET body = ?, entry_hash = ? WHERE seq = ?",
            (encode_text(body), bytes.fromhex(digest), seq),
        )
    if seq < LOG_ENTRIES:
        result = check(copy)
        assert_broken_at(log, result, seq + 1, "parent hash does not match", prefix_intact=False)
        assert result.head_hash == digest  # the forged entry itself is internally consistent
    else:
        # The last entry rewritten is a rewritten suffix: only the checkpoint can tell.
        assert check(copy).ok
        assert_broken_at(log, check(copy, log.c2), seq, "suffix rewritten")


# AU-03: deletions, renumbering, swaps, insertions, duplicates --------------------------------


@pytest.mark.parametrize("seq", ALL_SEQS)
def test_deleting_any_entry_is_detected(log: GeneratedLog, copy: Path, seq: int) -> None:
    with attacker(copy) as db:
        db.execute("DELETE FROM audit_log WHERE seq = ?", (seq,))
    if seq < LOG_ENTRIES:
        result = check(copy)
        assert_broken_at(log, result, seq + 1, f"jumps from {seq - 1} to {seq + 1}", head=seq - 1)
        assert_broken_at(log, check(copy, log.c2), seq + 1, "jumps", head=seq - 1)
    else:
        # Documented limit: a deleted last entry is a truncated tail, invisible to the chain.
        result = check(copy)
        assert result.ok and result.head_seq == LOG_ENTRIES - 1
        assert_broken_at(log, check(copy, log.c2), LOG_ENTRIES, "entries deleted from the tail")


@pytest.mark.parametrize("seq", ALL_SEQS)
def test_deleting_any_entry_and_renumbering_the_rest_is_detected(
    log: GeneratedLog, copy: Path, seq: int
) -> None:
    with attacker(copy) as db:
        db.execute("DELETE FROM audit_log WHERE seq = ?", (seq,))
        for later in range(seq + 1, LOG_ENTRIES + 1):
            db.execute("UPDATE audit_log SET seq = ? WHERE seq = ?", (later - 1, later))
    if seq < LOG_ENTRIES:
        assert_broken_at(log, check(copy), seq, "parent hash does not match")
    else:
        assert check(copy).ok
        assert not check(copy, log.c2).ok


@pytest.mark.parametrize(
    ("first", "last"), [(1, 2), (1, LOG_ENTRIES), (10, 20), (99, 101), (150, 151)]
)
def test_deleting_a_range_is_detected(log: GeneratedLog, copy: Path, first: int, last: int) -> None:
    with attacker(copy) as db:
        db.execute("DELETE FROM audit_log WHERE seq BETWEEN ? AND ?", (first, last))
    if last < LOG_ENTRIES:
        assert_broken_at(log, check(copy), last + 1, "jumps", head=first - 1)
    else:
        assert check(copy).ok  # everything from the first row on is gone: an empty log
        assert_broken_at(log, check(copy, log.c1), 1, "entries deleted from the tail")


def test_renumbering_every_entry_is_detected(log: GeneratedLog, copy: Path) -> None:
    with attacker(copy) as db:
        for seq in range(LOG_ENTRIES, 0, -1):
            db.execute("UPDATE audit_log SET seq = ? WHERE seq = ?", (seq + 1, seq))
    assert_broken_at(log, check(copy), 2, "jumps from 0 to 2", head=0)


def _swap(db: sqlite3.Connection, first: int, second: int) -> None:
    """Exchange the contents of two rows; each keeps its position (its seq)."""
    a, b = (log_entry(db, seq) for seq in (first, second))
    db.execute("DELETE FROM audit_log WHERE seq IN (?, ?)", (first, second))
    put(db, dataclasses.replace(b, seq=first))
    put(db, dataclasses.replace(a, seq=second))


def log_entry(db: sqlite3.Connection, seq: int) -> AuditEntry:
    return read_audit_page(db, seq - 1, 1)[0]


SWAPS = [(seq, seq + 1) for seq in range(1, LOG_ENTRIES)] + [
    (1, LOG_ENTRIES),
    (2, 100),
    (50, 150),
    (C1_SEQ, LOG_ENTRIES),
]


@pytest.mark.parametrize(("first", "second"), SWAPS)
def test_swapping_two_entries_is_detected_at_the_first(
    log: GeneratedLog, copy: Path, first: int, second: int
) -> None:
    with attacker(copy) as db:
        _swap(db, first, second)
    assert_broken_at(log, check(copy), first, "parent hash does not match")


@pytest.mark.parametrize("first", [1, 2, 100, 199])
def test_swapping_two_entries_and_their_seqs_is_detected(
    log: GeneratedLog, copy: Path, first: int
) -> None:
    """The rows exchange their whole contents, seq included, so the storage order changes."""
    with attacker(copy) as db:
        a, b = log_entry(db, first), log_entry(db, first + 1)
        db.execute("DELETE FROM audit_log WHERE seq IN (?, ?)", (first, first + 1))
        _rebuild_without_constraints(db)
        before = [e for e in rows(db) if e.seq < first]
        after = [e for e in rows(db) if e.seq > first + 1]
        db.execute("DELETE FROM audit_log")
        for entry in [*before, b, a, *after]:
            put(db, entry)
    reason = f"jumps from {first - 1} to {first + 1}"
    assert_broken_at(log, check(copy), first + 1, reason, head=first - 1)


def _forged_entry(seq: int, parent_hash: str, created_us: int) -> AuditEntry:
    body = canonical_text({"actor": "agent:attacker", "forged": True, "outcome": "allow"})
    digest = compute_hash(parent_hash, seq, created_us, "decision", "dec_forged", body)
    return AuditEntry(seq, created_us, "decision", "dec_forged", parent_hash, digest, body)


@pytest.mark.parametrize("seq", range(1, LOG_ENTRIES + 1))
def test_inserting_a_correctly_hashed_entry_anywhere_is_detected(
    log: GeneratedLog, copy: Path, seq: int
) -> None:
    """The attacker makes room (shifts the rest up) and links the forged entry to its parent."""
    with attacker(copy) as db:
        for later in range(LOG_ENTRIES, seq - 1, -1):
            db.execute("UPDATE audit_log SET seq = ? WHERE seq = ?", (later + 1, later))
        forged = _forged_entry(seq, log.hash_before(seq), log.entry(seq).created_us)
        put(db, forged)
    result = check(copy)
    assert_broken_at(log, result, seq + 1, "parent hash does not match", prefix_intact=False)
    assert result.head_hash == forged.entry_hash


def test_a_forged_entry_appended_after_the_checkpoint_is_not_detectable(
    log: GeneratedLog, copy: Path
) -> None:
    """Documented limit: a checkpoint vouches for the prefix it signs, nothing after it. An
    entry appended by a database writer is indistinguishable from one the application wrote
    until the next checkpoint signs it (and then it is in the log for good)."""
    with attacker(copy) as db:
        put(db, _forged_entry(LOG_ENTRIES + 1, log.c2.head_hash, log.entries[-1].created_us))
    for checkpoint in (None, log.c2):
        result = check(copy, checkpoint)
        assert result.ok and result.head_seq == LOG_ENTRIES + 1


@pytest.mark.parametrize("seq", [LOG_ENTRIES + 1, LOG_ENTRIES + 7])
def test_appending_an_entry_without_its_link_is_detected(
    log: GeneratedLog, copy: Path, seq: int
) -> None:
    with attacker(copy) as db:
        put(db, _forged_entry(seq, "ab" * 32, log.entries[-1].created_us))
    reason = "parent hash does not match" if seq == LOG_ENTRIES + 1 else "jumps"
    assert_broken_at(log, check(copy), seq, reason, head=LOG_ENTRIES)


def _rebuild_without_constraints(db: sqlite3.Connection) -> None:
    """The table rebuilt with no key and no checks: rows are stored in insertion order."""
    db.execute("CREATE TABLE forged (seq, created_us, kind, ref_id, parent_hash, entry_hash, body)")
    db.execute("INSERT INTO forged SELECT * FROM audit_log ORDER BY seq")
    db.execute("DROP TABLE audit_log")
    db.execute("ALTER TABLE forged RENAME TO audit_log")


@pytest.mark.parametrize("seq", [1, 2, C1_SEQ, BACKUP_SEQ, LOG_ENTRIES - 1, LOG_ENTRIES])
def test_a_duplicated_entry_is_detected_in_storage_and_in_seq_order(
    log: GeneratedLog, copy: Path, seq: int
) -> None:
    with attacker(copy) as db:
        _rebuild_without_constraints(db)
        entries = rows(db)
        db.execute("DELETE FROM audit_log")
        for entry in entries[:seq] + [entries[seq - 1]] + entries[seq:]:
            put(db, entry)
    assert_broken_at(log, check(copy), seq, f"sequence {seq} repeats", head=seq)
    with closing(sqlite3.connect(f"file:{copy}?mode=ro", uri=True)) as db:
        sorted_entries = read_audit_page(db, 0, 1_000_000)
    assert len(sorted_entries) == LOG_ENTRIES + 1
    assert_broken_at(log, verify(sorted_entries), seq, "repeats", head=seq)


@pytest.mark.parametrize("seq", [1, 2, C1_SEQ, LOG_ENTRIES - 1])
def test_a_duplicated_entry_renumbered_into_place_is_detected(
    log: GeneratedLog, copy: Path, seq: int
) -> None:
    with attacker(copy) as db:
        for later in range(LOG_ENTRIES, seq, -1):
            db.execute("UPDATE audit_log SET seq = ? WHERE seq = ?", (later + 1, later))
        put(db, dataclasses.replace(log.entry(seq), seq=seq + 1))
    assert_broken_at(log, check(copy), seq + 1, "parent hash does not match")


@pytest.mark.parametrize("seq", [1, 57, LOG_ENTRIES])
def test_a_row_moved_in_storage_is_seen_where_it_is_stored(
    log: GeneratedLog, copy: Path, seq: int
) -> None:
    """The verifier reads rows in storage order, so a row stored out of place is a gap."""
    with attacker(copy) as db:
        _rebuild_without_constraints(db)
        entries = rows(db)
        db.execute("DELETE FROM audit_log")
        moved = entries[: seq - 1] + entries[seq:] + [entries[seq - 1]]
        for entry in moved:
            put(db, entry)
    if seq < LOG_ENTRIES:
        assert_broken_at(log, check(copy), seq + 1, "jumps", head=seq - 1)
    else:
        assert check(copy, log.c2).ok  # moved onto itself: nothing changed


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("seq", "57"),
        ("created_us", "1773154800000000"),
        ("created_us", 1.5),
        ("kind", 7),
        ("ref_id", None),
        ("parent_hash", "00" * 32),  # hashes are stored as bytes: a text is the wrong type
        ("entry_hash", 7),
        ("body", "{}"),  # bodies are stored as bytes too
        ("created_us", 2**63 - 1),
    ],
)
def test_a_column_of_the_wrong_type_is_a_broken_entry_not_a_crash(
    log: GeneratedLog, copy: Path, column: str, value: object
) -> None:
    seq = 57
    with attacker(copy) as db:
        _rebuild_without_constraints(db)
        db.execute(f"UPDATE audit_log SET {column} = ? WHERE seq = 57", (value,))
    result = check(copy)
    assert not result.ok
    assert result.first_bad_seq == seq
    assert result.head_seq == seq - 1


def test_a_body_that_is_not_utf8_is_reported_as_broken_at_its_seq(
    log: GeneratedLog, copy: Path
) -> None:
    """Bytes that are not UTF-8 reach the verifier as a broken entry, not as a read error (here
    a body in the uncompressed form, `{` then the bytes)."""
    with attacker(copy) as db:
        db.execute("UPDATE audit_log SET body = X'7BFF7D' WHERE seq = 57")
    assert_broken_at(log, check(copy), 57, "entry hash does not match")


# AU-04: truncation and suffix rewrites against the signed checkpoint -------------------------


@pytest.mark.parametrize("count", [1, 2, 10, LOG_ENTRIES - C1_SEQ, 150, LOG_ENTRIES])
def test_a_truncated_tail_passes_the_chain_and_fails_the_checkpoint(
    log: GeneratedLog, copy: Path, count: int
) -> None:
    remaining = LOG_ENTRIES - count
    with attacker(copy) as db:
        db.execute("DELETE FROM audit_log WHERE seq > ?", (remaining,))
    chain_only = check(copy)
    assert chain_only.ok and chain_only.head_seq == remaining  # documented limit
    result = check(copy, log.c2)
    assert_broken_at(log, result, remaining + 1, f"log ends at seq {remaining}")
    assert f"covers seq {LOG_ENTRIES}" in str(result.reason)
    assert check(copy, log.c1).ok is (remaining >= C1_SEQ)


REWRITE_FROM = [1, 2, C1_SEQ - 1, C1_SEQ, C1_SEQ + 1, BACKUP_SEQ, LOG_ENTRIES - 1, LOG_ENTRIES]


@pytest.mark.parametrize("seq", REWRITE_FROM)
def test_a_rewritten_suffix_passes_the_chain_and_fails_the_checkpoint(
    log: GeneratedLog, copy: Path, seq: int
) -> None:
    with attacker(copy) as db:
        set_body(db, seq, forged_body(log.entry(seq)))
        rechain(db, seq)
    chain_only = check(copy)
    assert chain_only.ok, chain_only  # documented limit: the chain needs no key to recompute
    assert chain_only.head_seq == LOG_ENTRIES and chain_only.head_hash != log.c2.head_hash
    rewritten = {"prefix_intact": False}
    assert_broken_at(log, check(copy, log.c2), LOG_ENTRIES, "suffix rewritten", **rewritten)
    if seq <= C1_SEQ:
        assert_broken_at(log, check(copy, log.c1), C1_SEQ, "suffix rewritten", **rewritten)
    else:
        assert check(copy, log.c1).ok  # C1 predates the rewrite


@pytest.mark.parametrize("count", [1, 30, LOG_ENTRIES - C1_SEQ + 1])
def test_a_truncated_tail_regrown_with_forged_entries_fails_the_checkpoint(
    log: GeneratedLog, copy: Path, count: int
) -> None:
    keep = LOG_ENTRIES - count
    with attacker(copy) as db:
        db.execute("DELETE FROM audit_log WHERE seq > ?", (keep,))
        parent = log.hash_before(keep + 1)
        for seq in range(keep + 1, LOG_ENTRIES + 1):
            forged = _forged_entry(seq, parent, log.entry(seq).created_us)
            put(db, forged)
            parent = forged.entry_hash
    assert check(copy).ok
    result = check(copy, log.c2)
    assert_broken_at(log, result, LOG_ENTRIES, "suffix rewritten", prefix_intact=False)
    assert check(copy, log.c1).ok is (keep >= C1_SEQ)


# Checkpoints an attacker could forge ---------------------------------------------------------


def _rewritten_copy(log: GeneratedLog, copy: Path, seq: int = 120) -> Checkpoint:
    """Rewrite the suffix from `seq`; the checkpoint an attacker would need for it."""
    with attacker(copy) as db:
        set_body(db, seq, forged_body(log.entry(seq)))
        rechain(db, seq)
    head = check(copy)
    assert head.ok
    return dataclasses.replace(log.c2, head_hash=head.head_hash)


def test_a_checkpoint_signed_with_another_key_is_rejected(log: GeneratedLog, copy: Path) -> None:
    wanted = _rewritten_copy(log, copy)
    forged = sign(wanted, load_private_key(log.attacker_key))
    trusted = load_public_key(log.public_key)
    with pytest.raises(CheckpointError, match="not by the trusted key"):
        check_signature(forged, trusted)
    # Claiming the trusted key id does not help: the signature does not verify.
    with pytest.raises(CheckpointError, match="signature does not verify"):
        check_signature(dataclasses.replace(forged, key_id=log.c2_signed.key_id), trusted)
    # The forged checkpoint does describe the rewritten log; only the signature stops it.
    assert check(copy, wanted).ok
    assert not check(copy, log.c2).ok


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", C1_SEQ),
        ("head_hash", "ab" * 32),
        ("time_us", 0),
        ("origin", "elsewhere"),
    ],
)
def test_a_checkpoint_with_an_edited_field_is_rejected(
    log: GeneratedLog, field: str, value: object
) -> None:
    data = log.c2_signed.to_dict()
    assert data[field] != value
    data[field] = value
    with pytest.raises(CheckpointError, match="signature does not verify"):
        check_signature(parse(json.dumps(data)), load_public_key(log.public_key))


@pytest.mark.parametrize("position", [0, 10, 43, 80])
def test_a_checkpoint_whose_signature_was_tampered_is_rejected(
    log: GeneratedLog, position: int
) -> None:
    signed = log.c2_signed
    signature = signed.signature
    flipped = "A" if signature[position] != "A" else "B"
    tampered = signature[:position] + flipped + signature[position + 1 :]
    assert base64.b64decode(tampered) != base64.b64decode(signature)
    with pytest.raises(CheckpointError, match="signature does not verify"):
        check_signature(
            dataclasses.replace(signed, signature=tampered), load_public_key(log.public_key)
        )


@pytest.mark.parametrize("signature", ["", "not base64!", "AAAA", "A" * 87 + "="])
def test_a_checkpoint_with_a_malformed_signature_is_rejected(
    log: GeneratedLog, signature: str
) -> None:
    with pytest.raises(CheckpointError, match="signature does not verify"):
        check_signature(
            dataclasses.replace(log.c2_signed, signature=signature),
            load_public_key(log.public_key),
        )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[]",
        '{"seq": 1}',
        '{"origin": "x", "seq": "many", "head_hash": "", '
        '"time_us": 0, "key_id": "", "signature": ""}',
    ],
)
def test_a_malformed_checkpoint_is_rejected(text: str) -> None:
    with pytest.raises(CheckpointError, match="malformed checkpoint"):
        parse(text)


def test_a_signed_checkpoint_round_trips_through_its_json(log: GeneratedLog) -> None:
    again = parse(log.c2_signed.to_json())
    assert again == log.c2_signed
    assert check_signature(again, load_public_key(log.public_key)) == log.c2


# AU-08: a restored backup, and C2 extending C1 ---------------------------------------------


def test_a_restored_older_copy_is_behind_the_latest_checkpoint(
    log: GeneratedLog, tmp_path: Path
) -> None:
    restored = tmp_path / "restored.db"
    restored.write_bytes(log.backup)
    chain_only = check(restored)
    assert chain_only.ok and chain_only.head_seq == BACKUP_SEQ  # a valid, shorter chain
    assert chain_only.head_hash == log.entry(BACKUP_SEQ).entry_hash
    result = check(restored, log.c2)
    assert_broken_at(log, result, BACKUP_SEQ + 1, f"log ends at seq {BACKUP_SEQ}")
    assert check(restored, log.c1).ok  # the backup does extend the older checkpoint


def test_the_later_checkpoint_extends_the_earlier_one(log: GeneratedLog, copy: Path) -> None:
    """C2 extends C1 when one log matches both: C1's head is in the chain C2 signs."""
    assert log.c2.seq > log.c1.seq and log.c2.time_us >= log.c1.time_us
    assert check(log.path, log.c1).ok and check(log.path, log.c2).ok
    # A fork before C1 fails both; a fork between them fails only C2.
    _rewritten_copy(log, copy, seq=C1_SEQ - 20)
    assert not check(copy, log.c1).ok and not check(copy, log.c2).ok
    fork_after = copy.with_name("fork-after.db")
    fork_after.write_bytes(log.data)
    forged_c2 = _rewritten_copy(log, fork_after, seq=C1_SEQ + 20)
    assert check(fork_after, log.c1).ok and not check(fork_after, log.c2).ok
    # ... and a C2 for the fork can only come from another key, which is rejected.
    with pytest.raises(CheckpointError):
        check_signature(
            sign(forged_c2, load_private_key(log.attacker_key)), load_public_key(log.public_key)
        )


def test_a_checkpoint_of_the_empty_log_is_extended_by_every_log(log: GeneratedLog) -> None:
    empty = Checkpoint("paywarden", 0, GENESIS_PARENT, 0)
    assert verify([], empty).ok
    assert check(log.path, empty).ok
    assert not verify([], dataclasses.replace(empty, head_hash="ab" * 32)).ok


def test_the_copy_fixture_leaves_the_pristine_log_alone(log: GeneratedLog, copy: Path) -> None:
    with attacker(copy) as db:
        db.execute("DELETE FROM audit_log")
    assert check(copy).entries_checked == 0
    assert log.path.read_bytes() == log.data
