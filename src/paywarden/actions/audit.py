"""Reading and proving the audit log: entries, an object's trail, verification, checkpoints.

Reading never changes the log; verification recomputes the chain read-only; a checkpoint signs
the head with a key that never lives in the store.
"""

from __future__ import annotations

from paywarden.actions import alerts
from paywarden.audit.chain import AuditEntry, Checkpoint, VerifyResult
from paywarden.audit.checkpoint import SignedCheckpoint
from paywarden.audit.service import verify_store
from paywarden.runtime import Runtime


def audit_entries(rt: Runtime, after_seq: int = 0, limit: int = 100) -> list[AuditEntry]:
    """Audit entries after `after_seq`, oldest first, at most `limit` (1 to 1000)."""
    with rt.store.read() as tx:
        return tx.audit.list_after(max(after_seq, 0), max(1, min(limit, 1000)))


def audit_trail(rt: Runtime, ref_id: str) -> list[AuditEntry]:
    """The audit entries about one object (a decision, hold, payment, approval, scope,
    `agent/session` or policy version), oldest first. A payment's entries include its refunds
    and disputes."""
    with rt.store.read() as tx:
        return tx.audit.list_by_ref(ref_id)


def verify_audit(rt: Runtime, checkpoint: Checkpoint | None = None) -> VerifyResult:
    """Recompute the audit chain (read-only); check it against a verified checkpoint. A
    failure raises the policy's `audit_failure` alerts (once per broken entry)."""
    result = verify_store(rt.store, checkpoint)
    alerts.audit_failed(rt, result)
    return result


def checkpoint(rt: Runtime) -> SignedCheckpoint:
    """Sign the audit head now (and write it to the checkpoint directory, if configured)."""
    return rt.checkpoints.checkpoint()
