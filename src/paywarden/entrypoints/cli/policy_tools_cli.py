"""`paywarden policy test|lint|diff|backtest`: policy as code, for CI.

`test` runs each case through a fresh in-memory Warden with a frozen clock, so budgets, holds,
sessions and velocity are the engine's own; `lint` and `diff` are pure (paywarden.policy.tooling);
`backtest` replays a ledger's recorded decisions through an in-memory Warden on a frozen clock
(`WardenReplayer`), reading the ledger read-only.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import click

from paywarden.adapters.storage import postgres_audit
from paywarden.clock import FrozenClock
from paywarden.errors import InvalidInputError, PaywardenError
from paywarden.intent import PaymentIntent
from paywarden.money import format_minor
from paywarden.policy.compiler import CompiledPolicy, check_policy
from paywarden.policy.decision import Decision
from paywarden.policy.tooling.backtest import (
    BacktestReport,
    Recorded,
    StateStep,
    read_log,
    replay,
)
from paywarden.policy.tooling.diff import diff_policies
from paywarden.policy.tooling.lint import lint_policy
from paywarden.policy.tooling.runner import CaseSetupError, run_cases
from paywarden.policy.tooling.space import Point
from paywarden.policy.tooling.suite import (
    DEFAULT_SESSION,
    PHASES,
    SuiteError,
    TestCase,
    build_intent,
    load_suite,
)
from paywarden.testing import SequentialIds
from paywarden.warden import Warden

EXIT_INVALID = 2


@click.command("test")
@click.argument("policy_path", metavar="POLICY", type=click.Path(dir_okay=False))
@click.argument("test_paths", metavar="TESTS", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def policy_test(policy_path: str, test_paths: tuple[str, ...], as_json: bool) -> None:
    """Run YAML test cases against a policy and report rule coverage.

    TESTS are files or folders (every *.yaml and *.yml inside). Exit status: 0 every case
    passed, 1 a case failed, 2 the policy or a test file is invalid or a case could not run.
    """
    text, policy = _compiled(policy_path)
    cases: list[TestCase] = []
    for path in _test_files(test_paths):
        try:
            cases.extend(load_suite(_read(str(path)), str(path)))
        except SuiteError as error:
            _fail(str(error))
    report = run_cases(policy, cases, lambda case: decide_case(text, policy, case))
    if as_json:
        click.echo(json.dumps({"policy": policy_path, **report.to_dict()}, indent=2))
    else:
        for line in report.lines(policy_path):
            click.echo(line)
    sys.exit(report.exit_status)


@click.command("lint")
@click.argument("policy_path", metavar="POLICY", type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True, help="Exit 1 when there is any warning.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def policy_lint(policy_path: str, strict: bool, as_json: bool) -> None:
    """Report rules that cannot do what they seem to, each with LINE:COLUMN and a code.

    Exit status: 0 (warnings allowed), 1 when --strict and there is a warning, 2 when the policy
    is invalid or unreadable.
    """
    text, policy = _compiled(policy_path)
    findings = lint_policy(text, policy)
    if as_json:
        click.echo(
            json.dumps(
                {"policy": policy_path, "findings": [f.to_dict() for f in findings]}, indent=2
            )
        )
    else:
        for finding in findings:
            click.echo(finding.format(policy_path))
        click.echo(f"{policy_path}: {len(findings)} warnings")
    sys.exit(1 if strict and findings else 0)


@click.command("diff")
@click.argument("old_path", metavar="OLD", type=click.Path(dir_okay=False))
@click.argument("new_path", metavar="NEW", type=click.Path(dir_okay=False))
@click.option(
    "--intents",
    "intents_path",
    type=click.Path(dir_okay=False),
    help="A file of sample intents (the test-file format; `expect` optional) to compare too.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def policy_diff(old_path: str, new_path: str, intents_path: str | None, as_json: bool) -> None:
    """Show which decisions flip from OLD to NEW, and whether NEW allows anything OLD did not.

    Exit status: 0 no new access, 3 NEW widens what is allowed, 4 no widening found but part
    of the comparison is undecided (CEL, overlapping globs, changed budget shapes), 2 invalid
    input.
    """
    old_text, old = _compiled(old_path)
    new_text, new = _compiled(new_path)
    samples: list[tuple[str, Point]] = []
    if intents_path is not None:
        try:
            cases = load_suite(_read(intents_path), intents_path, samples=True)
            samples = [(case.name, _sample_point(case, new)) for case in cases]
        except SuiteError as error:
            _fail(str(error))
        except PaywardenError as error:
            _fail(f"{intents_path}: {error}")
    report = diff_policies(old_text, old, new_text, new, samples)
    if as_json:
        click.echo(json.dumps({"old": old_path, "new": new_path, **report.to_dict()}, indent=2))
    else:
        for line in report.lines():
            click.echo(line)
    sys.exit(report.exit_status)


@click.command("backtest")
@click.argument("new_path", metavar="NEW", type=click.Path(dir_okay=False))
@click.option(
    "--database", required=True, help="The ledger to replay: a SQLite file or PostgreSQL URL."
)
@click.option("--since", help="Replay entries from this ISO 8601 instant (inclusive).")
@click.option("--until", help="Replay entries before this ISO 8601 instant.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def policy_backtest(
    new_path: str, database: str, since: str | None, until: str | None, as_json: bool
) -> None:
    """Replay the decisions recorded in a ledger under NEW and report what would flip.

    The ledger is only read. Exit status: 0 no decision flips, 1 some flip but none allows
    more, 3 a decision flips towards allowing (deny -> allow, deny -> require_approval,
    require_approval -> allow), 2 invalid input.
    """
    text, policy = _compiled(new_path)
    if postgres_audit.database_missing(database):
        _fail(f"no ledger at `{database}`")
    window = (_instant(since, "--since"), _instant(until, "--until"))
    try:
        events = read_log(postgres_audit.audit_entries(database), *window)
    except (PaywardenError, ValueError) as error:
        _fail(f"cannot read the audit log of `{database}`: {error}")
    with WardenReplayer(text, policy, events) as replayer:
        report = replay(events, policy, text, replayer)
    if as_json:
        payload = {"policy": new_path, "database": database, **report.to_dict()}
        click.echo(json.dumps({**payload, "exit_status": _backtest_status(report)}, indent=2))
    else:
        for line in backtest_lines(report, policy):
            click.echo(line)
    sys.exit(_backtest_status(report))


_WIDER = {"deny -> allow", "deny -> require_approval", "require_approval -> allow"}


def _backtest_status(report: BacktestReport) -> int:
    if any(flip.kind in _WIDER for flip in report.flips):
        return 3
    return 1 if report.flips else 0


def backtest_lines(
    report: BacktestReport, policy: CompiledPolicy, shown_max: int = 20
) -> list[str]:
    """The report as text: totals, flips by kind with their money, per agent and reason."""
    lines = [
        f"replayed {report.replayed} decisions under policy {report.policy_version}; "
        f"{len(report.flips)} flipped, {len(report.skipped)} not replayable"
    ]
    money = report.money()
    for kind, count in report.counts().items():
        amounts = ", ".join(
            f"{format_minor(minor, policy.currencies.exponent(currency))} {currency}"
            for currency, minor in money.get(kind, {}).items()
        )
        lines.append(f"  {kind}: {count} ({amounts})")
    for title, groups in (("agent", report.by_agent()), ("reason", report.by_reason())):
        for name, counts in groups.items():
            described = ", ".join(f"{kind}: {count}" for kind, count in counts.items())
            lines.append(f"  {title} {name}: {described}")
    first = report.first_divergence
    if first is not None and first.new is not None:
        recorded = first.recorded
        lines.append(
            f"first divergence: seq {recorded.seq} at {recorded.at.isoformat()} decision "
            f"{recorded.decision_id} (agent {recorded.agent}): {first.kind} "
            f"(old {recorded.reason_code} {list(recorded.rule_ids)}, "
            f"new {first.new.reason_code} {list(first.new.rule_ids)})"
        )
    for skipped in report.skipped[:shown_max]:
        lines.append(
            f"not replayable: seq {skipped.recorded.seq} decision "
            f"{skipped.recorded.decision_id}: {skipped.skipped}"
        )
    if len(report.skipped) > shown_max:
        lines.append(f"... and {len(report.skipped) - shown_max} more (--json lists them all)")
    if report.state_refused:
        lines.append(
            f"{report.state_refused} recorded state changes could not be applied to the "
            "simulated ledger (a hold already expired or settled there)"
        )
    if not report.flips:
        lines.append("no decision flips")
    return lines


_REPLAY_ACTOR = "backtest"


class WardenReplayer:
    """The real engine on a simulated ledger: a fresh in-memory Warden whose frozen clock is
    moved to each entry's time; holds settle, sessions move and halts change as the log shows."""

    def __init__(
        self, text: str, policy: CompiledPolicy, events: list[Recorded | StateStep]
    ) -> None:
        first = next((event for event in events if isinstance(event, Recorded)), None)
        environment = first.intent.get("environment") if first is not None else None
        start = events[0].at if events else datetime.now(UTC)
        self.policy = policy
        self.clock = FrozenClock(start)
        self.warden = Warden.open(
            text,
            clock=self.clock,
            ids=SequentialIds(),
            environment=environment if isinstance(environment, str) else None,
        )
        self.warden.add_operator(_REPLAY_ACTOR, name="policy backtest")  # halts need one

    def __enter__(self) -> WardenReplayer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.warden.close()

    def decide(self, recorded: Recorded) -> Decision:
        self.clock.set(recorded.at)
        try:
            intent = recorded_intent(recorded, self.policy)
        except InvalidInputError as error:
            raise ValueError(str(error)) from error
        return self.warden.authorize(intent, actor=_REPLAY_ACTOR)

    def apply(self, step: StateStep, hold_id: str | None) -> bool:
        self.clock.set(step.at)
        body, warden = step.body, self.warden
        try:
            if step.kind == "hold.captured" and hold_id is not None:
                warden.capture(hold_id, self._captured(body), actor=_REPLAY_ACTOR)
            elif step.kind in ("hold.voided", "hold.expired") and hold_id is not None:
                warden.void(hold_id, actor=_REPLAY_ACTOR)
            elif step.kind == "session.started":
                warden.start_session(str(body["agent"]), str(body["session_id"]))
            elif step.kind == "session.phase":
                agent, session_id = str(body["agent"]), str(body["session_id"])
                warden.advance_phase(agent, session_id, str(body["phase"]))
            elif step.kind == "halt.set":
                scope = None if body.get("scope") == "*" else str(body.get("scope"))
                warden.halt(scope, reason=str(body.get("reason")), actor=_REPLAY_ACTOR)
            elif step.kind == "halt.cleared":
                scope = None if body.get("scope") == "*" else str(body.get("scope"))
                warden.resume(scope, actor=_REPLAY_ACTOR)
        except (PaywardenError, KeyError):
            return False  # the replayed state differs (a hold already expired there)
        return True

    def _captured(self, body: object) -> str | None:
        if not isinstance(body, dict):
            return None
        captured, amount = body.get("captured_minor"), body.get("amount_minor")
        if not isinstance(captured, int) or captured == amount:
            return None
        exponent = self.policy.currencies.exponent(str(body.get("currency")))
        return format_minor(captured, exponent)


def recorded_intent(recorded: Recorded, policy: CompiledPolicy) -> PaymentIntent:
    """The intent of a recorded decision as it was admitted, without its idempotency key (the
    log holds each decision once)."""
    summary = recorded.intent
    exponent = policy.currencies.exponent(recorded.currency)
    metadata = summary.get("metadata")

    def text(name: str) -> str | None:
        value = summary.get(name)
        return value if isinstance(value, str) else None

    return PaymentIntent(
        agent=str(summary.get("agent")),
        action=str(summary.get("action")),
        amount=format_minor(recorded.amount_minor, exponent),
        currency=recorded.currency,
        recipient=str(summary.get("recipient")),
        environment=text("environment"),
        category=text("category"),
        purpose=text("purpose"),
        recipient_name=text("recipient_name"),
        rail=text("rail"),
        session_id=text("session_id"),
        metadata=metadata if isinstance(metadata, dict) else None,
        currencies=policy.currencies,
    )


def _instant(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        _fail(f"{option}: `{value}` is not an ISO 8601 instant")
    if instant.tzinfo is None:
        _fail(f"{option}: `{value}` needs a UTC offset such as +00:00")
    return instant


def _sample_point(case: TestCase, policy: CompiledPolicy) -> Point:
    intent = build_intent(case.fields, policy.currencies, policy.currency)
    return Point(intent, case.phase, case.now, ())


def decide_case(policy_text: str, policy: CompiledPolicy, case: TestCase) -> Decision:
    """One case through a fresh in-memory Warden: past payments first, then the intent."""
    fields = dict(case.fields)
    if case.phase is not None:
        fields.setdefault("session_id", DEFAULT_SESSION)
    intent = build_intent(fields, policy.currencies, policy.currency)
    clock = FrozenClock(case.now)
    with Warden.open(
        policy_text, clock=clock, ids=SequentialIds(), environment=case.deployment
    ) as warden:
        for past in case.history:
            clock.set(past.at)
            decision = warden.authorize(
                build_intent(past.fields, policy.currencies, policy.currency)
            )
            if decision.outcome != "allow" or decision.hold_id is None:
                raise CaseSetupError(
                    f"past payment at line {past.mark.line} was not allowed "
                    f"({decision.reason_code}: {decision.reason})"
                )
            if past.status == "captured":
                warden.capture(decision.hold_id)
        clock.set(case.now)
        if case.phase is not None and intent.session_id is not None:
            warden.start_session(intent.agent, intent.session_id)
            for phase in PHASES[1 : PHASES.index(case.phase) + 1]:
                warden.advance_phase(intent.agent, intent.session_id, phase)
        return warden.authorize(intent)


def _test_files(paths: tuple[str, ...]) -> list[Path]:
    files: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
            if not found:
                _fail(f"no *.yaml test files in `{name}`")
            files.extend(found)
        else:
            files.append(path)
    return files


def _compiled(path: str) -> tuple[str, CompiledPolicy]:
    text = _read(path)
    policy, report = check_policy(text, path)
    if policy is None:
        for line in report.lines():
            click.echo(line, err=True)
        _fail(f"`{path}` is not a valid policy")
    return text, policy


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        _fail(f"cannot read `{path}`: {error}")


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_INVALID)
