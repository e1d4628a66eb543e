"""Agent goal runs: a goal in words -> proposal -> policy -> pay, or adapt and try again.

`start_goal` records a run (`running`); `drive_goal` runs its loop: the planner (the LLM port,
`agents.port.Planner`) proposes a payment as JSON, the proposal is parsed strictly
(`agents.proposal`) into an intent whose agent, action, session and idempotency key come from
the run, never from the model, and `payments.pay` authorizes and pays it. A denial's reason
code and sentence go back to the planner for the next attempt, at most `max_attempts` per goal
(`agents:` in the policy, default 3; a caller may ask for fewer). `require_approval` ends the
run with the approval pending; a settled payment ends it unless the proposal said `more`.

A planner that raises, hangs past `llm_timeout_seconds` or writes a malformed or hostile
proposal costs an attempt (`planner_error`, `invalid_proposal`), never a crash and never a
payment. Every attempt is audited (`goal.started`, `goal.attempt`, `goal.finished`, all with
the run id as ref id); each intent carries `metadata.goal_run`, so its decision links back.
Cumulative budgets and velocity limits count every attempt's payment, so an agent that
"adapts" by splitting a denied amount is stopped by the same limits.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

from paywarden import limits
from paywarden.actions import payments
from paywarden.agents.port import Feedback, Planner
from paywarden.agents.proposal import ProposalError, parse_proposal
from paywarden.audit import records
from paywarden.audit.canonical import canonical_text
from paywarden.errors import InvalidInputError, NotFoundError, PaywardenError
from paywarden.intent import free_text, identifier
from paywarden.money import DEFAULT_CURRENCIES
from paywarden.policy.agent_settings import AgentSettings
from paywarden.ports import GoalRunRow, GoalStatus, UnitOfWork
from paywarden.runtime import Runtime

Attempt = dict[str, object]
RAW_SHOWN_MAX = 500  # characters of an invalid proposal kept in the record


@dataclass(frozen=True, slots=True)
class GoalOptions:
    """How a goal runs: for which agent (the caller's identity, never the goal's words)."""

    agent: str
    action: str = "purchase"
    session_id: str | None = None  # a tracked phase session the intents name
    max_attempts: int | None = None  # at most the policy's `agents.max_attempts`
    actor: str | None = None


def settings(rt: Runtime) -> AgentSettings:
    policy = rt.policy
    return policy.agents if policy is not None else AgentSettings()


def start_goal(rt: Runtime, goal: str, options: GoalOptions) -> GoalRunRow:
    """Record a new run in `running` (audited `goal.started`); `drive_goal` runs it."""
    text = free_text("goal", goal, limits.free_text_bytes_max)
    if not text or not text.strip():
        raise InvalidInputError("the goal is empty")
    agent = identifier("agent", options.agent)
    session_id = identifier("session_id", options.session_id) if options.session_id else None
    bound = settings(rt).max_attempts
    if options.max_attempts is not None:
        if options.max_attempts < 1:
            raise InvalidInputError("max_attempts must be at least 1")
        bound = min(bound, options.max_attempts)
    run_id = rt.ids("goal")
    now_us = rt.now_us()
    row = GoalRunRow(
        run_id=run_id,
        agent=agent,
        goal=rt.clean_text("goal", text),
        session_id=session_id or run_id,
        status="running",
        attempts="[]",
        max_attempts=bound,
        payment_id=None,
        approval_id=None,
        error=None,
        created_us=now_us,
        updated_us=now_us,
    )
    with rt.store.write() as tx:
        tx.goals.insert(row)
        body = _body(row, options.actor)
        body.update(goal=row.goal, max_attempts=bound, action=options.action)
        records.append(tx, now_us, "goal.started", run_id, body)
    return row


def drive_goal(
    rt: Runtime, run_id: str, planner: Planner, *, action: str = "purchase"
) -> GoalRunRow:
    """Run the loop of a `running` run to its end; a finished run is returned as it is."""
    row = goal_run(rt, run_id)
    config = settings(rt)
    deadline_us = rt.now_us() + config.run_timeout_seconds * 1_000_000
    attempts: list[Attempt] = json.loads(row.attempts)
    while row.status == "running":
        if len(attempts) >= row.max_attempts:
            return _finish(rt, row, attempts, "exhausted", "every attempt was used")
        if rt.now_us() >= deadline_us:
            timeout = f"the run took longer than {config.run_timeout_seconds}s"
            return _finish(rt, row, attempts, "failed", timeout)
        feedback = [_feedback(item) for item in attempts]
        attempt = _attempt(rt, row, planner, feedback, action, config.llm_timeout_seconds)
        attempts.append(attempt)
        row = _record_attempt(rt, row, attempts, attempt)
        status = _status_after(attempt)
        if status is not None:
            return _finish(rt, row, attempts, status, None)
    return row


def goal_run(rt: Runtime, run_id: str) -> GoalRunRow:
    with rt.store.read() as tx:
        row = tx.goals.get(run_id)
    if row is None:
        raise NotFoundError(f"no goal run `{run_id}`")
    return row


def goal_runs(rt: Runtime, agent: str | None = None, *, limit: int = 100) -> list[GoalRunRow]:
    """Runs, newest first, optionally one agent's."""
    with rt.store.read() as tx:
        return tx.goals.list_recent(agent, limit)


def attempts_of(row: GoalRunRow) -> list[Attempt]:
    """The run's attempts, oldest first (see `_attempt` for their members)."""
    value = json.loads(row.attempts)
    return value if isinstance(value, list) else []


# The loop's steps --------------------------------------------------------------------------


def _propose(planner: Planner, goal: str, feedback: Sequence[Feedback], timeout_s: int) -> str:
    """The planner's answer within `timeout_s`. The call runs in a daemon thread: one that hangs
    is left behind (it can never hold up the run, nor the process's exit)."""
    answers: list[object] = []
    done = threading.Event()

    def call() -> None:
        try:
            answers.append(planner.propose(goal, tuple(feedback)))
        except BaseException as error:  # handed to the loop, which records the attempt
            answers.append(error)
        finally:
            done.set()

    threading.Thread(target=call, name="paywarden-planner", daemon=True).start()
    if not done.wait(timeout_s):
        raise TimeoutError(f"the planner did not answer within {timeout_s}s")
    (answer,) = answers
    if isinstance(answer, BaseException):
        raise answer
    if not isinstance(answer, str):
        raise ProposalError("the planner must answer JSON text")
    return answer


def _attempt(
    rt: Runtime,
    row: GoalRunRow,
    planner: Planner,
    feedback: Sequence[Feedback],
    action: str,
    timeout_s: int,
) -> Attempt:
    number = len(feedback) + 1
    base: Attempt = {"attempt": number, "proposal": None, "decision_id": None}
    try:
        raw = _propose(planner, row.goal, feedback, timeout_s)
    except ProposalError as error:
        return {**base, **_failed(rt, "invalid_proposal", str(error))}
    except Exception as error:  # the planner is outside code: any failure is one attempt
        return {**base, **_failed(rt, "planner_error", str(error) or type(error).__name__)}
    try:
        proposal = parse_proposal(raw)
        intent = proposal.intent(
            agent=row.agent,
            action=action,
            idempotency_key=f"{row.run_id}.{number}",
            session_id=row.session_id if row.session_id != row.run_id else None,
            metadata={"goal_run": row.run_id, "attempt": number},
            currencies=rt.policy.currencies if rt.policy is not None else DEFAULT_CURRENCIES,
        )
    except ProposalError as error:
        shown, _ = rt.redactor.redact(raw[:RAW_SHOWN_MAX])
        return {**base, **_failed(rt, "invalid_proposal", str(error)), "raw": shown}
    base["proposal"], _ = rt.redactor.redact(proposal.to_dict())  # its free text may hold one
    try:
        outcome = payments.pay(rt, intent, actor=f"agent:{row.agent}")
    except PaywardenError as error:  # refused on admission (a secret in an id): audited
        return {
            **base,
            **_failed(rt, "invalid_proposal", str(error)),
            "decision_id": error.decision_id,
        }
    decision = outcome.decision
    paid = outcome.payment is not None and outcome.payment.state == "settled"
    if decision.allowed:
        result = "paid" if paid else "payment_failed"
    else:
        result = "require_approval" if decision.outcome == "require_approval" else "denied"
    return {
        **base,
        "outcome": result,
        "more": proposal.more,
        "reason_code": decision.reason_code,
        "reason": _clean(rt, decision.reason),
        "decision_id": decision.decision_id,
        "payment_id": outcome.payment.payment_id if outcome.payment is not None else None,
        "payment_state": outcome.state,
        "approval_id": decision.approval_id,
    }


def _failed(rt: Runtime, code: str, reason: str) -> Attempt:
    return {"outcome": code, "reason_code": code, "reason": _clean(rt, reason)}


def _clean(rt: Runtime, text: str) -> str:
    clean, _ = rt.redactor.redact(text[: limits.free_text_bytes_max])
    return str(clean)


def _status_after(attempt: Attempt) -> GoalStatus | None:
    """How the run ends after this attempt, or None to go on."""
    outcome = attempt["outcome"]
    if outcome == "paid":
        return None if attempt.get("more") else "paid"
    if outcome == "require_approval":
        return "pending_approval"
    if outcome == "payment_failed":
        return "failed"
    return None


def _feedback(attempt: Attempt) -> Feedback:
    proposal = attempt.get("proposal")
    return Feedback(
        attempt=int(str(attempt["attempt"])),
        proposal=canonical_text(proposal) if isinstance(proposal, dict) else "",
        outcome=str(attempt["outcome"]),
        reason_code=str(attempt["reason_code"]),
        reason=str(attempt["reason"]),
    )


def _record_attempt(
    rt: Runtime, row: GoalRunRow, attempts: list[Attempt], attempt: Attempt
) -> GoalRunRow:
    now_us = rt.now_us()
    payment_id = attempt.get("payment_id")
    approval_id = attempt.get("approval_id")
    row = replace(
        row,
        attempts=canonical_text(attempts),
        payment_id=payment_id if isinstance(payment_id, str) else row.payment_id,
        approval_id=approval_id if isinstance(approval_id, str) else row.approval_id,
        updated_us=now_us,
    )
    with rt.store.write() as tx:
        tx.goals.save(row)
        body = _body(row, None)
        body["attempt"] = attempt
        records.append(tx, now_us, "goal.attempt", row.run_id, body)
    return row


def _finish(
    rt: Runtime, row: GoalRunRow, attempts: list[Attempt], status: GoalStatus, error: str | None
) -> GoalRunRow:
    if status == "exhausted" and attempts and all(a["outcome"] == "denied" for a in attempts):
        status = "denied"
    now_us = rt.now_us()
    row = replace(row, status=status, error=error, updated_us=now_us)
    with rt.store.write() as tx:
        _save_finished(tx, row, now_us)
    return row


def _save_finished(tx: UnitOfWork, row: GoalRunRow, now_us: int) -> None:
    tx.goals.save(row)
    body = _body(row, None)
    body.update(
        status=row.status,
        attempts=len(json.loads(row.attempts)),
        payment_id=row.payment_id,
        approval_id=row.approval_id,
        error=row.error,
    )
    records.append(tx, now_us, "goal.finished", row.run_id, body)


def _body(row: GoalRunRow, actor: str | None) -> dict[str, object]:
    return {
        "actor": actor or f"agent:{row.agent}",
        "agent": row.agent,
        "run_id": row.run_id,
        "session_id": row.session_id,
    }
