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

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass

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
    expected_seq, parent_hash, checked = 1, GENESIS_PARENT, 0
    # A checkpoint of the empty log (seq 0) is the genesis parent, which every log extends.
    checkpoint_seen = (
        checkpoint is not None and checkpoint.seq == 0 and checkpoint.head_hash == GENESIS_PARENT
    )
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
