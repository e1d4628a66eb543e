"""The audit hash chain, modelled on TigerBeetle's `Prepare.parent`.

Each entry stores its sequence number, its parent hash and its own hash; the genesis parent is
all zeros. The hash covers, with domain separation, the parent hash, the sequence number, the
time, the kind, the reference id and the entry's canonical body bytes, so editing any stored
column breaks the entry, and deleting, inserting or reordering entries breaks the links.

A chain alone cannot reveal a deleted tail or a suffix rewritten by someone who can write the
database; `verify` therefore also checks the chain against a signed checkpoint held outside it.
`verify` only reads: it never modifies the log.
"""

from __future__ import annotations

import binascii
import hashlib
import itertools
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

DOMAIN = b"paywarden.audit.v1\x00"
GENESIS_PARENT = "00" * 32


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One stored entry. `body` is canonical JSON text (see canonical.py)."""

    seq: int
    created_us: int
    kind: str
    ref_id: str
    parent_hash: str
    entry_hash: str
    body: str


_HEADER = struct.Struct(">32sQq")
_LENGTH = struct.Struct(">I")


def entry_hash(
    parent_hash: str, seq: int, created_us: int, kind: str, ref_id: str, body: str
) -> str:
    """SHA-256 over the domain tag and every field; variable fields are length-prefixed, so no
    two different entries can share the hashed bytes by shifting a field boundary."""
    kind_bytes = kind.encode("utf-8", "surrogateescape")
    ref_bytes = ref_id.encode("utf-8", "surrogateescape")
    body_bytes = body.encode("utf-8", "surrogateescape")
    return hashlib.sha256(
        b"".join(
            (
                DOMAIN,
                _HEADER.pack(bytes.fromhex(parent_hash), seq, created_us),
                _LENGTH.pack(len(kind_bytes)),
                kind_bytes,
                _LENGTH.pack(len(ref_bytes)),
                ref_bytes,
                _LENGTH.pack(len(body_bytes)),
                body_bytes,
            )
        )
    ).hexdigest()


def link(
    parent: AuditEntry | None, created_us: int, kind: str, ref_id: str, body: str
) -> AuditEntry:
    """The next entry after `parent` (None for the genesis entry)."""
    seq = 1 if parent is None else parent.seq + 1
    parent_hash = GENESIS_PARENT if parent is None else parent.entry_hash
    digest = entry_hash(parent_hash, seq, created_us, kind, ref_id, body)
    return AuditEntry(seq, created_us, kind, ref_id, parent_hash, digest, body)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement that the log had `seq` entries ending in `head_hash` at `time_us`."""

    origin: str
    seq: int
    head_hash: str
    time_us: int


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of a verification: ok, or the first broken link and why."""

    ok: bool
    entries_checked: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    reason: str | None = None

    def describe(self) -> str:
        if self.ok:
            head = f"{self.head_seq} {self.head_hash[:16]}"
            return f"ok: {self.entries_checked} entries verified, head {head}"
        return f"broken at seq {self.first_bad_seq}: {self.reason}"


def verify(entries: Iterable[AuditEntry], checkpoint: Checkpoint | None = None) -> VerifyResult:
    """Recompute the chain from the genesis entry; report the first broken link and why.

    With a checkpoint, the log must still contain the checkpointed entry with the same hash
    (which catches a rewritten suffix) and must not end before it (which catches truncation).
    """
    # A checkpoint of the empty log (seq 0) is the genesis parent, which every log extends.
    seen = checkpoint is not None and checkpoint.seq == 0 and checkpoint.head_hash == GENESIS_PARENT
    return _verify_from(entries, checkpoint, 1, GENESIS_PARENT, seen)


def _verify_from(
    entries: Iterable[AuditEntry],
    checkpoint: Checkpoint | None,
    expected_seq: int,
    parent_hash: str,
    checkpoint_seen: bool,
) -> VerifyResult:
    checked = expected_seq - 1
    for entry in entries:
        problem = _check_entry(entry, expected_seq, parent_hash)
        if problem is not None:
            bad_seq = entry.seq if type(entry.seq) is int else expected_seq
            return VerifyResult(False, checked, expected_seq - 1, parent_hash, bad_seq, problem)
        if checkpoint is not None and entry.seq == checkpoint.seq:
            if entry.entry_hash != checkpoint.head_hash:
                return VerifyResult(
                    False,
                    checked,
                    expected_seq - 1,
                    parent_hash,
                    entry.seq,
                    "entry differs from the signed checkpoint (suffix rewritten)",
                )
            checkpoint_seen = True
        checked += 1
        expected_seq, parent_hash = entry.seq + 1, entry.entry_hash
    head_seq = expected_seq - 1
    if checkpoint is not None and not checkpoint_seen:
        return VerifyResult(
            False,
            checked,
            head_seq,
            parent_hash,
            head_seq + 1,
            f"log ends at seq {head_seq} but the signed checkpoint covers seq "
            f"{checkpoint.seq} (entries deleted from the tail)",
        )
    return VerifyResult(True, checked, head_seq, parent_hash)


RawRow = tuple[Any, ...]  # stored values, types unchecked until verified


def _as_entry(row: RawRow) -> AuditEntry:
    """A stored row as an entry, bytes decoded (bad UTF-8 kept as surrogate escapes).

    A row may carry an eighth value, the store's own check that every column has its declared
    type; when it says no, the text columns stay undecoded so the entry reports the wrong type.
    """
    if len(row) > 7 and not row[7]:
        return AuditEntry(*row[:7])
    fields: list[Any] = [
        v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else v for v in row[:7]
    ]
    return AuditEntry(*fields)


@dataclass(slots=True)
class ScanState:
    """Where a fast scan stands: the next expected seq and the previous entry's hash."""

    expected_seq: int
    parent: bytes  # hex, as stored
    parent_raw: bytes  # the same hash as 32 raw bytes
    checkpoint_seen: bool = False


def scan_rows(
    iterator: Iterator[RawRow], state: ScanState, checkpoint: Checkpoint | None = None
) -> RawRow | None:
    """Advance `state` over good rows; return the first row that does not pass, or None.

    This is the hot loop of verification: one hash and a few comparisons per good entry.
    """
    sha256, pack, length, hexlify = hashlib.sha256, _HEADER.pack, _LENGTH.pack, binascii.hexlify
    expected_seq, parent, parent_raw = state.expected_seq, state.parent, state.parent_raw
    checkpoint_seq = checkpoint.seq if checkpoint is not None else -1
    checkpoint_hash = checkpoint.head_hash.encode("ascii") if checkpoint is not None else b""
    failing: RawRow | None = None
    for row in iterator:
        seq, created_us, kind, ref_id, parent_hash, stored_hash, body = row[:7]
        try:
            good = (
                (len(row) == 7 or row[7] == 1)
                and seq == expected_seq
                and parent_hash == parent
                and (seq != checkpoint_seq or stored_hash == checkpoint_hash)
            )
            if good:
                digest = sha256(
                    b"".join(
                        (
                            DOMAIN,
                            pack(parent_raw, seq, created_us),
                            length(len(kind)),
                            kind,
                            length(len(ref_id)),
                            ref_id,
                            length(len(body)),
                            body,
                        )
                    )
                ).digest()
                good = hexlify(digest) == stored_hash
        except (TypeError, ValueError, struct.error, OverflowError):
            good = False
        if not good:
            failing = row
            break
        state.checkpoint_seen = state.checkpoint_seen or seq == checkpoint_seq
        expected_seq, parent, parent_raw = expected_seq + 1, stored_hash, digest
    state.expected_seq, state.parent, state.parent_raw = expected_seq, parent, parent_raw
    return failing


def verify_rows(rows: Iterable[RawRow], checkpoint: Checkpoint | None = None) -> VerifyResult:
    """`verify` over raw stored rows `(seq, created_us, kind, ref_id, parent_hash, entry_hash,
    body[, types_ok])` whose text columns are bytes, as a database read with a bytes text
    factory returns them: the fast path for large logs.

    At the first row that does not pass, verification continues on the precise path of
    `verify`, so every reason and checkpoint rule is the same on both paths.
    """
    iterator = iter(rows)
    genesis = GENESIS_PARENT.encode("ascii")
    state = ScanState(1, genesis, bytes(32))
    state.checkpoint_seen = (
        checkpoint is not None and checkpoint.seq == 0 and checkpoint.head_hash == GENESIS_PARENT
    )
    failing = scan_rows(iterator, state, checkpoint)
    parent = state.parent.decode("ascii", "replace")
    if failing is None:
        return _verify_from((), checkpoint, state.expected_seq, parent, state.checkpoint_seen)
    rest = itertools.chain([_as_entry(failing)], (_as_entry(row) for row in iterator))
    return _verify_from(rest, checkpoint, state.expected_seq, parent, state.checkpoint_seen)


def _check_entry(entry: AuditEntry, expected_seq: int, parent_hash: str) -> str | None:
    # Stored rows come from outside (a database anyone with write access may rebuild, an
    # export file): a field of the wrong type is a broken entry, never a crash of the verifier.
    numbers = (entry.seq, entry.created_us)
    texts = (entry.kind, entry.ref_id, entry.parent_hash, entry.entry_hash, entry.body)
    if any(type(value) is not int for value in numbers) or any(
        type(value) is not str for value in texts
    ):
        return "entry has a field of the wrong type (column types changed)"
    if entry.seq != expected_seq:
        if entry.seq > expected_seq:
            return f"sequence jumps from {expected_seq - 1} to {entry.seq} (entries deleted)"
        return f"sequence {entry.seq} repeats or goes backwards after {expected_seq - 1}"
    if entry.parent_hash != parent_hash:
        return "parent hash does not match the previous entry (entry inserted, removed or moved)"
    try:
        recomputed = entry_hash(
            entry.parent_hash, entry.seq, entry.created_us, entry.kind, entry.ref_id, entry.body
        )
    except (struct.error, OverflowError, UnicodeEncodeError):
        return "entry has a value that cannot be encoded (entry edited)"
    if recomputed != entry.entry_hash:
        return "entry hash does not match its contents (entry edited)"
    return None
