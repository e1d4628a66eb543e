"""Request and response bodies of the REST API (pydantic), and their conversions.

Request bodies forbid unknown fields, so an agent that sends `agent` or `environment` gets a
422 instead of having the field silently ignored: identity and environment come from the API
key. Amounts are text in major units (`"120.50"`), never JSON numbers, so no amount is ever a
binary float; the library then checks the currency's decimals and every bound.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from paywarden import limits
from paywarden.approval_request import ApprovalView
from paywarden.audit.chain import AuditEntry, VerifyResult
from paywarden.ledger.status import BudgetStatus
from paywarden.policy.decision import Decision
from paywarden.ports import (
    GrantRow,
    HaltRow,
    HoldRow,
    KeyRow,
    PaymentRow,
    RefundRow,
    SessionRow,
)

AMOUNT_PATTERN = r"^[0-9]{1,20}(\.[0-9]{1,18})?$"
IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
Amount = Field(
    pattern=AMOUNT_PATTERN,
    max_length=limits.amount_text_chars_max,
    description='Major units as text: ASCII digits and at most one dot, e.g. "120.50".',
    examples=["25.00"],
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Requests -------------------------------------------------------------------------------------


class PaymentRequest(Strict):
    """A payment intent as an agent sends it; the agent and environment come from its key."""

    action: str = Field(max_length=128, pattern=IDENTIFIER_PATTERN, examples=["x402.pay"])
    amount: str = Amount
    currency: str = Field(pattern=r"^[A-Za-z]{3,12}$", examples=["USD"])
    recipient: str = Field(
        min_length=1, max_length=limits.recipient_chars_max, examples=["api.example.com"]
    )
    category: str | None = Field(default=None, max_length=128, pattern=IDENTIFIER_PATTERN)
    purpose: str | None = Field(default=None, max_length=limits.free_text_chars_max)
    recipient_name: str | None = Field(default=None, max_length=limits.free_text_chars_max)
    rail: str | None = Field(default=None, max_length=128, pattern=IDENTIFIER_PATTERN)
    session_id: str | None = Field(default=None, max_length=128, pattern=IDENTIFIER_PATTERN)
    metadata: dict[str, str | int | bool | None] = Field(
        default_factory=dict, max_length=limits.metadata_entries_max
    )
    mandate: str | None = Field(
        default=None,
        max_length=65_536,
        description="An AP2 payment mandate chain (`~~`-joined SD-JWTs), see docs/ap2.md.",
    )


class RefundRequest(Strict):
    amount: str | None = Field(
        default=None,
        pattern=AMOUNT_PATTERN,
        max_length=limits.amount_text_chars_max,
        description="Major units as text; the whole unrefunded amount when left out.",
    )
    reason: str = Field(default="requested", min_length=1, max_length=200)


class VoteRequest(Strict):
    reason: str = Field(min_length=1, max_length=limits.free_text_chars_max)


class GrantCreate(Strict):
    agent: str = Field(pattern=IDENTIFIER_PATTERN)
    action: str = Field(max_length=128, pattern=r"^[A-Za-z0-9_.*:-]{1,128}$")
    currency: str = Field(pattern=r"^[A-Za-z]{3,12}$")
    per_payment: str = Amount
    total: str = Amount
    expires_in_seconds: int = Field(gt=0, le=limits.approval_ttl_seconds_max * 4)
    uses_max: int | None = Field(default=None, ge=1, le=1_000_000)
    recipients: list[str] = Field(default_factory=list, max_length=100)


class HaltRequest(Strict):
    agent: str | None = Field(default=None, pattern=IDENTIFIER_PATTERN)
    reason: str = Field(min_length=1, max_length=limits.free_text_chars_max)
    void_pending: bool = False


class ResumeRequest(Strict):
    agent: str | None = Field(default=None, pattern=IDENTIFIER_PATTERN)


class CaptureRequest(Strict):
    amount: str | None = Field(
        default=None,
        pattern=AMOUNT_PATTERN,
        max_length=limits.amount_text_chars_max,
        description="Major units as text, at most the held amount; all of it when left out.",
    )


class SessionStart(Strict):
    session_id: str | None = Field(
        default=None,
        max_length=128,
        pattern=IDENTIFIER_PATTERN,
        description="The session's id; a new `ses_...` id when left out.",
    )


class PhaseAdvance(Strict):
    phase: Literal["EXPLORE", "DECIDE", "COMMIT"] = Field(
        description="The next phase: EXPLORE -> DECIDE -> COMMIT, forward only."
    )


class KeyCreate(Strict):
    role: Literal["agent", "operator", "admin"]
    agent: str | None = Field(default=None, pattern=IDENTIFIER_PATTERN)
    operator: str | None = Field(default=None, pattern=IDENTIFIER_PATTERN)
    environment: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


class PolicyUpload(Strict):
    policy: str = Field(
        min_length=1, max_length=limits.policy_file_bytes_max, description="The policy YAML."
    )


# Responses ------------------------------------------------------------------------------------


class DecisionOut(BaseModel):
    decision_id: str | None
    outcome: Literal["allow", "deny", "require_approval"]
    reason_code: str
    reason: str
    rule_ids: list[str]
    warnings: list[str]
    hold_id: str | None
    approval_id: str | None
    replayed: bool
    policy_version: str
    trace: dict[str, Any] = Field(description="The proof trace: every rule and budget seen.")

    @classmethod
    def of(cls, decision: Decision) -> DecisionOut:
        return cls.model_validate(decision.to_dict())


class PaymentOut(BaseModel):
    payment_id: str
    decision_id: str
    hold_id: str
    agent: str
    rail: str
    amount_minor: int
    currency: str
    state: str
    rail_payment_id: str | None
    refunded_minor: int
    error: str | None
    created_us: int
    updated_us: int

    @classmethod
    def of(cls, row: PaymentRow) -> PaymentOut:
        return cls(
            payment_id=row.payment_id,
            decision_id=row.decision_id,
            hold_id=row.hold_id,
            agent=row.agent,
            rail=row.rail,
            amount_minor=row.amount_minor,
            currency=row.currency,
            state=row.state,
            rail_payment_id=row.rail_payment_id,
            refunded_minor=row.refunded_minor,
            error=row.error,
            created_us=row.created_us,
            updated_us=row.updated_us,
        )


class PaymentOutcomeOut(BaseModel):
    state: str = Field(description="The payment's state, or `not_submitted` when not allowed.")
    decision: DecisionOut
    payment: PaymentOut | None


class RefundOut(BaseModel):
    refund_id: str
    payment_id: str
    amount_minor: int
    currency: str
    state: str
    rail_refund_id: str | None
    reason: str
    actor: str
    error: str | None
    created_us: int
    updated_us: int

    @classmethod
    def of(cls, row: RefundRow) -> RefundOut:
        return cls(
            refund_id=row.refund_id,
            payment_id=row.payment_id,
            amount_minor=row.amount_minor,
            currency=row.currency,
            state=row.state,
            rail_refund_id=row.rail_refund_id,
            reason=row.reason,
            actor=row.actor,
            error=row.error,
            created_us=row.created_us,
            updated_us=row.updated_us,
        )


class ApprovalOut(BaseModel):
    approval_id: str
    status: str
    agent: str
    decision_id: str
    hold_id: str
    intent: dict[str, Any]
    required: int
    rule_ids: list[str]
    created_us: int
    expires_us: int
    decided_us: int | None
    note: str | None
    votes: list[dict[str, Any]]

    @classmethod
    def of(cls, view: ApprovalView) -> ApprovalOut:
        return cls.model_validate(view.to_dict())


class GrantOut(BaseModel):
    grant_id: str
    agent: str
    action: str
    currency: str
    per_payment_minor: int
    total_minor: int
    used_minor: int
    uses_max: int | None
    uses: int
    recipients: list[str]
    created_by: str
    created_us: int
    expires_us: int
    revoked_us: int | None

    @classmethod
    def of(cls, row: GrantRow) -> GrantOut:
        data: dict[str, Any] = {
            name: getattr(row, name) for name in cls.model_fields if name != "recipients"
        }
        return cls(**data, recipients=json.loads(row.recipients))


class BudgetOut(BaseModel):
    budget_id: str
    scope: str
    scope_key: str
    window: str
    window_start_us: int
    currency: str
    limit_minor: int
    spent_minor: int
    held_minor: int
    remaining_minor: int
    gate: str

    @classmethod
    def of(cls, row: BudgetStatus) -> BudgetOut:
        data = {name: getattr(row, name) for name in cls.model_fields}
        return cls(**data)


class HoldOut(BaseModel):
    hold_id: str
    decision_id: str
    agent: str
    amount_minor: int
    currency: str
    state: Literal["held", "captured", "voided", "expired"]
    created_us: int
    expires_us: int
    resolved_us: int | None
    captured_minor: int | None

    @classmethod
    def of(cls, row: HoldRow) -> HoldOut:
        data = {name: getattr(row, name) for name in cls.model_fields}
        return cls(**data)


class SessionOut(BaseModel):
    agent: str
    session_id: str
    phase: Literal["EXPLORE", "DECIDE", "COMMIT"]
    created_us: int
    updated_us: int

    @classmethod
    def of(cls, row: SessionRow) -> SessionOut:
        data = {name: getattr(row, name) for name in cls.model_fields}
        return cls(**data)


class HaltOut(BaseModel):
    scope: str = Field(description="`*` for every agent, else the agent halted.")
    reason: str
    actor: str
    created_us: int

    @classmethod
    def of(cls, row: HaltRow) -> HaltOut:
        return cls(scope=row.scope, reason=row.reason, actor=row.actor, created_us=row.created_us)


class ResumeOut(BaseModel):
    resumed: bool = Field(description="False when no halt was in force for that scope.")


class AuditEntryOut(BaseModel):
    seq: int
    created_us: int
    kind: str
    ref_id: str
    parent_hash: str
    entry_hash: str
    body: dict[str, Any]

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryOut:
        return cls(
            seq=entry.seq,
            created_us=entry.created_us,
            kind=entry.kind,
            ref_id=entry.ref_id,
            parent_hash=entry.parent_hash,
            entry_hash=entry.entry_hash,
            body=json.loads(entry.body),
        )


class VerifyOut(BaseModel):
    ok: bool
    entries_checked: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None
    reason: str | None

    @classmethod
    def of(cls, result: VerifyResult) -> VerifyOut:
        return cls(
            ok=result.ok,
            entries_checked=result.entries_checked,
            head_seq=result.head_seq,
            head_hash=result.head_hash,
            first_bad_seq=result.first_bad_seq,
            reason=result.reason,
        )


class KeyOut(BaseModel):
    key_id: str
    prefix: str
    role: Literal["agent", "operator", "admin"]
    agent: str | None
    operator: str | None
    environment: str | None
    created_by: str
    created_us: int
    revoked_us: int | None

    @classmethod
    def of(cls, row: KeyRow) -> KeyOut:
        data = {name: getattr(row, name) for name in cls.model_fields}
        return cls(**data)


class KeyCreated(BaseModel):
    key: str = Field(description="The API key. It is shown only in this response.")
    details: KeyOut


class PolicyOut(BaseModel):
    loaded: bool
    version: str | None
    source: str
    reason_code: str | None
    problems: list[dict[str, Any]]


class Health(BaseModel):
    status: Literal["ok", "ready", "not_ready"]
    problems: list[str] = Field(default_factory=list)
    policy_version: str | None = None


class Readiness(Health):
    """`/readyz`: readiness, the writes waiting for the store now (`Warden.backlog()`), and the
    writes this process refused with 503 `store_overloaded` since it started."""

    store_backlog: int = 0
    overload_refusals: int = 0
