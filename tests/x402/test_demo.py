"""`paywarden demo x402`: small calls pass, the big one is refused before signing, the daily
budget stops the burst, everything is audited; `paywarden demo` still runs the seed scenarios."""

from __future__ import annotations

import re

from click.testing import CliRunner

from paywarden.entrypoints.cli.main import cli


def test_demo_x402_pays_refuses_before_signing_and_stops_at_the_budget() -> None:
    result = CliRunner().invoke(cli, ["demo", "x402"])
    assert result.exit_code == 0, result.output
    rows = re.findall(
        r"^\s*\d+\s+/(\w+)\s+(PAID|REFUSED)\s+(\S+(?: \d+)?)\s+(\d+)\s+(\d+)$", result.output, re.M
    )
    assert [(path, outcome, code) for path, outcome, code, _, _ in rows] == [
        ("quote", "PAID", "HTTP 200"),
        ("quote", "PAID", "HTTP 200"),
        ("quote", "PAID", "HTTP 200"),
        ("report", "REFUSED", "denied_by_rule"),
        ("quote", "PAID", "HTTP 200"),
        ("quote", "PAID", "HTTP 200"),
        ("quote", "REFUSED", "budget_exceeded"),
        ("quote", "REFUSED", "budget_exceeded"),
    ]
    signed = [int(row[3]) for row in rows]
    assert signed == [1, 2, 3, 3, 4, 5, 5, 5]  # refused payments were never signed
    assert "budget `daily`: 5 of 5 US cents spent, 0 held" in result.output
    assert "facilitator: 5 verify, 5 settle calls" in result.output
    assert "ledger: 5 payments settled on the `x402` rail" in result.output
    # 8 decisions, 5 payments submitted and settled (the holds captured with them), 1 policy
    assert "audit: 24 entries, chain intact" in result.output


def test_demo_without_a_subcommand_still_runs_the_seed_scenarios() -> None:
    result = CliRunner().invoke(cli, ["demo"])
    assert result.exit_code == 0, result.output
    assert "decided by the real policy engine" in result.output
    assert "x402" not in result.output.splitlines()[0]
