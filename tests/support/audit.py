"""The audit log read back: straight from the SQLite file (read-only, as an auditor would) or
through the Warden's own reader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from paywarden import Warden
from paywarden.adapters.storage.sqlite_audit import iter_audit_readonly
from paywarden.audit.chain import AuditEntry

PAGE = 1000  # more entries than any test writes


def entries(database: Path, ref_id: str | None = None) -> list[AuditEntry]:
    """Every entry in the file, oldest first; only those about `ref_id` when it is given."""
    if ref_id is None:
        return list(iter_audit_readonly(database))
    return list(iter_audit_readonly(database, ref_id=ref_id))


def kinds_of(database: Path, ref_id: str) -> list[str]:
    """The kinds of the entries about `ref_id`, oldest first."""
    return [entry.kind for entry in entries(database) if entry.ref_id == ref_id]


def bodies(database: Path, kind: str) -> list[dict[str, Any]]:
    """The decoded bodies of every entry of `kind`, oldest first."""
    return [json.loads(entry.body) for entry in entries(database) if entry.kind == kind]


def audit_count(warden: Warden) -> int:
    return len(warden.audit_entries(0, PAGE))


def new_entries(warden: Warden, before: int) -> list[AuditEntry]:
    """The entries appended since the log held `before` of them."""
    return warden.audit_entries(before, PAGE)
