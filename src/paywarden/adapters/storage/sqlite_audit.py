"""Read-only access to a SQLite store's audit log, and verification of a whole file.

Everything here opens the database read-only (`mode=ro`): reading or verifying the log can
never write to it.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from paywarden.audit.chain import (
    AuditEntry,
    Checkpoint,
    ScanState,
    StoredRow,
    VerifyResult,
    entry_from_stored,
    raw_stored_hash,
    scan_rows,
    stored_hash_text,
    verify_rows,
)
from paywarden.errors import StoreError

# Below this many entries one process is fast enough; above it, worker processes pay off.
PARALLEL_VERIFY_ENTRIES_MIN = 200_000
# Verification reads every page once; a memory map up to this size avoids copying each one.
READ_MMAP_BYTES = 1 << 30

AUDIT_COLUMNS = "seq, created_us, kind, ref_id, parent_hash, entry_hash, body"
# With a bytes text factory TEXT and BLOB look alike, so the store says whether every column
# still has its declared type (a rebuilt table could hold text where a BLOB belongs).
_AUDIT_TYPES_OK = (
    "(typeof(seq) = 'integer' AND typeof(created_us) = 'integer' AND typeof(kind) = 'text'"
    " AND typeof(ref_id) = 'text' AND typeof(parent_hash) = 'blob'"
    " AND typeof(entry_hash) = 'blob' AND typeof(body) = 'blob')"
)
# A file not yet migrated to the compact form (schema before 8: the audit commands open files
# read-only, so they never migrate one) declares its hashes and bodies as TEXT.
_COMPACT_SINCE_VERSION = 8
_LEGACY_TYPES_OK = _AUDIT_TYPES_OK.replace("'blob'", "'text'")


def _types_ok(connection: sqlite3.Connection) -> str:
    """The type check for this file's audit_log, as its schema version declares it."""
    try:
        row = connection.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    except sqlite3.Error:
        return _AUDIT_TYPES_OK
    version = row[0] if row else None
    if isinstance(version, int) and version < _COMPACT_SINCE_VERSION:
        return _LEGACY_TYPES_OK
    return _AUDIT_TYPES_OK


def iter_audit_rows_readonly(path: str | Path, page_entries: int = 20_000) -> Iterator[StoredRow]:
    """Every stored audit row of a file opened read-only, as stored (text columns as raw
    bytes), with the type check last: the input of the fast verifier (`verify_rows`)."""
    connection = _connect_readonly(path)
    connection.text_factory = bytes
    try:
        cursor = connection.execute(
            f"SELECT {AUDIT_COLUMNS}, {_types_ok(connection)} FROM audit_log"
        )
        while rows := cursor.fetchmany(page_entries):
            yield from rows
    except sqlite3.Error as error:
        raise StoreError(f"cannot read the audit log of `{path}`: {error}") from error
    finally:
        connection.close()


def _connect_readonly(path: str | Path) -> sqlite3.Connection:
    # Quote the path: a `#` or `?` in it would otherwise cut the URI short, and SQLite would
    # open (and create) a different file, read-write.
    resolved = Path(path).resolve()
    uri = f"file:{quote(str(resolved))}?mode=ro"
    if _read_only_copy(resolved):
        uri += "&immutable=1"
    try:
        connection = sqlite3.connect(uri, uri=True, isolation_level=None)
        # Reading through a memory map skips a copy per page; verification reads everything.
        connection.execute(f"PRAGMA mmap_size = {READ_MMAP_BYTES}")
    except sqlite3.Error as error:
        raise StoreError(f"cannot open `{path}` read-only: {error}") from error
    return connection


def _read_only_copy(path: Path) -> bool:
    """A database no one writes now: no `-wal` beside it (SQLite removes it when the last
    connection closes; a live or crashed writer leaves one, whose frames must be read), and the
    file without any write permission or in a directory this process cannot write (a backup,
    an archived copy). Such a file is opened `immutable`: SQLite then takes no locks and creates
    no `-shm` or `-wal` beside it, which a read-only directory would not allow anyway."""
    if Path(f"{path}-wal").exists():
        return False
    try:
        no_write_bits = path.stat().st_mode & 0o222 == 0
    except OSError:
        return False  # missing or unreadable: the ordinary open reports it
    return no_write_bits or not os.access(path.parent, os.W_OK)


def iter_audit_readonly(
    path: str | Path, page_entries: int = 20_000, ref_id: str | None = None
) -> Iterator[AuditEntry]:
    """Stream every entry of a database file opened read-only, decoded to its hashed form
    (`chain.entry_from_stored`): verification never writes.

    Rows are read in order of their storage key, not sorted by it, so a renumbered or moved
    entry shows up where it is stored and the verifier sees the gap or the repeat. Rows are
    decoded exactly as the fast verifier decodes them, type check included, so both paths
    report the same first broken entry for the same reason.
    """
    connection = _connect_readonly(path)
    # Bytes that are not UTF-8 (an edit by hand) must reach the verifier as a broken entry,
    # not stop the read: read them raw; decoding keeps them as surrogate escapes.
    connection.text_factory = bytes
    try:
        selected = f"SELECT {AUDIT_COLUMNS}, {_types_ok(connection)} FROM audit_log"
        if ref_id is None:
            cursor = connection.execute(selected)
        else:
            cursor = connection.execute(f"{selected} WHERE ref_id = ? ORDER BY seq", (ref_id,))
        while True:
            rows = cursor.fetchmany(page_entries)
            if not rows:
                return
            for row in rows:
                yield entry_from_stored(row)
    except sqlite3.Error as error:
        raise StoreError(f"cannot read the audit log of `{path}`: {error}") from error
    finally:
        connection.close()


def read_meta_readonly(path: str | Path, key: str) -> str | None:
    """One shared setting (`meta`) of a file opened read-only, such as the text of a policy
    version (`policy_text:<version>`)."""
    connection = _connect_readonly(path)
    try:
        row = connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    except sqlite3.Error as error:
        raise StoreError(f"cannot read the settings of `{path}`: {error}") from error
    finally:
        connection.close()
    return str(row[0]) if row else None


# Verification of a whole file --------------------------------------------------------------


def verify_file(
    path: str | Path,
    checkpoint: Checkpoint | None = None,
    workers: int | None = None,
    parallel_entries_min: int = PARALLEL_VERIFY_ENTRIES_MIN,
) -> VerifyResult:
    """Verify a store file read-only, in parallel worker processes when the log is large.

    The log is split into sequence ranges; each worker checks the links and hashes inside its
    range and reports the first parent and the last hash, and the ranges must join up. If
    anything at all is off, the whole log is verified again sequentially, so a broken log is
    always reported with the exact first broken link and reason. `workers` defaults to the
    cores this process may use (at most 8); with one, no worker process starts.
    """
    workers = workers if workers is not None else min(_usable_cores(), 8)
    if workers > 1:
        low, high, count = _seq_bounds(path)
        if count >= parallel_entries_min and (low, high) == (1, count):
            result = _verify_ranges(path, count, workers, checkpoint)
            if result is not None:
                return result
    return _verify_sequential(path, checkpoint)


# Each aggregate alone: SQLite answers MIN and MAX of the key from the ends of the b-tree, but
# both in one SELECT would read every row.
_SEQ_BOUNDS = (
    "SELECT COALESCE((SELECT MIN(seq) FROM audit_log), 0),"
    " COALESCE((SELECT MAX(seq) FROM audit_log), 0), (SELECT COUNT(*) FROM audit_log)"
)


def _seq_bounds(path: str | Path) -> tuple[int, int, int]:
    """The lowest and highest seq of the log, and its number of entries (0, 0, 0 when empty)."""
    connection = _connect_readonly(path)
    try:
        low, high, count = connection.execute(_SEQ_BOUNDS).fetchone()
    except sqlite3.Error as error:
        raise StoreError(f"cannot read the audit log of `{path}`: {error}") from error
    finally:
        connection.close()
    return low, high, count


def _usable_cores() -> int:
    """The cores this process may run on (a `taskset` or a container may allow fewer than
    the machine has: workers beyond them only take turns on the same core)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _verify_sequential(path: str | Path, checkpoint: Checkpoint | None) -> VerifyResult:
    """The fast verifier over every row, read straight from the cursor (no generator between
    SQLite and the scan loop); at the first row that does not pass, the precise path."""
    connection = _connect_readonly(path)
    connection.text_factory = bytes
    try:
        rows = connection.execute(f"SELECT {AUDIT_COLUMNS}, {_types_ok(connection)} FROM audit_log")
        return verify_rows(rows, checkpoint)
    except sqlite3.Error as error:
        raise StoreError(f"cannot read the audit log of `{path}`: {error}") from error
    finally:
        connection.close()


def _verify_ranges(
    path: str | Path, count: int, workers: int, checkpoint: Checkpoint | None
) -> VerifyResult | None:
    """The parallel pass; None when anything needs the precise sequential pass."""
    import multiprocessing  # only here: a small log (the usual case) never starts workers

    step = -(-count // workers)
    ranges = [(str(path), start, min(start + step, count)) for start in range(0, count, step)]
    # fork starts workers fastest; Python 3.12+ warns about fork in threaded processes.
    fork = sys.platform == "linux" and sys.version_info < (3, 12)
    context = multiprocessing.get_context("fork" if fork else "spawn")
    with context.Pool(len(ranges)) as pool:
        parts = pool.map(_verify_range, ranges)
    parent = bytes(32)
    for ok, first_parent, last_hash in parts:
        if not ok or first_parent != parent:
            return None
        parent = last_hash
    if checkpoint is not None and checkpoint.seq > 0:
        # Every link is verified, so the stored hash at the checkpoint's seq is the chain's.
        connection = _connect_readonly(path)
        try:
            row = connection.execute(
                "SELECT entry_hash FROM audit_log WHERE seq = ?", (checkpoint.seq,)
            ).fetchone()
        finally:
            connection.close()
        if row is None or stored_hash_text(row[0]) != checkpoint.head_hash:
            return None
    return VerifyResult(True, count, count, parent.hex())


def _verify_range(task: tuple[str, int, int]) -> tuple[bool, bytes, bytes]:
    """Worker: check entries start+1..end, trusting the first parent (the caller joins ranges)."""
    path, start, end = task
    connection = _connect_readonly(path)
    connection.text_factory = bytes
    try:
        rows = connection.execute(
            f"SELECT {AUDIT_COLUMNS}, {_types_ok(connection)} FROM audit_log"
            " WHERE seq > ? AND seq <= ? ORDER BY seq",
            (start, end),
        )
        first = rows.fetchone()
        if first is None or not isinstance(first[4], bytes):
            return False, b"", b""
        first_parent = raw_stored_hash(first[4])
        state = ScanState(start + 1, first_parent)
        failing = scan_rows(itertools.chain([first], rows), state)
    except sqlite3.Error:
        return False, b"", b""
    finally:
        connection.close()
    return failing is None and state.expected_seq == end + 1, first_parent, state.parent
