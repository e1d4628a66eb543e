"""The operator commands: `paywarden operators|approvals|grants|halt|resume`.

Each runs through click's CliRunner against a ledger file under `tmp_path`. Refusals
(forbidden, expired, conflicts, unknown ids) exit 1 with one `error:` line on standard error;
a missing ledger exits 2. The commands use the system clock, so the ledger is prepared with a
`FrozenClock` set to the real time now (or an hour ago, to make a request expire).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from paywarden import FrozenClock, Warden
from paywarden.entrypoints.cli.main import cli
from paywarden.testing import example_intent
from support.policies import write_policy

POLICY = """
currency: USD
approvals:
  ttl: 15m
  two_person_above: 1000
rules:
  - id: blocked
    effect: deny
    recipients: ["blocked.example.com"]
  - id: review
    effect: require_approval
    actions: ["payments.*"]
    amount: {gt: 100}
  - id: allow-payments
    effect: allow
    actions: ["payments.*"]
budgets:
  - id: daily
    limit: "50000.00"
    window: day
"""


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)


def _refused(result: Result, fragment: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ") and fragment in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    return write_policy(tmp_path, POLICY)


def _warden(policy: Path, database: Path, *, ago: float = 0) -> Warden:
    clock = FrozenClock(datetime.now(UTC) - timedelta(seconds=ago))
    return Warden.open(policy, database=database, clock=clock)


@pytest.fixture
def ledger(policy: Path, database: Path) -> Iterator[Path]:
    """A ledger with operators alice and bob (added through the CLI)."""
    _warden(policy, database).close()
    for operator_id, name in (("alice", "Alice Example"), ("bob", "Bob Example")):
        result = _run("operators", "add", operator_id, "--name", name, "--database", database)
        assert result.exit_code == 0, result.output
        assert result.stdout == f"operator {operator_id} added\n"
    yield database


def _request(policy: Path, database: Path, amount: str = "500.00", **changes: Any) -> str:
    with _warden(policy, database) as warden:
        decision = warden.authorize(example_intent(amount, **changes))
    assert decision.outcome == "require_approval" and decision.approval_id
    return decision.approval_id


def _decide(
    verb: str, approval_id: str, operator: str, database: Path, *extra: str | Path
) -> Result:
    return _run(
        "approvals",
        verb,
        approval_id,
        "--operator",
        operator,
        "--reason",
        f"{verb} by {operator}",
        "--database",
        database,
        *extra,
    )


def _approve(approval_id: str, operator: str, database: Path, policy: Path) -> Result:
    return _decide("approve", approval_id, operator, database, "--policy", policy)


# A missing ledger --------------------------------------------------------------------------


MISSING_LEDGER_COMMANDS = [
    ["operators", "add", "alice", "--name", "Alice"],
    ["operators", "list"],
    ["approvals", "list"],
    ["approvals", "show", "apr_1"],
    ["approvals", "approve", "apr_1", "--operator", "alice", "--reason", "ok", "--policy", "p"],
    ["approvals", "reject", "apr_1", "--operator", "alice", "--reason", "no"],
    [
        "grants",
        "add",
        "--agent",
        "agent-a",
        "--action",
        "payments.*",
        "--max-per-payment",
        "2500",
        "--total",
        "10000",
        "--currency",
        "USD",
        "--expires-in",
        "1h",
        "--operator",
        "alice",
    ],
    ["grants", "list"],
    ["grants", "revoke", "grant_1", "--operator", "alice"],
    ["halt", "--reason", "incident", "--actor", "alice"],
    ["resume", "--actor", "alice"],
]


@pytest.mark.parametrize("args", MISSING_LEDGER_COMMANDS, ids=lambda args: " ".join(args[:2]))
def test_every_operator_command_exits_2_without_a_ledger(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "nowhere.db"
    result = _run(*args, "--database", missing)
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: no ledger at `{missing}`\n"
    assert not missing.exists()  # never created by accident


# Operators ---------------------------------------------------------------------------------


def test_operators_add_and_list(ledger: Path) -> None:
    listed = _run("operators", "list", "--database", ledger)
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert [line.split("  ")[:3] for line in lines] == [
        ["alice", "Alice Example", "active"],
        ["bob", "Bob Example", "active"],
    ]
    _refused(_run("operators", "add", "alice", "--name", "A", "--database", ledger), "exists")
    _refused(_run("operators", "add", "bad id!", "--name", "X", "--database", ledger), "bad id!")
    assert _run("operators", "add", "--database", ledger).exit_code == 2  # usage: no id


# Approvals ---------------------------------------------------------------------------------


def test_approvals_list_and_show(ledger: Path, policy: Path) -> None:
    empty = _run("approvals", "list", "--database", ledger)
    assert (empty.exit_code, empty.stdout) == (0, "(no approval requests)\n")
    first = _request(policy, ledger)
    second = _request(policy, ledger, "1500.00", agent="agent-b")
    listed = _run("approvals", "list", "--database", ledger)
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert len(lines) == 2
    by_id = {line.split()[0]: line for line in lines}
    assert "pending" in by_id[first] and "agent-a -> vendor.example.com" in by_id[first]
    assert "50000 minor USD (payments.transfer, production)" in by_id[first]
    assert "approvals 0/1" in by_id[first] and "approvals 0/2" in by_id[second]
    only_b = _run("approvals", "list", "--agent", "agent-b", "--database", ledger)
    assert [line.split()[0] for line in only_b.stdout.splitlines()] == [second]
    none_approved = _run("approvals", "list", "--status", "approved", "--database", ledger)
    assert none_approved.stdout == "(no approval requests)\n"
    as_json = json.loads(_run("approvals", "list", "--json", "--database", ledger).stdout)
    assert {item["approval_id"] for item in as_json} == {first, second}
    assert _run("approvals", "list", "--status", "bogus", "--database", ledger).exit_code == 2
    shown = _run("approvals", "show", first, "--database", ledger)
    assert shown.exit_code == 0
    data = json.loads(shown.stdout)
    assert (data["approval_id"], data["status"], data["required"]) == (first, "pending", 1)
    assert data["intent"]["recipient"] == "vendor.example.com"
    assert data["rule_ids"] == ["review"] and data["votes"] == []
    _refused(_run("approvals", "show", "apr_missing", "--database", ledger), "apr_missing")


def test_approve_then_the_agent_pays_once(ledger: Path, policy: Path) -> None:
    approval_id = _request(policy, ledger)
    result = _approve(approval_id, "alice", ledger, policy)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{approval_id}  approved ")
    assert "approvals 1/1" in result.stdout
    shown = json.loads(_run("approvals", "show", approval_id, "--database", ledger).stdout)
    assert [(v["operator_id"], v["vote"], v["reason"]) for v in shown["votes"]] == [
        ("alice", "approve", "approve by alice")
    ]
    with _warden(policy, ledger) as warden:
        used = warden.authorize(example_intent())
        assert (used.outcome, used.reason_code) == ("allow", "approved")
        assert "alice" in used.reason
        assert warden.verify_audit().ok
    _refused(_approve(approval_id, "bob", ledger, policy), "consumed")


def test_approve_refusals_exit_1(ledger: Path, policy: Path) -> None:
    approval_id = _request(policy, ledger)
    _refused(_approve(approval_id, "agent-a", ledger, policy), "not a registered operator")
    _refused(_approve(approval_id, "mallory", ledger, policy), "not a registered operator")
    _refused(_approve("apr_missing", "alice", ledger, policy), "apr_missing")
    assert (
        _run("operators", "add", "agent-a", "--name", "Agent", "--database", ledger).exit_code == 0
    )
    _refused(_approve(approval_id, "agent-a", ledger, policy), "requested this payment")
    shown = json.loads(_run("approvals", "show", approval_id, "--database", ledger).stdout)
    assert (shown["status"], shown["votes"]) == ("pending", [])


def test_approve_needs_a_reason_and_an_operator(ledger: Path, policy: Path) -> None:
    approval_id = _request(policy, ledger)
    no_reason = _run(
        "approvals", "approve", approval_id, "--operator", "alice", "--policy", policy,
        "--database", ledger,
    )  # fmt: skip
    assert no_reason.exit_code == 2 and "--reason" in no_reason.output
    no_operator = _run(
        "approvals", "approve", approval_id, "--reason", "ok", "--policy", policy,
        "--database", ledger,
    )  # fmt: skip
    assert no_operator.exit_code == 2 and "--operator" in no_operator.output
    shown = json.loads(_run("approvals", "show", approval_id, "--database", ledger).stdout)
    assert (shown["status"], shown["votes"]) == ("pending", [])


def test_approve_without_a_policy_is_a_usage_error_and_changes_nothing(
    ledger: Path, policy: Path
) -> None:
    approval_id = _request(policy, ledger)
    no_policy = _decide("approve", approval_id, "alice", ledger)
    shown = json.loads(_run("approvals", "show", approval_id, "--database", ledger).stdout)
    assert (shown["status"], shown["votes"]) == ("pending", [])
    assert no_policy.exit_code == 2 and "--policy" in no_policy.output


def test_an_expired_request_is_refused_with_exit_1(
    policy: Path, database: Path, ledger: Path
) -> None:
    with _warden(policy, database, ago=3_600) as warden:
        decision = warden.authorize(example_intent())
    approval_id = str(decision.approval_id)
    _refused(_approve(approval_id, "alice", database, policy), "expired")
    _refused(_decide("reject", approval_id, "bob", database), "expired")
    shown = json.loads(_run("approvals", "show", approval_id, "--database", database).stdout)
    assert shown["status"] == "expired"


def test_the_two_person_rule_on_the_command_line(ledger: Path, policy: Path) -> None:
    approval_id = _request(policy, ledger, "1500.00")
    first = _approve(approval_id, "alice", ledger, policy)
    assert first.exit_code == 0 and "pending" in first.stdout and "approvals 1/2" in first.stdout
    _refused(_approve(approval_id, "alice", ledger, policy), "another operator")
    second = _approve(approval_id, "bob", ledger, policy)
    assert second.exit_code == 0 and "approved" in second.stdout
    assert "approvals 2/2" in second.stdout


def test_approve_rechecks_the_policy_it_is_given(
    ledger: Path, policy: Path, tmp_path: Path
) -> None:
    approval_id = _request(policy, ledger)
    frozen = tmp_path / "frozen.yaml"
    frozen.write_text(
        POLICY.replace(
            "rules:\n",
            "rules:\n  - id: freeze\n    effect: deny\n    recipients: [vendor.example.com]\n",
        ),
        encoding="utf-8",
    )
    result = _approve(approval_id, "alice", ledger, frozen)
    assert f"{approval_id}  rejected " in result.stdout
    shown = json.loads(_run("approvals", "show", approval_id, "--database", ledger).stdout)
    assert shown["status"] == "rejected" and "at approval time" in shown["note"]
    with _warden(policy, ledger) as warden:
        assert warden.hold(shown["hold_id"]).state == "voided"


def test_reject_releases_the_hold_and_closes_the_request(ledger: Path, policy: Path) -> None:
    approval_id = _request(policy, ledger)
    result = _decide("reject", approval_id, "bob", ledger)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{approval_id}  rejected ")
    _refused(_approve(approval_id, "alice", ledger, policy), "already rejected")
    _refused(_decide("reject", approval_id, "alice", ledger), "already rejected")
    _refused(_decide("reject", approval_id, "agent-a", ledger), "not a registered operator")
    shown = json.loads(_run("approvals", "show", approval_id, "--database", ledger).stdout)
    with _warden(policy, ledger) as warden:
        assert warden.hold(shown["hold_id"]).state == "voided"
        assert sum(row.held_minor for row in warden.budgets()) == 0


def test_check_approve_check_through_the_command_line(ledger: Path, policy: Path) -> None:
    check = [
        "check", "--policy", policy, "--database", ledger, "--agent", "agent-a",
        "--action", "payments.transfer", "--amount", "500.00", "--currency", "USD",
        "--recipient", "vendor.example.com", "--json",
    ]  # fmt: skip
    asked = json.loads(_run(*check).stdout)
    assert asked["outcome"] == "require_approval"
    again = json.loads(_run(*check).stdout)
    assert again["approval_id"] == asked["approval_id"]
    assert _approve(asked["approval_id"], "alice", ledger, policy).exit_code == 0
    paid = json.loads(_run(*check).stdout)
    assert (paid["outcome"], paid["reason_code"]) == ("allow", "approved")
    assert paid["approval_id"] == asked["approval_id"]
    next_one = json.loads(_run(*check).stdout)
    assert next_one["outcome"] == "require_approval"
    assert next_one["approval_id"] != asked["approval_id"]


# Grants ------------------------------------------------------------------------------------


def _grant(
    database: Path,
    *extra: str,
    operator: str = "alice",
    agent: str = "agent-a",
    per_payment: str = "2500",
    total: str = "6000",
    currency: str = "USD",
    expires_in: str = "1h",
) -> Result:
    """`paywarden grants add` for `payments.*`."""
    return _run(
        "grants", "add", "--agent", agent, "--action", "payments.*",
        "--max-per-payment", per_payment, "--total", total, "--currency", currency,
        "--expires-in", expires_in, "--operator", operator, "--database", database, *extra,
    )  # fmt: skip


def test_grants_add_list_and_revoke(ledger: Path, policy: Path) -> None:
    added = _grant(ledger, "--uses", "5", "--recipient", "vendor.example.com")
    assert added.exit_code == 0, added.output
    grant = json.loads(added.stdout)
    assert (grant["agent"], grant["action"], grant["currency"]) == ("agent-a", "payments.*", "USD")
    assert (grant["per_payment_minor"], grant["total_minor"], grant["uses_max"]) == (
        250_000,
        600_000,
        5,
    )
    assert grant["recipients"] == ["vendor.example.com"] and grant["created_by"] == "alice"
    with _warden(policy, ledger) as warden:
        assert warden.authorize(example_intent("2500.00")).reason_code == "allowed_by_grant"
        assert warden.authorize(example_intent("9999.00")).reason_code == "approval_required"
        assert warden.authorize(example_intent("2500.00", agent="agent-b")).outcome != "allow"
    listed = json.loads(_run("grants", "list", "--database", ledger).stdout)
    assert [(g["grant_id"], g["uses"], g["used_minor"]) for g in listed] == [
        (grant["grant_id"], 1, 250_000)
    ]
    assert (
        json.loads(_run("grants", "list", "--agent", "agent-b", "--database", ledger).stdout) == []
    )
    revoked = _run("grants", "revoke", grant["grant_id"], "--operator", "bob", "--database", ledger)
    assert (revoked.exit_code, revoked.stdout) == (0, f"grant {grant['grant_id']} revoked\n")
    assert json.loads(_run("grants", "list", "--active", "--database", ledger).stdout) == []
    everything = json.loads(_run("grants", "list", "--database", ledger).stdout)
    assert everything[0]["revoked_us"] is not None
    with _warden(policy, ledger) as warden:
        assert warden.authorize(example_intent("2400.00")).reason_code == "approval_required"
        assert warden.verify_audit().ok


def test_grant_refusals_exit_1(ledger: Path) -> None:
    _refused(_grant(ledger, operator="mallory"), "not a registered operator")
    assert (
        _run("operators", "add", "agent-a", "--name", "Agent", "--database", ledger).exit_code == 0
    )
    _refused(_grant(ledger, operator="agent-a"), "requested")
    _refused(
        _run("grants", "revoke", "grant_missing", "--operator", "alice", "--database", ledger),
        "grant_missing",
    )
    grant_id = json.loads(_grant(ledger).stdout)["grant_id"]
    _refused(
        _run("grants", "revoke", grant_id, "--operator", "mallory", "--database", ledger),
        "not a registered operator",
    )
    assert len(json.loads(_run("grants", "list", "--active", "--database", ledger).stdout)) == 1


def test_grants_add_with_a_bad_lifetime_exits_2(ledger: Path) -> None:
    for lifetime in ("soon", "day"):
        result = _grant(ledger, per_payment="10", total="10", expires_in=lifetime)
        assert result.exit_code == 2, result.output
        assert "--expires-in" in result.stderr
    assert json.loads(_run("grants", "list", "--database", ledger).stdout) == []


def test_grants_add_with_an_invalid_amount_exits_2_like_other_invalid_input(ledger: Path) -> None:
    result = _grant(ledger, per_payment="ten", total="10")
    assert result.exit_code == 2, result.output


def test_grants_add_refusals_of_bounds_exit_1_and_create_nothing(ledger: Path) -> None:
    too_big = _grant(ledger, per_payment="7000", total="6000")
    _refused(too_big, "the per-payment ceiling cannot exceed the total")
    _refused(_grant(ledger, "--uses", "0"), "uses must be at least 1")
    too_long = _grant(ledger, per_payment="10", total="10", expires_in="29d")
    _refused(too_long, "a grant must expire within 28 days")
    _refused(_grant(ledger, operator="mallory"), "not a registered operator")
    assert json.loads(_run("grants", "list", "--database", ledger).stdout) == []


@pytest.mark.parametrize(
    ("per_payment", "currency", "fragment"),
    [("10.001", "USD", "10.001"), ("0", "USD", "greater than zero"), ("10", "ABC", "ABC")],
)
def test_grants_add_amounts_and_currencies_that_check_refuses_exit_2(
    ledger: Path, per_payment: str, currency: str, fragment: str
) -> None:
    result = _grant(ledger, per_payment=per_payment, total="100", currency=currency)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and fragment in result.stderr
    assert json.loads(_run("grants", "list", "--database", ledger).stdout) == []


@pytest.mark.parametrize("verb", ["approve", "reject"])
def test_a_blank_reason_is_refused_first_and_changes_nothing_even_when_overdue(
    policy: Path, database: Path, ledger: Path, verb: str
) -> None:
    with _warden(policy, database, ago=3_600) as warden:  # an overdue request
        approval_id = str(warden.authorize(example_intent()).approval_id)
    for operator in ("alice", "mallory"):
        blank = _run(
            "approvals", verb, approval_id, "--operator", operator, "--reason", "  ",
            "--policy", policy, "--database", database,
        )  # fmt: skip
        _refused(blank, "a decision needs a reason")
    shown = json.loads(_run("approvals", "show", approval_id, "--database", database).stdout)
    assert (shown["status"], shown["votes"]) == ("pending", [])  # not even expired
    _refused(_decide(verb, approval_id, "alice", database, "--policy", policy), "expired")


def test_halting_one_agent_while_all_are_halted_prints_that_agents_halt(ledger: Path) -> None:
    everyone = _run("halt", "--reason", "incident 7", "--actor", "alice", "--database", ledger)
    assert everyone.exit_code == 0, everyone.output
    one = _run(
        "halt", "--agent", "agent-a", "--reason", "key leaked", "--actor", "bob",
        "--database", ledger,
    )  # fmt: skip
    assert (one.exit_code, one.stdout) == (0, "halted agent agent-a: key leaked (by bob)\n")
    again = _run(
        "halt", "--agent", "agent-a", "--reason", "second", "--actor", "alice",
        "--database", ledger,
    )  # fmt: skip
    assert (again.exit_code, again.stdout) == (0, "halted agent agent-a: key leaked (by bob)\n")


# Halt and resume ---------------------------------------------------------------------------


def test_halt_and_resume_everyone(ledger: Path, policy: Path) -> None:
    halted = _run("halt", "--reason", "incident 7", "--actor", "alice", "--database", ledger)
    assert halted.exit_code == 0, halted.output
    assert halted.stdout.startswith("halted all agents: incident 7")
    with _warden(policy, ledger) as warden:
        for agent in ("agent-a", "agent-b"):
            denied = warden.authorize(example_intent("10.00", agent=agent))
            assert (denied.outcome, denied.reason_code) == ("deny", "halted")
            assert "incident 7" in denied.reason
    resumed = _run("resume", "--actor", "bob", "--database", ledger)
    assert (resumed.exit_code, resumed.stdout) == (0, "resumed\n")
    with _warden(policy, ledger) as warden:
        assert warden.authorize(example_intent("10.00")).outcome == "allow"
    again = _run("resume", "--actor", "bob", "--database", ledger)
    assert (again.exit_code, again.stdout) == (1, "nothing was halted for that scope\n")
    assert _run("halt", "--actor", "alice", "--database", ledger).exit_code == 2  # no reason
    _refused(_run("halt", "--reason", " ", "--actor", "alice", "--database", ledger), "reason")


def test_halt_one_agent_and_void_its_pending_requests(ledger: Path, policy: Path) -> None:
    mine = _request(policy, ledger, "500.00")
    theirs = _request(policy, ledger, "600.00", agent="agent-b")
    result = _run(
        "halt", "--agent", "agent-a", "--reason", "looping", "--actor", "alice",
        "--void-pending", "--database", ledger,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("halted agent agent-a: looping")
    voided = _run("approvals", "list", "--status", "voided", "--database", ledger)
    assert [line.split()[0] for line in voided.stdout.splitlines()] == [mine]
    pending = _run("approvals", "list", "--status", "pending", "--database", ledger)
    assert [line.split()[0] for line in pending.stdout.splitlines()] == [theirs]
    with _warden(policy, ledger) as warden:
        assert sum(row.held_minor for row in warden.budgets()) == 60_000
        assert warden.authorize(example_intent("10.00")).reason_code == "halted"
        assert warden.authorize(example_intent("10.00", agent="agent-b")).outcome == "allow"
    # Resuming everyone does not lift the agent's own halt.
    assert _run("resume", "--actor", "alice", "--database", ledger).exit_code == 1
    resumed = _run("resume", "--agent", "agent-a", "--actor", "alice", "--database", ledger)
    assert resumed.exit_code == 0
    with _warden(policy, ledger) as warden:
        assert warden.authorize(example_intent("10.00")).outcome == "allow"
        assert warden.verify_audit().ok
