"""Analytics (issue 17) end to end: decisions made through the Warden on a SQLite file, then
read back by `warden.analytics`, `GET /v1/analytics/...` and `paywarden analytics`."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from rest_support import POLICY, Gateway

from paywarden import FrozenClock, Warden
from paywarden.actions.analytics import SpendLine
from paywarden.adapters.storage.sqlite_schema import MIGRATIONS, statements
from paywarden.entrypoints.cli.main import cli
from paywarden.errors import InvalidInputError
from paywarden.testing import example_intent

DAY = datetime(2026, 1, 5, tzinfo=UTC)
SINCE, UNTIL = DAY, DAY + timedelta(days=1)
QUERY = "since=2026-01-05T00:00:00Z&until=2026-01-06T00:00:00Z"


def _decide(gateway: Gateway) -> None:
    """agent-a: 50.00 paid (captured), 200.00 pending approval, 6000.00 denied (no rule);
    agent-b: 30.00 allowed (held only), category travel, to shop.example."""
    warden = gateway.warden
    assert warden.pay(example_intent("50.00", idempotency_key="a-1")).payment is not None
    assert warden.authorize(example_intent("200.00")).outcome == "require_approval"
    assert warden.authorize(example_intent("6000.00")).outcome == "deny"
    travel = example_intent("30.00", agent="agent-b", recipient="Shop.Example.", category="travel")
    assert warden.authorize(travel).outcome == "allow"


def test_spend_by_agent_counts_outcomes_and_exact_captured_money(gateway: Gateway) -> None:
    _decide(gateway)
    answer = gateway.warden.analytics("spend", by="agent", since=SINCE, until=UNTIL)
    assert answer.spend == (
        SpendLine("agent-a", "USD", 3, 1, 1, 1, 5000, 5000, "50.00", "50.00"),
        SpendLine("agent-b", "USD", 1, 1, 0, 0, 3000, 0, "30.00", "0.00"),
    )
    gateway.clock.advance(seconds=60)
    recent = gateway.warden.analytics("spend")  # the last 7 days, until now
    assert sum(line.decisions for line in recent.spend) == 4
    later = gateway.warden.analytics("spend", since=DAY + timedelta(hours=12, seconds=1))
    assert later.spend == ()


def test_recipients_are_canonical_and_categories_grouped(gateway: Gateway) -> None:
    _decide(gateway)
    top = gateway.warden.analytics("top-recipients", top=1, since=SINCE, until=UNTIL)
    assert [(line.key, line.allowed_amount) for line in top.spend] == [
        ("vendor.example.com", "50.00")
    ]
    every = gateway.warden.analytics("spend", by="recipient", since=SINCE, until=UNTIL)
    assert [line.key for line in every.spend] == ["vendor.example.com", "shop.example"]
    categories = gateway.warden.analytics(
        "spend", by="category", agent="agent-b", since=SINCE, until=UNTIL
    )
    assert [(line.key, line.decisions) for line in categories.spend] == [("travel", 1)]
    hours = gateway.warden.analytics("spend", by="hour", since=SINCE, until=UNTIL)
    assert [(line.key, line.decisions) for line in hours.spend] == [("2026-01-05T12:00:00Z", 4)]


def test_denials_and_turnaround(gateway: Gateway) -> None:
    _decide(gateway)
    (denial,) = gateway.warden.analytics("denials", since=SINCE, until=UNTIL).denials
    assert denial.denials == 1
    (pending,) = gateway.warden.approvals(status="pending")
    gateway.clock.advance(seconds=90)
    gateway.warden.approve(pending.approval_id, operator="alice", reason="ok")
    turnaround = gateway.warden.analytics("turnaround", since=SINCE, until=UNTIL).turnaround
    assert turnaround is not None
    assert (turnaround.requested, turnaround.approved, turnaround.open) == (1, 1, 0)
    assert turnaround.median_seconds == turnaround.p90_seconds == 90.0


def test_a_range_must_be_ordered_and_zoned(gateway: Gateway) -> None:
    with pytest.raises(InvalidInputError, match="before"):
        gateway.warden.analytics("spend", since=DAY, until=DAY)
    with pytest.raises(InvalidInputError, match="zone"):
        naive = datetime(2026, 1, 5)  # noqa: DTZ001 - a time without a zone, on purpose
        gateway.warden.analytics("spend", since=naive, until=DAY)


def test_rest_analytics_for_staff_only(gateway: Gateway) -> None:
    _decide(gateway)
    path = f"/v1/analytics/spend?{QUERY}&by=currency"
    answer = gateway.client.get(path, headers=gateway.auth("operator"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["by"] == "currency" and body["since"] == "2026-01-05T00:00:00Z"
    (row,) = body["rows"]
    assert (row["key"], row["allowed_minor"], row["captured_amount"]) == ("USD", 8000, "50.00")
    denials = gateway.client.get(f"/v1/analytics/denials?{QUERY}", headers=gateway.auth("admin"))
    assert denials.json()["rows"][0]["denials"] == 1
    agent = gateway.client.get(path, headers=gateway.auth("agent-a"))
    assert agent.status_code == 403
    unknown = gateway.client.get("/v1/analytics/secrets", headers=gateway.auth("operator"))
    assert unknown.status_code == 422
    naive = gateway.client.get(
        "/v1/analytics/spend?since=2026-01-05T00:00:00", headers=gateway.auth("operator")
    )
    assert naive.status_code == 422


def test_cli_analytics_prints_table_json_and_csv(gateway: Gateway) -> None:
    _decide(gateway)
    base = ["analytics", "spend", "--database", str(gateway.database), "--by", "agent"]
    base += ["--since", "2026-01-05T00:00:00Z", "--until", "2026-01-06T00:00:00+00:00"]
    runner = CliRunner()
    table = runner.invoke(cli, base)
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split()[:3] == ["key", "currency", "decisions"]
    assert lines[1].split()[:7] == ["agent-a", "USD", "3", "1", "1", "1", "50.00"]
    as_json = json.loads(runner.invoke(cli, [*base, "--format", "json"]).output)
    assert [row["key"] for row in as_json["rows"]] == ["agent-a", "agent-b"]
    rows = list(csv.DictReader(io.StringIO(runner.invoke(cli, [*base, "--format", "csv"]).output)))
    assert rows[1]["allowed_amount"] == "30.00" and rows[1]["captured_minor"] == "0"
    naive = runner.invoke(cli, [*base[:4], "--since", "2026-01-05"])
    assert naive.exit_code == 2 and "zone" in naive.output


def test_a_ledger_from_before_the_facts_migrates_with_none(tmp_path: Path) -> None:
    """A version-8 ledger gains `decision_facts` when opened: its old decisions have no fact
    row (their audit entries keep them), the decisions after the upgrade do."""
    path = tmp_path / "v8.db"
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
        " applied_us INTEGER NOT NULL) STRICT"
    )
    for version, sql in MIGRATIONS:
        if version <= 8:
            for statement in statements(sql):
                connection.execute(statement)
            connection.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, 0))
    connection.execute("INSERT INTO decisions VALUES ('dec_old', 1)")
    connection.close()
    with Warden.open(POLICY, database=path, clock=FrozenClock(DAY)) as warden:
        assert warden.analytics("spend", since=SINCE, until=UNTIL).spend == ()
        warden.authorize(example_intent("50.00"))
        (line,) = warden.analytics("spend", since=SINCE, until=UNTIL).spend
        assert (line.key, line.decisions, line.allowed_amount) == ("agent-a", 1, "50.00")


def test_csv_cells_an_agent_chose_cannot_be_spreadsheet_formulas(gateway: Gateway) -> None:
    # `=1+2`, `+1-2` and `-cmd` are valid `id` payees: an agent may pay them and so name rows
    for number, recipient in enumerate(("=1+2", "+1-2", "-cmd")):
        asked = example_intent("1.00", recipient=recipient, idempotency_key=f"csv-{number}")
        gateway.warden.authorize(asked)
    base = ["analytics", "spend", "--database", str(gateway.database), "--by", "recipient"]
    base += ["--since", "2026-01-05T00:00:00Z", "--until", "2026-01-06T00:00:00Z"]
    output = CliRunner().invoke(cli, [*base, "--format", "csv"]).output
    keys = sorted(row["key"] for row in csv.DictReader(io.StringIO(output)))
    assert keys == ["'+1-2", "'-cmd", "'=1+2"]
    as_json = json.loads(CliRunner().invoke(cli, [*base, "--format", "json"]).output)
    assert sorted(row["key"] for row in as_json["rows"]) == ["+1-2", "-cmd", "=1+2"]  # exact


def test_a_range_at_the_edge_of_the_calendar_is_refused_not_a_crash(gateway: Gateway) -> None:
    edge = datetime.fromisoformat("0001-01-01T00:30:00+01:00")  # no UTC date in year 1
    with pytest.raises(InvalidInputError, match="year 1 to 9999"):
        gateway.warden.analytics("spend", since=edge, until=DAY)
    with pytest.raises(InvalidInputError, match="year 1 to 9999"):
        gateway.warden.analytics("spend", until=datetime(1, 1, 2, tzinfo=UTC))
    answer = gateway.client.get(
        "/v1/analytics/spend?since=0001-01-01T00:30:00%2B01:00", headers=gateway.auth("operator")
    )
    assert answer.status_code == 422, answer.text
