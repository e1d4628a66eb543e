"""The stores the contract suite runs against, and rows to put in them.

Every test in tests/contract/ takes the `store` fixture (conftest.py), which is parametrized over
STORES, so each store runs the same suite. A new store is one more line in STORES: a function
from a fresh, empty directory to a new, empty, migrated store (the PostgreSQL store of issue 15
creates a fresh schema and drops it on `close()`).

The PostgreSQL entry needs the server of `tests/postgres/conftest.py` (PAYWARDEN_TEST_POSTGRES,
default `postgresql://postgres@127.0.0.1:5432/test`); without one it is skipped, and in CI
(`CI=true`) it fails instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory

import pytest

from paywarden.adapters.storage.sqlite import SQLiteStore
from paywarden.audit.chain import AuditEntry
from paywarden.ports import (
    ApprovalRow,
    ApprovalStatus,
    ChargeRow,
    DisputeRow,
    GrantRow,
    HoldRow,
    KeyRow,
    NewDecision,
    PaymentRow,
    PaymentState,
    RefundRow,
    ScopeRow,
    ScopeStepRow,
    Store,
)

StoreFactory = Callable[[Path], Store]

POSTGRES_URL = os.environ.get(
    "PAYWARDEN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


def postgres_store(directory: Path) -> Store:
    """A PostgreSQL store in a schema of its own, dropped when the store closes."""
    try:
        from paywarden.adapters.storage.postgres import PostgresStore
        from paywarden.errors import StoreError
    except ImportError as error:  # the `postgres` extra is not installed
        return _unavailable(f"psycopg is not installed: {error}")
    schema = f"contract_{uuid.uuid4().hex[:12]}"

    class SchemaStore(PostgresStore):
        def close(self) -> None:
            super().close()
            drop_schema(schema)

    try:
        return SchemaStore(f"{POSTGRES_URL}?schema={schema}", connect_timeout_seconds=3)
    except StoreError as error:
        drop_schema(schema)
        return _unavailable(str(error))


def drop_schema(schema: str) -> None:
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as connection:
            connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    except psycopg.OperationalError:
        pass  # no server: nothing was created


def _unavailable(reason: str) -> Store:
    """No PostgreSQL here: skip, except in CI, where PostgreSQL tests must run (fail)."""
    message = f"PostgreSQL unavailable at {POSTGRES_URL}: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


STORES: dict[str, StoreFactory] = {
    "sqlite-memory": lambda directory: SQLiteStore(":memory:"),
    "sqlite-file": lambda directory: SQLiteStore(directory / "contract.db"),
    "postgres": postgres_store,
}


@contextmanager
def fresh_store(name: str) -> Iterator[Store]:
    """A new empty store of the named kind, for tests (Hypothesis) that need one per example."""
    with TemporaryDirectory(prefix="paywarden-contract-") as directory:
        store = STORES[name](Path(directory))
        try:
            yield store
        finally:
            store.close()


# Rows. Every field of a row gets a value that no other field of it has, so a store that
# swapped two columns cannot return an equal row.

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds
HOUR_US = 3_600_000_000


def entry(
    seq: int, ref_id: str = "ref_1", kind: str = "test.event", body: str = "{}"
) -> AuditEntry:
    return AuditEntry(seq, T0 + seq, kind, ref_id, f"{seq - 1:064x}", f"{seq:064x}", body)


def decision(
    decision_id: str = "dec_1",
    agent: str = "agent-1",
    idempotency_key: str | None = "key-1",
    audit_seq: int = 1,
) -> NewDecision:
    return NewDecision(
        decision_id=decision_id,
        created_us=T0 + 1,
        agent=agent,
        action="payments.transfer",
        amount_minor=2500,
        currency="USD",
        recipient="vendor.example",
        outcome="allow",
        reason_code="allowed",
        idempotency_key=idempotency_key,
        fingerprint=f"fp-{decision_id}",
        hold_id=f"hld-of-{decision_id}",
        policy_version="pv_1",
        audit_seq=audit_seq,
    )


def hold(
    hold_id: str = "hld_1",
    amount_minor: int = 1000,
    currency: str = "USD",
    created_us: int = T0,
    expires_us: int = T0 + HOUR_US,
    agent: str = "agent-1",
) -> HoldRow:
    return HoldRow(
        hold_id=hold_id,
        decision_id=f"dec-of-{hold_id}",
        agent=agent,
        amount_minor=amount_minor,
        currency=currency,
        state="held",
        created_us=created_us,
        expires_us=expires_us,
        resolved_us=None,
        captured_minor=None,
    )


def charge(
    hold_id: str = "hld_1",
    budget_id: str = "daily",
    amount_minor: int = 1000,
    window_start_us: int = 0,
    scope_key: str = "agent-1",
) -> ChargeRow:
    return ChargeRow(hold_id, budget_id, scope_key, window_start_us, amount_minor)


def approval(
    approval_id: str = "apr_1",
    agent: str = "agent-1",
    status: ApprovalStatus = "pending",
    created_us: int = T0,
    hold_id: str | None = None,
    binding: str = "binding-1",
) -> ApprovalRow:
    return ApprovalRow(
        approval_id=approval_id,
        decision_id=f"dec-of-{approval_id}",
        hold_id=hold_id or f"hld-of-{approval_id}",
        agent=agent,
        binding=binding,
        intent='{"amount": "25.00"}',
        status=status,
        required=2,
        rule_ids='["needs-approval"]',
        created_us=created_us,
        expires_us=created_us + HOUR_US,
        decided_us=None,
        note=None,
    )


def grant(
    grant_id: str = "grt_1",
    agent: str = "agent-1",
    created_us: int = T0,
    uses_max: int | None = 3,
) -> GrantRow:
    return GrantRow(
        grant_id=grant_id,
        agent=agent,
        action="payments.*",
        currency="USD",
        per_payment_minor=500,
        total_minor=1200,
        used_minor=0,
        uses_max=uses_max,
        uses=0,
        recipients='["*.example"]',
        created_by="op-1",
        created_us=created_us,
        expires_us=created_us + HOUR_US,
        revoked_us=None,
    )


def payment(
    payment_id: str = "pay_1",
    agent: str = "agent-1",
    state: PaymentState = "settled",
    created_us: int = T0,
    amount_minor: int = 1000,
) -> PaymentRow:
    return PaymentRow(
        payment_id=payment_id,
        decision_id=f"dec-of-{payment_id}",
        hold_id=f"hld-of-{payment_id}",
        agent=agent,
        rail="sandbox",
        rail_key=f"pw_{payment_id}",
        intent='{"amount": "10.00"}',
        amount_minor=amount_minor,
        currency="USD",
        state=state,
        rail_payment_id=None,
        refunded_minor=0,
        error=None,
        created_us=created_us,
        updated_us=created_us + 7,
    )


def refund(
    refund_id: str = "rfd_1", payment_id: str = "pay_1", rail_key: str = "pw_pay_1_r1"
) -> RefundRow:
    return RefundRow(
        refund_id=refund_id,
        payment_id=payment_id,
        amount_minor=300,
        currency="USD",
        state="submitted",
        rail_key=rail_key,
        rail_refund_id=None,
        reason="duplicate charge",
        actor="op-1",
        error=None,
        created_us=T0,
        updated_us=T0 + 9,
    )


def dispute(
    dispute_id: str = "dsp_1", payment_id: str = "pay_1", created_us: int = T0
) -> DisputeRow:
    return DisputeRow(
        dispute_id=dispute_id,
        payment_id=payment_id,
        status="open",
        reason="not delivered",
        evidence='{"trace": []}',
        opened_by="op-1",
        resolution=None,
        refund_id=None,
        created_us=created_us,
        updated_us=created_us + 5,
    )


def scope(scope_id: str = "scp_1", created_us: int = T0) -> ScopeRow:
    return ScopeRow(scope_id, "agent-1", "open", created_us, created_us + 3)


def step(scope_id: str = "scp_1", number: int = 0) -> ScopeStepRow:
    return ScopeStepRow(scope_id, number, f"pay_{number}", f"step {number}", "registered", None, T0)


def api_key(key_id: str = "key_1", created_us: int = T0) -> KeyRow:
    return KeyRow(
        key_id=key_id,
        prefix=f"pw_live_{key_id}",
        digest="d" * 64,
        role="agent",
        agent="agent-1",
        operator=None,
        environment="live",
        created_by="admin",
        created_us=created_us,
        revoked_us=None,
    )
