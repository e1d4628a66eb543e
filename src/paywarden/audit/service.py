"""Audit operations over a store: checkpoints (periodic and on demand) and verification."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from paywarden.audit.chain import AuditEntry, Checkpoint, VerifyResult, verify
from paywarden.audit.checkpoint import (
    SignedCheckpoint,
    SigningKeyMissingError,
    load_private_key,
    sign,
    write_checkpoint,
)
from paywarden.clock import Clock, to_us
from paywarden.ports import Store

VERIFY_PAGE_ENTRIES = 20_000


@dataclass(frozen=True, slots=True)
class AuditOptions:
    """Where checkpoints go and how they are signed. The key never lives in the store."""

    signing_key: Path | None = None
    checkpoint_dir: Path | None = None
    checkpoint_every: int = 1000
    origin: str = "paywarden"


def iter_entries(store: Store, page_entries: int = VERIFY_PAGE_ENTRIES) -> Iterator[AuditEntry]:
    after = 0
    while True:
        with store.read() as tx:
            page = tx.audit.list_after(after, page_entries)
        if not page:
            return
        yield from page
        after = page[-1].seq


class Checkpointer:
    """Signs the store's head; writes checkpoints every `checkpoint_every` entries."""

    def __init__(self, store: Store, options: AuditOptions, clock: Clock) -> None:
        self._store = store
        self._options = options
        self._clock = clock
        self._last_seq = 0

    def checkpoint(self) -> SignedCheckpoint:
        if self._options.signing_key is None:
            raise SigningKeyMissingError(
                "no audit signing key is configured (paywarden audit keygen)"
            )
        with self._store.read() as tx:
            head = tx.audit.get_head()
        seq, head_hash = (head.seq, head.entry_hash) if head else (0, "00" * 32)
        signed = sign(
            Checkpoint(self._options.origin, seq, head_hash, to_us(self._clock.now())),
            load_private_key(self._options.signing_key),
        )
        if self._options.checkpoint_dir is not None:
            write_checkpoint(self._options.checkpoint_dir, signed)
        self._last_seq = seq
        return signed

    def maybe_checkpoint(self) -> None:
        """Called after writes: checkpoint when enough entries were appended since the last."""
        options = self._options
        if options.signing_key is None or options.checkpoint_dir is None:
            return
        with self._store.read() as tx:
            head = tx.audit.get_head()
        if head is not None and head.seq - self._last_seq >= options.checkpoint_every:
            self.checkpoint()


def verify_store(store: Store, checkpoint: Checkpoint | None = None) -> VerifyResult:
    return verify(iter_entries(store), checkpoint)
