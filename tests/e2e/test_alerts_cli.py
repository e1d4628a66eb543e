"""`paywarden alerts list|sweep` on a ledger file that a Warden raised alerts in."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from paywarden import FrozenClock, Warden
from paywarden.entrypoints.cli.main import cli
from paywarden.testing import example_intent
from support.policies import write_policy
from support.wardens import add_operators

POLICY = """
currency: USD
rules:
  - {id: allow, effect: allow, actions: ["payments.*"]}
alerts:
  - {id: big, kind: large_transaction, amount: 100}
  - {id: halted, kind: halt}
"""


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_alerts_list_and_sweep(tmp_path: Path) -> None:
    database, policy = str(tmp_path / "pw.db"), write_policy(tmp_path, POLICY)
    with Warden.open(policy, database=database, clock=FrozenClock()) as warden:
        add_operators(warden)
        warden.authorize(example_intent("150.00"))
        warden.sweep_alerts()  # the cursor starts here
        warden.halt(reason="incident 42", actor="alice")
    code, listed = _run("alerts", "list", "--database", database)
    assert code == 0 and "large_transaction" in listed and "big: Payment of 150.00 USD" in listed
    code, swept = _run("alerts", "sweep", "--policy", str(policy), "--database", database, "--json")
    assert code == 0
    (halt,) = json.loads(swept)
    assert halt["kind"] == "halt" and "incident 42" in halt["text"]
    assert _run("alerts", "sweep", "--policy", str(policy), "--database", database) == (
        0,
        "no alerts\n",
    )
    code, as_json = _run("alerts", "list", "--kind", "halt", "--json", "--database", database)
    assert code == 0 and [row["alert_id"] for row in json.loads(as_json)] == [halt["alert_id"]]
    assert _run("alerts", "list", "--database", str(tmp_path / "none.db"))[0] == 2
