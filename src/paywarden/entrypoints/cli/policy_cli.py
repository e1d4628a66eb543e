"""`paywarden policy ...` and `paywarden budgets`: read policies and budgets, and put a policy in
force in a ledger (`policy load`, `policy current`)."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import click

from paywarden.adapters.storage import postgres_audit
from paywarden.adapters.storage.postgres_audit import database_missing
from paywarden.entrypoints.cli.policy_tools_cli import (
    policy_backtest,
    policy_diff,
    policy_lint,
    policy_test,
)
from paywarden.errors import InvalidInputError
from paywarden.ledger.status import budget_status
from paywarden.money import format_minor
from paywarden.policy.compiler import check_policy
from paywarden.warden import Warden

EXIT_INVALID = 2


@click.group()
def policy() -> None:
    """Validate, explain, test, lint, diff and backtest policy files."""


policy.add_command(policy_test)
policy.add_command(policy_lint)
policy.add_command(policy_diff)
policy.add_command(policy_backtest)


@policy.group("shadow")
def policy_shadow() -> None:
    """Evaluate a candidate policy next to the enforced one, never enforced."""


@policy_shadow.command("set")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--database", required=True, help="The ledger (SQLite file or PostgreSQL URL).")
@click.option("--actor", required=True, help="Who sets it (recorded in the audit log).")
def shadow_set(path: str, database: str, actor: str) -> None:
    """Put the policy at PATH in shadow: every decision is also evaluated under it.

    Exit status: 0 set, 1 the policy is invalid (nothing changed), 2 no such ledger.
    """
    text = _read_policy(path)
    compiled, report = check_policy(text, path)
    if compiled is None:  # refused before the ledger is opened: nothing changes
        for line in report.lines():
            click.echo(line, err=True)
        click.echo(f"error: `{path}` is not a valid policy", err=True)
        sys.exit(1)
    with _ledger(database) as warden:
        try:
            candidate = warden.set_shadow_policy(Path(path), actor=actor)
        except InvalidInputError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(1)
    click.echo(f"shadow policy set: version {candidate.version} ({len(candidate.rules)} rules)")


@policy_shadow.command("clear")
@click.option("--database", required=True, help="The ledger (SQLite file or PostgreSQL URL).")
@click.option("--actor", required=True, help="Who clears it (recorded in the audit log).")
def shadow_clear(database: str, actor: str) -> None:
    """Stop evaluating the shadow policy. Exit status: 0 cleared, 1 none was set."""
    with _ledger(database) as warden:
        cleared = warden.clear_shadow_policy(actor=actor)
    click.echo("shadow policy cleared" if cleared else "no shadow policy was set")
    sys.exit(0 if cleared else 1)


@policy_shadow.command("show")
@click.option("--database", required=True, help="The ledger (SQLite file or PostgreSQL URL).")
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def shadow_show(database: str, as_json: bool) -> None:
    """Show the shadow policy the ledger records, if any."""
    with _ledger(database) as warden:
        candidate = warden.shadow_policy()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "version": candidate.version if candidate else None,
                    "rules": [rule.rule_id for rule in candidate.rules] if candidate else [],
                },
                indent=2,
            )
        )
    elif candidate is None:
        click.echo("no shadow policy")
    else:
        click.echo(f"shadow policy: version {candidate.version} ({len(candidate.rules)} rules)")


@policy.command("load")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--database", required=True, help="The ledger (SQLite file or PostgreSQL URL).")
@click.option("--actor", required=True, help="Who loads it (recorded in the audit log).")
def policy_load(path: str, database: str, actor: str) -> None:
    """Put the policy at PATH in force in the ledger, for every gateway that shares it.

    The ledger's policy is the one every process decides with; this is how a new one (or an
    older one, to roll back) is uploaded. An invalid policy is refused, audited, and the one
    in force stays. Exit status: 0 in force, 1 the policy is invalid, 2 no such ledger.
    """
    text = _read_policy(path)
    with _ledger(database) as warden:
        loaded = warden.reload_policy(text, actor=actor)
    if loaded.policy is None:
        for problem in loaded.report.problems:
            click.echo(problem.format(path), err=True)
        click.echo(
            f"error: `{path}` is not a valid policy; the policy in force is unchanged", err=True
        )
        sys.exit(1)
    click.echo(
        f"policy in force: version {loaded.policy.version} ({len(loaded.policy.rules)} rules)"
    )


@policy.command("current")
@click.option("--database", required=True, help="The ledger (SQLite file or PostgreSQL URL).")
@click.option("--json", "as_json", is_flag=True, help="Print the version and text as JSON.")
def policy_current(database: str, as_json: bool) -> None:
    """Show the policy in force in the ledger: its version, then its text.

    Exit status: 0 shown, 1 no policy is in force there yet, 2 no such ledger.
    """
    with _ledger(database) as warden:
        loaded = warden.loaded_policy
    if loaded.policy is None:
        click.echo(
            "error: no policy is in force in this ledger (load one with `paywarden policy load`)",
            err=True,
        )
        sys.exit(1)
    if as_json:
        click.echo(json.dumps({"version": loaded.policy.version, "text": loaded.text}, indent=2))
        return
    click.echo(f"# version {loaded.policy.version}")
    click.echo((loaded.text or "").rstrip("\n"))


@contextmanager
def _ledger(database: str) -> Iterator[Warden]:
    if postgres_audit.database_missing(database):
        click.echo(f"error: no ledger at `{database}`", err=True)
        sys.exit(EXIT_INVALID)
    with Warden.open(None, database=database) as warden:
        yield warden


@policy.command("validate")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def policy_validate(path: str, as_json: bool) -> None:
    """Compile a policy and report every error and warning with its line.

    Exit status: 0 when the policy is valid (warnings allowed), 1 when it has errors.
    """
    text = _read_policy(path)
    compiled, report = check_policy(text, path)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "valid": compiled is not None,
                    "version": compiled.version if compiled else None,
                    "problems": [p.to_dict() for p in report.problems],
                },
                indent=2,
            )
        )
    else:
        for line in report.lines():
            click.echo(line)
        if compiled is not None:
            click.echo(f"{path}: valid ({len(compiled.rules)} rules, version {compiled.version})")
    sys.exit(0 if compiled is not None else 1)


@policy.command("explain")
@click.argument("path", type=click.Path(dir_okay=False))
def policy_explain(path: str) -> None:
    """Show how paywarden reads a policy: rules by precedence, their conditions, budgets."""
    text = _read_policy(path)
    compiled, report = check_policy(text, path)
    for line in report.lines():
        click.echo(line)
    if compiled is None:
        sys.exit(1)
    click.echo(f"policy {compiled.name!r} ({compiled.dialect} format), version {compiled.version}")
    click.echo(f"time zone {compiled.timezone.key}, default currency {compiled.currency}")
    click.echo(
        "precedence: any deny wins, then require_approval, then allow; nothing matched denies"
    )
    for effect, indexes in (
        ("deny", compiled.deny_rules),
        ("require_approval", compiled.approval_rules),
        ("allow", compiled.allow_rules),
    ):
        click.echo(f"\n{effect} rules:")
        for index in indexes:
            rule = compiled.rules[index]
            click.echo(
                f"  - {rule.rule_id} (line {rule.mark.line}): "
                f"{' and '.join(rule.conditions) or 'every intent'}"
            )
            click.echo(f"      reason: {rule.reason}")
        if not indexes:
            click.echo("  (none)")
    if compiled.log_only_rules:
        click.echo("\nlog-only rules (evaluated and traced, never enforced):")
        for index in compiled.log_only_rules:
            rule = compiled.rules[index]
            click.echo(
                f"  - {rule.rule_id} ({rule.effect}, line {rule.mark.line}): "
                f"{' and '.join(rule.conditions) or 'every intent'}"
            )
    for budget in compiled.budgets:
        click.echo(
            f"\nbudget {budget.budget_id}: {budget.limit} per {budget.window}, scope {budget.scope}"
        )
    for limit in compiled.velocity:
        click.echo(
            f"\nvelocity {limit.velocity_id}: max {limit.max_count} per "
            f"{limit.window_seconds}s, cooldown {limit.cooldown_seconds}s, "
            f"scope {limit.scope}"
        )


def _read_policy(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        click.echo(f"error: cannot read `{path}`: {error}", err=True)
        sys.exit(EXIT_INVALID)


@click.command()
@click.option(
    "--policy",
    "policy_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Policy YAML file that defines the budgets.",
)
@click.option(
    "--database",
    default="paywarden.db",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="SQLite ledger file, or a PostgreSQL URL (postgresql://...).",
)
@click.option(
    "--at",
    "at_text",
    default=None,
    help="Read the windows that contain this instant (ISO 8601 with a UTC offset, such as "
    "2026-11-30T12:00:00+00:00) instead of the current ones.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the budgets as JSON.")
def budgets(policy_path: str, database: str, at_text: str | None, as_json: bool) -> None:
    """Show each budget's spent, held, remaining and gate in its current window (or at --at)."""
    at = _instant(at_text) if at_text is not None else None
    if database_missing(database):
        click.echo(f"error: no ledger at `{database}`", err=True)
        sys.exit(EXIT_INVALID)
    with Warden.open(Path(policy_path), database=database) as warden:
        policy = warden.policy
        if policy is None:
            click.echo(f"error: {warden.loaded_policy.report.summary()}", err=True)
            sys.exit(1)
        if at is None:
            rows = warden.budgets()
        else:  # the same read as `warden.budgets()`, for the windows around `at`
            with warden.runtime.store.read() as tx:
                rows = budget_status(tx, policy, at)
        exponents = {b.budget_id: b.limit.exponent for b in policy.budgets}
    if as_json:
        click.echo(
            json.dumps(
                [
                    {**dataclasses.asdict(row), "remaining_minor": row.remaining_minor}
                    for row in rows
                ],
                indent=2,
            )
        )
        return
    click.echo(
        f"{'budget':<16} {'scope':<24} {'window':<16} {'spent':>12} {'held':>12} "
        f"{'remaining':>12} {'limit':>12}  gate"
    )
    for row in rows:
        exponent = exponents[row.budget_id]
        amounts = [
            format_minor(value, exponent)
            for value in (row.spent_minor, row.held_minor, row.remaining_minor, row.limit_minor)
        ]
        scope = f"{row.scope}:{row.scope_key}"
        click.echo(
            f"{row.budget_id:<16} {scope:<24} {row.window:<16} "
            + " ".join(f"{a:>12}" for a in amounts)
            + f"  {row.gate} {row.currency}"
        )
    if not rows:
        windows = "the current windows" if at is None else f"the windows at {at.isoformat()}"
        click.echo(f"(no spending recorded in {windows})")


def _instant(text: str) -> datetime:
    """An instant given on the command line: ISO 8601 with a UTC offset (`Z` allowed)."""
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        instant = None
    if instant is None or instant.tzinfo is None:
        click.echo(
            f"error: --at: `{text}` is not an ISO 8601 instant with a UTC offset "
            "(such as 2026-11-30T12:00:00+00:00)",
            err=True,
        )
        sys.exit(EXIT_INVALID)
    return instant
