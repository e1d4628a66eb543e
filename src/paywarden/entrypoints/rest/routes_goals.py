"""`/v1/agent/goals`: an agent hands paywarden a goal in words; the loop runs in the background.

`POST` records the run and answers 202 with its id at once; a background thread drives the loop
(`actions.goals`): the planner proposes, the policy decides, a denial goes back to the planner,
within the policy's attempt bound, each planner call within `agents.llm_timeout_seconds` and the
whole run within `agents.run_timeout_seconds`. `GET` shows every attempt and, when the run
ended on `require_approval`, the pending approval. The planner is the gateway's own (an
OpenAI-compatible endpoint when `PAYWARDEN_LLM_MODEL` is set, else the offline planner): the
agent chooses neither the model nor the policy, and its identity comes from its key.
"""

from __future__ import annotations

import logging
import threading
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from paywarden import limits
from paywarden.actions.goals import GoalOptions, attempts_of, settings
from paywarden.agents.port import Planner
from paywarden.entrypoints.planners import planner_from_env
from paywarden.entrypoints.rest.deps import AgentCaller, Caller, WardenDep, owned_by, warden_of
from paywarden.entrypoints.rest.models import IDENTIFIER_PATTERN, Strict
from paywarden.entrypoints.rest.problems import ApiProblem, problem_responses
from paywarden.ports import GoalRunRow
from paywarden.warden import Warden

router = APIRouter(prefix="/v1/agent", tags=["agent goals"])
_log = logging.getLogger("paywarden.goals")
RunId = Annotated[str, Path(max_length=128, pattern=IDENTIFIER_PATTERN)]
# Goal runs driven at once by this process; one more is refused (503, retry later) before
# anything is recorded, so a flood of goals cannot start unbounded threads.
GOAL_RUNS_RUNNING_MAX = 16
_running = threading.BoundedSemaphore(GOAL_RUNS_RUNNING_MAX)
# How long the gateway's shutdown waits for goal runs still being driven before it closes the
# store under them (each run is bounded by `agents.run_timeout_seconds` anyway).
SHUTDOWN_WAIT_SECONDS = 30.0
_registry_lock = threading.Lock()  # guards each app's `state.goal_threads`


def join_goal_runs(app: object, timeout_seconds: float = SHUTDOWN_WAIT_SECONDS) -> None:
    """Wait for the goal runs this app started to end, so the store is never closed while a
    background run is still using it. Runs still going after `timeout_seconds` are logged."""
    state = getattr(app, "state", None)
    with _registry_lock:
        threads = list(getattr(state, "goal_threads", ()))
    for thread in threads:
        thread.join(timeout_seconds)
        if thread.is_alive():
            _log.warning("goal run thread %s still running at shutdown", thread.name)


class GoalRequest(Strict):
    """A goal in words, for the key's agent."""

    goal: str = Field(min_length=1, max_length=limits.free_text_chars_max)
    max_attempts: int | None = Field(default=None, ge=1, le=20)
    action: str = Field(default="purchase", max_length=128, pattern=IDENTIFIER_PATTERN)
    session_id: str | None = Field(default=None, max_length=128, pattern=IDENTIFIER_PATTERN)


def planner_of(request: Request) -> Planner:
    """The gateway's planner: `app.state.goal_planner` when set (tests, embedders), else one
    from `PAYWARDEN_LLM_*`, else the offline planner."""
    given: Planner | None = getattr(request.app.state, "goal_planner", None)
    if given is not None:
        return given
    return planner_from_env(
        timeout_seconds=settings(warden_of(request).runtime).llm_timeout_seconds
    )


def run_view(warden: Warden, row: GoalRunRow) -> dict[str, object]:
    view: dict[str, object] = {
        "run_id": row.run_id,
        "agent": row.agent,
        "goal": row.goal,
        "session_id": row.session_id,
        "status": row.status,
        "max_attempts": row.max_attempts,
        "attempts": attempts_of(row),
        "payment_id": row.payment_id,
        "approval": None,
        "error": row.error,
    }
    if row.approval_id is not None:
        approval = warden.approval(row.approval_id)
        view["approval"] = {"approval_id": approval.approval_id, "status": approval.status}
    return view


def _drive(
    warden: Warden, run_id: str, planner: Planner, action: str, slots: threading.Semaphore
) -> None:
    try:
        warden.drive_goal(run_id, planner, action=action)
    except Exception:  # a store failure: the run stays `running`, visible to an operator
        _log.exception("goal run %s stopped", run_id)
    finally:
        slots.release()


@router.post(
    "/goals",
    status_code=202,
    responses=problem_responses(401, 403, 413, 422, 503),
    summary="Give the key's agent a goal to pay for (runs in the background)",
)
def post_goal(
    request: Request, body: GoalRequest, principal: AgentCaller, warden: WardenDep
) -> JSONResponse:
    """Answers 202 at once with the run id; follow it with `GET /v1/agent/goals/{run_id}`."""
    assert principal.agent is not None  # an agent key names its agent
    options = GoalOptions(
        principal.agent, body.action, body.session_id, body.max_attempts, principal.actor
    )
    slots = _running
    if not slots.acquire(blocking=False):
        detail = f"{GOAL_RUNS_RUNNING_MAX} goal runs are running; retry later"
        raise ApiProblem(503, "goal_runs_busy", detail, {"Retry-After": "5"})
    try:
        row = warden.start_goal(body.goal, options)
        planner = planner_of(request)
    except BaseException:
        slots.release()
        raise
    thread = threading.Thread(
        target=_drive,
        args=(warden, row.run_id, planner, body.action, slots),
        name=f"paywarden-goal-{row.run_id}",
        daemon=True,
    )
    with _registry_lock:
        threads: set[threading.Thread] | None = getattr(request.app.state, "goal_threads", None)
        if threads is None:
            threads = request.app.state.goal_threads = set()
        threads.difference_update([t for t in threads if not t.is_alive()])
        threads.add(thread)
    thread.start()
    location = f"/v1/agent/goals/{row.run_id}"
    content = {"run_id": row.run_id, "status": row.status, "location": location}
    return JSONResponse(content, status_code=202, headers={"Location": location})


@router.get(
    "/goals/{run_id}",
    responses=problem_responses(401, 403, 404, 422, 503),
    summary="Read a goal run: its attempts, outcome and any pending approval",
)
def get_goal(run_id: RunId, principal: Caller, warden: WardenDep) -> dict[str, object]:
    """An agent reads only its own runs; operators and admins read all."""
    row = warden.goal_run(run_id)
    owned_by(principal, row.agent, f"goal run `{run_id}`")
    return run_view(warden, row)
