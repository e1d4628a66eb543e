"""What an agent may do through MCP, independent of MCP: pay, and read its own state.

Every method takes the `Caller` resolved from the API key. The agent id and the environment of
a payment come from the caller, never from arguments. Another agent's payment or approval
reads exactly like one that does not exist (`not_found`), so ids cannot be probed. Nothing here
changes policy, approves, grants, halts or acts for another agent.

The methods are synchronous (SQLite and the rail block); the MCP server runs them on worker
threads.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from paywarden.actions.payments import PaymentOutcome
from paywarden.approval_request import ApprovalView
from paywarden.errors import ForbiddenError, InvalidInputError, NotFoundError
from paywarden.intent import MetadataValue, PaymentIntent
from paywarden.keys import Principal
from paywarden.money import DEFAULT_CURRENCIES, CurrencyTable, format_minor
from paywarden.policy.loading import LoadedPolicy
from paywarden.policy.workflow_settings import TRANSITIONS
from paywarden.ports import PaymentRow, SessionRow
from paywarden.warden import Warden

from . import limits_view
from .models import (
    ApprovalStatusView,
    BudgetList,
    LimitsView,
    PaymentList,
    PaymentRequestResult,
    PaymentStatus,
    PaymentView,
    ReceiptView,
    SessionView,
    VoteView,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TRANSIENT = frozenset({"store_busy", "store_unavailable", "internal_error"})
_WAIT = frozenset({"rate_limit_exceeded", "cooldown_active"})
_BUDGET = frozenset({"budget_exceeded", "budget_halt", "currency_not_convertible"})


@dataclass(frozen=True, slots=True)
class Caller:
    """The agent an API key acts as."""

    key_id: str
    agent: str
    environment: str | None
    actor: str


def caller_of(principal: Principal) -> Caller:
    """The agent behind an agent key; `ForbiddenError` for operator and admin keys."""
    if principal.role != "agent" or not principal.agent:
        raise ForbiddenError(
            f"the MCP tools are for agent keys only; key `{principal.key_id}` is an "
            f"{principal.role} key"
        )
    return Caller(principal.key_id, principal.agent, principal.environment, principal.actor)


def iso(us: int | None) -> str | None:
    return None if us is None else (_EPOCH + timedelta(microseconds=us)).isoformat()


@dataclass(frozen=True, slots=True)
class PaymentArgs:
    """The payment an agent asks for; everything else comes from its key."""

    action: str
    amount: str
    currency: str
    recipient: str
    category: str | None = None
    purpose: str | None = None
    recipient_name: str | None = None
    rail: str | None = None
    session_id: str | None = None
    idempotency_key: str | None = None
    metadata: Mapping[str, MetadataValue] | None = None


WardenSource = Warden | Callable[[], Warden]


def resolve(source: WardenSource) -> Warden:
    """The Warden itself, or the one a provider returns now (a host app may open it later)."""
    return source if isinstance(source, Warden) else source()


class AgentTools:
    """The agent's operations on one Warden; a reloaded policy is picked up on the next call."""

    def __init__(self, warden: WardenSource) -> None:
        self._source = warden
        self._policy_view: tuple[LoadedPolicy, CurrencyTable, limits_view.Filters] | None = None

    def _open(self) -> tuple[Warden, CurrencyTable, limits_view.Filters]:
        """The Warden, and the currency table and filters of its policy as loaded now."""
        warden = resolve(self._source)
        loaded = warden.loaded_policy
        view = self._policy_view  # one read: threads may replace it concurrently
        if view is None or view[0] is not loaded:  # first use, or the policy was reloaded
            policy = loaded.policy
            currencies = policy.currencies if policy else DEFAULT_CURRENCIES
            view = (loaded, currencies, limits_view.read_filters(loaded.text))
            self._policy_view = view
        return warden, view[1], view[2]

    # Paying -----------------------------------------------------------------------------------

    def refuse(
        self, caller: Caller, fields: Mapping[str, object], error: InvalidInputError
    ) -> None:
        """Record a request whose arguments could not become an intent (sets its decision id)."""
        warden = resolve(self._source)
        warden.refuse(agent=caller.agent, fields=fields, error=error, actor=caller.actor)

    def request_payment(self, caller: Caller, args: PaymentArgs) -> PaymentRequestResult:
        warden, currencies, _ = self._open()
        try:
            intent = self._intent(caller, args, currencies)
        except InvalidInputError as error:
            self.refuse(caller, dataclasses.asdict(args), error)
            raise
        outcome = warden.pay(intent, actor=caller.actor)
        return self._result(outcome, currencies)

    @staticmethod
    def _intent(caller: Caller, args: PaymentArgs, currencies: CurrencyTable) -> PaymentIntent:
        return PaymentIntent(
            agent=caller.agent,
            environment=caller.environment,
            action=args.action,
            amount=args.amount,
            currency=args.currency,
            recipient=args.recipient,
            category=args.category,
            purpose=args.purpose,
            recipient_name=args.recipient_name,
            rail=args.rail,
            session_id=args.session_id,
            idempotency_key=args.idempotency_key,
            metadata=args.metadata,
            currencies=currencies,
        )

    def _result(self, outcome: PaymentOutcome, currencies: CurrencyTable) -> PaymentRequestResult:
        decision = outcome.decision
        payment = _payment_view(outcome.payment, currencies) if outcome.payment else None
        status = _status(outcome)
        receipt = outcome.receipt
        return PaymentRequestResult(
            status=status,
            outcome=decision.outcome,
            reason_code=decision.reason_code,
            reason=decision.reason,
            next_step=_next_step(status, outcome),
            decision_id=decision.decision_id,
            approval_id=decision.approval_id,
            rule_ids=list(decision.rule_ids),
            warnings=list(decision.warnings),
            replayed=decision.replayed,
            payment=payment,
            receipt=(
                ReceiptView(
                    status=receipt.status,
                    rail_payment_id=receipt.rail_payment_id,
                    error=receipt.error,
                )
                if receipt
                else None
            ),
        )

    # Reading ----------------------------------------------------------------------------------

    def payment_status(self, caller: Caller, payment_id: str) -> PaymentView:
        warden, currencies, _ = self._open()
        try:
            row = warden.payment(payment_id)
        except NotFoundError:
            row = None
        intent = _stored_intent(row.intent) if row is not None else {}
        if row is None or not _owns(caller, row.agent, intent):
            raise NotFoundError(f"no payment `{payment_id}` of agent `{caller.agent}`")
        return _payment_view(row, currencies, intent)

    def my_payments(self, caller: Caller, state: str | None, limit: int) -> PaymentList:
        if not 1 <= limit <= 100:
            raise InvalidInputError("`limit` must be from 1 to 100")
        warden, currencies, _ = self._open()
        rows = warden.payments(agent=caller.agent, state=state, limit=limit)
        intents = [(row, _stored_intent(row.intent)) for row in rows]
        views = [
            _payment_view(row, currencies, intent)
            for row, intent in intents
            if _owns(caller, row.agent, intent)
        ]
        return PaymentList(payments=views, count=len(views))

    def approval_status(self, caller: Caller, approval_id: str) -> ApprovalStatusView:
        warden, currencies, _ = self._open()
        try:
            view = warden.approval(approval_id)
        except NotFoundError:
            view = None
        intent = _stored_intent(view.row.intent) if view is not None else {}
        if view is None or not _owns(caller, view.row.agent, intent):
            raise NotFoundError(f"no approval `{approval_id}` of agent `{caller.agent}`")
        return _approval_view(view, currencies, intent)

    def budgets(self, caller: Caller) -> BudgetList:
        warden, _, filters = self._open()
        policy = warden.policy
        views = (
            limits_view.budget_views(policy, warden.budgets(), caller.agent, filters)
            if policy
            else []
        )
        return BudgetList(agent=caller.agent, budgets=views)

    def limits(self, caller: Caller) -> LimitsView:
        warden, _, filters = self._open()
        policy = warden.policy
        statuses = warden.budgets() if policy else []
        return limits_view.limits_view(policy, statuses, caller.agent, caller.environment, filters)

    # Sessions: the agent's own phase, EXPLORE -> DECIDE -> COMMIT ---------------------------

    def start_session(self, caller: Caller, session_id: str | None) -> SessionView:
        warden = resolve(self._source)
        row = warden.start_session(caller.agent, session_id, actor=caller.actor)
        return _session_view(warden, row)

    def advance_session(self, caller: Caller, session_id: str, phase: str) -> SessionView:
        warden = resolve(self._source)
        row = warden.advance_phase(caller.agent, session_id, phase, actor=caller.actor)
        return _session_view(warden, row)

    def session(self, caller: Caller, session_id: str) -> SessionView:
        warden = resolve(self._source)
        return _session_view(warden, warden.session(caller.agent, session_id))


def _session_view(warden: Warden, row: SessionRow) -> SessionView:
    policy = warden.policy
    phases = sorted(policy.sessions.payment_phases) if policy else ["COMMIT"]
    following = TRANSITIONS[row.phase]
    next_phase: Literal["DECIDE", "COMMIT"] | None = None
    if following:
        next_phase = "DECIDE" if following == ("DECIDE",) else "COMMIT"
    can_pay = row.phase in phases
    if can_pay:
        step = f"Pay with request_payment, giving session_id `{row.session_id}`."
    elif next_phase:
        step = (
            f"Payments from this session are allowed only in {', '.join(phases)}; when you are "
            f"ready, call advance_session_phase with phase {next_phase}."
        )
    else:
        step = "This session has ended its phases and cannot pay; start a new session."
    return SessionView(
        session_id=row.session_id,
        phase=row.phase,
        next_phase=next_phase,
        payment_phases=phases,
        can_pay=can_pay,
        created_at=str(iso(row.created_us)),
        updated_at=str(iso(row.updated_us)),
        next_step=step,
    )


def _stored_intent(text: str) -> dict[str, Any]:
    """A stored intent (canonical JSON), parsed once per row: the ownership check and the view
    read the same object."""
    parsed = json.loads(text)
    return parsed if isinstance(parsed, dict) else {}


def _owns(caller: Caller, agent: str, intent: Mapping[str, object]) -> bool:
    if agent != caller.agent:
        return False
    return caller.environment is None or intent.get("environment") == caller.environment


def _major(amount_minor: int, currency: str, currencies: CurrencyTable) -> str:
    try:
        return format_minor(amount_minor, currencies.exponent(currency))
    except InvalidInputError:
        return str(amount_minor)  # a currency no longer configured: minor units as they are


def _payment_view(
    row: PaymentRow, currencies: CurrencyTable, intent: Mapping[str, Any] | None = None
) -> PaymentView:
    if intent is None:
        intent = _stored_intent(row.intent)
    return PaymentView(
        payment_id=row.payment_id,
        decision_id=row.decision_id,
        state=row.state,
        action=str(intent.get("action", "")),
        amount=_major(row.amount_minor, row.currency, currencies),
        amount_minor=row.amount_minor,
        currency=row.currency,
        recipient=str(intent.get("recipient_original") or intent.get("recipient", "")),
        rail=row.rail,
        rail_payment_id=row.rail_payment_id,
        refunded_minor=row.refunded_minor,
        error=row.error,
        created_at=str(iso(row.created_us)),
        updated_at=str(iso(row.updated_us)),
    )


def _approval_view(
    view: ApprovalView, currencies: CurrencyTable, intent: Mapping[str, Any]
) -> ApprovalStatusView:
    row = view.row
    approvals = len(view.approved_by)
    amount_minor = int(intent.get("amount_minor", 0))
    currency = str(intent.get("currency", ""))
    return ApprovalStatusView(
        approval_id=row.approval_id,
        status=row.status,
        decision_id=row.decision_id,
        action=str(intent.get("action", "")),
        amount=_major(amount_minor, currency, currencies),
        amount_minor=amount_minor,
        currency=currency,
        recipient=str(intent.get("recipient_original") or intent.get("recipient", "")),
        required_approvals=row.required,
        approvals=approvals,
        votes=[
            VoteView(
                operator_id=vote.operator_id,
                vote=vote.vote,
                reason=vote.reason,
                created_at=str(iso(vote.created_us)),
            )
            for vote in view.votes
        ],
        created_at=str(iso(row.created_us)),
        expires_at=str(iso(row.expires_us)),
        decided_at=iso(row.decided_us),
        note=row.note,
        next_step=_approval_next_step(row.status, row.required - approvals, row.note),
    )


def _status(outcome: PaymentOutcome) -> PaymentStatus:
    decision = outcome.decision
    if decision.outcome == "deny":
        return "denied"
    if decision.outcome == "require_approval":
        return "approval_required"
    state = outcome.payment.state if outcome.payment else None
    if state is None:
        return "not_submitted"
    if state in ("settled", "refunded"):
        return "paid"
    return "failed" if state == "failed" else "processing"


def _next_step(status: PaymentStatus, outcome: PaymentOutcome) -> str:
    decision = outcome.decision
    payment_id = outcome.payment.payment_id if outcome.payment else None
    if status == "paid":
        return f"Done: the payment settled. Keep payment_id `{payment_id}` for reference."
    if status == "processing":
        return (
            f"The rail has not confirmed yet. Check get_payment_status(`{payment_id}`) later; "
            "do not pay again: this payment is never sent twice."
        )
    if status == "failed":
        return (
            "The rail did not pay and the held amount was released. You may try again later, "
            "or pay another way."
        )
    if status == "approval_required":
        return (
            f"A human must approve first. Poll get_approval_status(`{decision.approval_id}`); "
            "once it is `approved`, call request_payment again with the same payment details "
            "(with a new idempotency_key, or none) and it is paid once."
        )
    if status == "not_submitted":
        return "Allowed but not submitted to a rail; ask your operator."
    return _denied_step(decision.reason_code)


def _denied_step(code: str) -> str:
    if code in _TRANSIENT:
        return "A temporary failure on paywarden's side: retry later, with the same details."
    if code in _WAIT:
        return "Too many payments too quickly: wait, then retry."
    if code in _BUDGET:
        return (
            "It does not fit your budget. See get_budget_status for the room left, and pay "
            "less or later (when the window resets)."
        )
    if code == "approval_queue_full":
        return (
            "Too many of your requests already wait for a human: wait until some are decided "
            "(get_approval_status), then ask again."
        )
    if code == "rail_refused":
        return (
            "The rail cannot take this payment (unknown rail, or no route for this payee): "
            "ask your operator, or use another rail."
        )
    return (
        "Do not retry the same payment unchanged. Adapt it (see describe_my_limits) or ask "
        "your operator."
    )


def _approval_next_step(status: str, missing: int, note: str | None) -> str:
    if status == "pending":
        return f"Waiting for {max(missing, 1)} more human approval(s); check again later."
    if status == "approved":
        return (
            "Approved: call request_payment again with exactly the same payment details (a new "
            "idempotency_key, or none) to pay once, before the approval expires."
        )
    if status == "consumed":
        return "Already used by a payment; see list_my_payments."
    return f"Closed ({status}{': ' + note if note else ''}). Do not pay this way; adapt or ask."
