"""`paywarden agent run|show`: give an agent a goal in words and read the transcript.

The planner is an OpenAI-compatible endpoint when `PAYWARDEN_LLM_MODEL` is set (the `llm`
extra), else the offline planner (`--offline` forces it). The policy decides every proposal.
Exit status: 0 when the run paid or ended on a pending approval, 1 otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path

import click

from paywarden.actions.goals import attempts_of, settings
from paywarden.errors import PaywardenError
from paywarden.ports import GoalRunRow
from paywarden.warden import Warden

EXIT_REFUSED = 1
_MARKS = {
    "paid": "PAID",
    "denied": "DENIED",
    "require_approval": "APPROVAL",
    "invalid_proposal": "INVALID",
    "planner_error": "NO ANSWER",
    "payment_failed": "FAILED",
}
Echo = Callable[[str], None]


def transcript(row: GoalRunRow, echo: Echo) -> None:
    """A readable account of a run: each proposal, what the policy said, how it ended."""
    echo(f"goal run {row.run_id} for {row.agent}: {json.dumps(row.goal)}")
    for attempt in attempts_of(row):
        proposal = attempt.get("proposal")
        if isinstance(proposal, dict):
            name = f" ({proposal['recipient_name']})" if proposal.get("recipient_name") else ""
            shown = f"{proposal['amount']} {proposal['currency']} to {proposal['recipient']}{name}"
        else:
            shown = "no valid proposal"
        mark = _MARKS.get(str(attempt["outcome"]), str(attempt["outcome"]).upper())
        echo(f"  attempt {attempt['attempt']}: {shown}")
        detail = f"[{attempt['reason_code']}] {attempt['reason']}"
        if attempt.get("payment_id"):
            detail += f"  payment {attempt['payment_id']}"
        if attempt.get("approval_id"):
            detail += f"  approval {attempt['approval_id']}"
        echo(f"      {mark:<9} {detail}")
    error = f" ({row.error})" if row.error else ""
    echo(f"result: {row.status}{error}, {len(attempts_of(row))} of {row.max_attempts} attempts")


@click.group("agent")
def agent() -> None:
    """Agents that pay: run a goal through the policy, read a run."""


@agent.command("run")
@click.argument("goal")
@click.option("--agent", "agent_id", default="agent-cli", show_default=True, help="The agent.")
@click.option("--policy", "policy_path", required=True, type=click.Path(dir_okay=False),
              help="Policy YAML file.")  # fmt: skip
@click.option("--database", default="paywarden.db", show_default=True,
              help="SQLite ledger file, or a PostgreSQL URL.")  # fmt: skip
@click.option("--max-attempts", type=click.IntRange(1, 20), default=None,
              help="Fewer attempts than the policy's `agents.max_attempts`.")  # fmt: skip
@click.option("--action", default="purchase", show_default=True, help="The intents' action.")
@click.option("--offline", is_flag=True, help="Use the offline planner even with an LLM set.")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
def run(
    goal: str,
    agent_id: str,
    policy_path: str,
    database: str,
    max_attempts: int | None,
    action: str,
    offline: bool,
    as_json: bool,
) -> None:
    """Turn GOAL into a payment: propose, decide, adapt; prints the transcript."""
    from paywarden.agents.offline import OfflinePlanner
    from paywarden.entrypoints.planners import planner_from_env

    try:
        with Warden.open(Path(policy_path), database=database) as warden:
            timeout = settings(warden.runtime).llm_timeout_seconds
            planner = OfflinePlanner() if offline else planner_from_env(timeout_seconds=timeout)
            row = warden.run_goal(
                goal, llm=planner, agent=agent_id, action=action, max_attempts=max_attempts
            )
    except PaywardenError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_REFUSED)
    _show(row, as_json)


@agent.command("show")
@click.argument("run_id")
@click.option("--database", default="paywarden.db", show_default=True,
              help="SQLite ledger file, or a PostgreSQL URL.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
def show(run_id: str, database: str, as_json: bool) -> None:
    """Print a goal run's transcript."""
    try:
        with Warden.open(None, database=database) as warden:
            row = warden.goal_run(run_id)
    except PaywardenError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_REFUSED)
    _show(row, as_json)


def _show(row: GoalRunRow, as_json: bool) -> None:
    if as_json:
        data = dataclasses.asdict(row)
        data["attempts"] = attempts_of(row)
        click.echo(json.dumps(data, sort_keys=True))
    else:
        transcript(row, click.echo)
    if row.status not in ("paid", "pending_approval"):
        sys.exit(EXIT_REFUSED)
