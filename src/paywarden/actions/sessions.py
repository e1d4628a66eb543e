"""Agent sessions and their phases: server-side state, never the agent's word.

A session starts in EXPLORE and moves EXPLORE -> DECIDE -> COMMIT, forward only, each move a
compare-and-set with its audit entry. A session belongs to its agent: it is keyed by (agent,
session id), so another agent naming the same id neither reads nor advances it. `authorize`
reads the phase of the intent's session from here.
"""

from __future__ import annotations

import secrets

from paywarden.audit import records
from paywarden.errors import InvalidInputError, NotFoundError, PhaseTransitionError
from paywarden.intent import identifier
from paywarden.policy.workflow_settings import PHASES, TRANSITIONS
from paywarden.ports import Phase, SessionRow, UnitOfWork
from paywarden.runtime import Runtime


def start_session(
    rt: Runtime, agent: str, session_id: str | None = None, *, actor: str | None = None
) -> SessionRow:
    """Start tracking an agent session, in phase EXPLORE (a new id when none is given)."""
    agent = identifier("agent", agent)
    session_id = identifier("session_id", session_id or f"ses_{secrets.token_hex(8)}")
    now_us = rt.now_us()
    row = SessionRow(agent, session_id, "EXPLORE", now_us, now_us)
    with rt.store.write() as tx:
        if not tx.sessions.insert_if_absent(row):
            existing = tx.sessions.get(agent, session_id)
            phase = existing.phase if existing else "unknown"
            raise PhaseTransitionError(
                f"session `{session_id}` of agent `{agent}` already exists (phase {phase})"
            )
        _audit(tx, row, None, actor)
    return row


def advance_phase(
    rt: Runtime, agent: str, session_id: str, phase: str, *, actor: str | None = None
) -> SessionRow:
    """Move a session to its next phase: EXPLORE -> DECIDE -> COMMIT, nothing else."""
    target = phase.upper() if isinstance(phase, str) else ""
    if target not in PHASES:
        raise InvalidInputError(f"unknown phase `{phase}` (EXPLORE, DECIDE, COMMIT)")
    now_us = rt.now_us()
    with rt.store.write() as tx:
        current = tx.sessions.get(agent, session_id)
        if current is None:
            raise NotFoundError(f"agent `{agent}` has no session `{session_id}`")
        if target not in TRANSITIONS[current.phase] or not tx.sessions.transition(
            agent, session_id, current.phase, _phase(target), now_us
        ):
            allowed = ", ".join(TRANSITIONS[current.phase]) or "none: COMMIT is final"
            raise PhaseTransitionError(
                f"session `{session_id}` cannot move from {current.phase} to {target} "
                f"(allowed: {allowed})"
            )
        row = SessionRow(agent, session_id, _phase(target), current.created_us, now_us)
        _audit(tx, row, current.phase, actor)
    return row


def session(rt: Runtime, agent: str, session_id: str) -> SessionRow:
    with rt.store.read() as tx:
        row = tx.sessions.get(agent, session_id)
    if row is None:
        raise NotFoundError(f"agent `{agent}` has no session `{session_id}`")
    return row


def _audit(tx: UnitOfWork, row: SessionRow, source: str | None, actor: str | None) -> None:
    records.append(
        tx,
        row.updated_us,
        "session.started" if source is None else "session.phase",
        f"{row.agent}/{row.session_id}",
        {
            "actor": actor or f"agent:{row.agent}",
            "agent": row.agent,
            "session_id": row.session_id,
            "from": source,
            "phase": row.phase,
        },
    )


def _phase(name: str) -> Phase:
    if name == "EXPLORE":
        return "EXPLORE"
    return "DECIDE" if name == "DECIDE" else "COMMIT"
