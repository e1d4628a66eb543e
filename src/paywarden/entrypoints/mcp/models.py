"""The typed (structured) outputs of the MCP tools.

Every tool publishes one of these models as its output schema, so an MCP client receives the
same fields as JSON (`structuredContent`) and as text. Amounts come twice: exact minor units
(`*_minor`, an integer) and the same value as decimal text in major units (`amount`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

PaymentStatus = Literal[
    "paid", "processing", "approval_required", "denied", "failed", "not_submitted"
]


class ToolFailure(BaseModel):
    """What an `isError` tool result carries in `structuredContent`."""

    code: str = Field(description="A paywarden reason or error code, such as `not_found`.")
    message: str = Field(description="What went wrong, in plain words.")


class PaymentView(BaseModel):
    payment_id: str
    decision_id: str
    state: str = Field(
        description="authorized, submitted, settled, failed, unknown (being reconciled) or "
        "refunded."
    )
    action: str
    amount: str = Field(description="Amount in major units, as exact decimal text.")
    amount_minor: int
    currency: str
    recipient: str
    rail: str
    rail_payment_id: str | None
    refunded_minor: int
    error: str | None
    created_at: str = Field(description="ISO 8601, UTC.")
    updated_at: str = Field(description="ISO 8601, UTC.")


class ReceiptView(BaseModel):
    status: str = Field(description="The rail's answer: settled, pending, failed or unknown.")
    rail_payment_id: str | None
    error: str | None


class PaymentRequestResult(BaseModel):
    """The answer to `request_payment`."""

    status: PaymentStatus = Field(
        description="paid: the money moved. processing: submitted, outcome not final yet. "
        "approval_required: a human must approve first. denied: the policy said no. "
        "failed: allowed, but the rail did not pay. not_submitted: allowed, not yet paid."
    )
    outcome: Literal["allow", "deny", "require_approval"]
    reason_code: str = Field(description="Why, as a stable code (see docs/reason-codes.md).")
    reason: str = Field(description="Why, in plain words for the agent to adapt to.")
    next_step: str = Field(description="What the agent can do now.")
    decision_id: str | None
    approval_id: str | None = Field(
        description="The approval request to poll with get_approval_status, when one is open."
    )
    rule_ids: list[str]
    warnings: list[str]
    replayed: bool = Field(description="True when an idempotency key returned an earlier answer.")
    payment: PaymentView | None
    receipt: ReceiptView | None


class PaymentList(BaseModel):
    payments: list[PaymentView]
    count: int


class BudgetView(BaseModel):
    budget_id: str
    scope: str = Field(description="global, agent, session, recipient, category or action.")
    scope_key: str | None = Field(
        description="The bucket shown: `*` for global, the agent id for agent budgets; null for "
        "budgets counted per session, recipient, category or action (one bucket each)."
    )
    window: str = Field(description="hour, day, week, month, lifetime or `<n>s rolling`.")
    currency: str
    limit: str
    limit_minor: int
    spent_minor: int | None = Field(description="Null when the budget has one bucket per value.")
    held_minor: int | None
    remaining_minor: int | None
    remaining: str | None = Field(description="Room left in major units; null as above.")
    gate: str | None = Field(description="ok, warn, restrict (approval needed), halt or over.")
    actions: list[str] | None = Field(description="The actions it counts; null for every action.")
    summary: str


class BudgetList(BaseModel):
    agent: str
    budgets: list[BudgetView]


class VoteView(BaseModel):
    operator_id: str
    vote: str
    reason: str
    created_at: str


class ApprovalStatusView(BaseModel):
    approval_id: str
    status: str = Field(
        description="pending, approved (request the same payment again to use it), consumed "
        "(used by a payment), rejected, expired or voided."
    )
    decision_id: str
    action: str
    amount: str
    amount_minor: int
    currency: str
    recipient: str
    required_approvals: int
    approvals: int
    votes: list[VoteView]
    created_at: str
    expires_at: str
    decided_at: str | None
    note: str | None
    next_step: str


class RuleView(BaseModel):
    rule_id: str
    effect: Literal["deny", "require_approval", "allow"]
    conditions: list[str]
    reason: str


class VelocityView(BaseModel):
    velocity_id: str
    scope: str
    max_count: int | None
    window_seconds: int
    cooldown_seconds: int
    actions: list[str] | None
    summary: str


class LimitsView(BaseModel):
    agent: str
    environment: str | None = Field(
        description="The environment the key is bound to; null: the deployment's own."
    )
    policy_version: str | None
    default_currency: str | None
    summary: list[str] = Field(description="Plain-words sentences, one per rule, budget or limit.")
    rules: list[RuleView]
    budgets: list[BudgetView]
    velocity: list[VelocityView]
    approvals_ttl_seconds: int | None
    two_person_above: str | None


class SessionView(BaseModel):
    """One of the agent's tracked sessions (`start_session`, `advance_session_phase`,
    `get_session`)."""

    session_id: str
    phase: Literal["EXPLORE", "DECIDE", "COMMIT"] = Field(
        description="EXPLORE, then DECIDE, then COMMIT: forward only, COMMIT is final."
    )
    next_phase: Literal["DECIDE", "COMMIT"] | None = Field(
        description="The only phase this session may move to next; null in COMMIT."
    )
    payment_phases: list[str] = Field(
        description="The phases in which the policy lets a tracked session pay."
    )
    can_pay: bool = Field(description="Whether the policy lets this session pay in its phase.")
    created_at: str = Field(description="ISO 8601, UTC.")
    updated_at: str = Field(description="ISO 8601, UTC.")
    next_step: str
