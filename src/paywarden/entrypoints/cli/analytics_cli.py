"""`paywarden analytics REPORT`: spend, top recipients, denials or approval turnaround.

Read from the ledger in SQL (`paywarden.actions.analytics`), money exact and per currency, as
an aligned table, JSON or CSV (one header row, then one row per line of the report).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import cast, get_args

import click

from paywarden.actions.analytics import TOP_MAX, Analytics, Report, SpendBy
from paywarden.entrypoints.cli.payments_cli import _database_option, _ledger

FORMATS = ("table", "json", "csv")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@click.command()
@click.argument("report", type=click.Choice(get_args(Report)))
@click.option(
    "--since",
    type=str,
    help="Start (inclusive), ISO 8601 with a zone. Default: 7 days before --until.",
)
@click.option("--until", type=str, help="End (exclusive), ISO 8601 with a zone. Default: now.")
@click.option("--agent", type=str, help="Only this agent's decisions.")
@click.option(
    "--by",
    type=click.Choice(get_args(SpendBy)),
    default="agent",
    show_default=True,
    help="What `spend` groups by.",
)
@click.option(
    "--top",
    type=click.IntRange(1, TOP_MAX),
    default=10,
    show_default=True,
    help="Recipients per currency for `top-recipients`.",
)
@click.option("--format", "output", type=click.Choice(FORMATS), default="table", show_default=True)
@_database_option
def analytics(
    report: str,
    since: str | None,
    until: str | None,
    agent: str | None,
    by: str,
    top: int,
    output: str,
    database: str,
) -> None:
    """Spend, top recipients, denials or approval turnaround over a time range."""
    start, end = _instant("--since", since), _instant("--until", until)
    with _ledger(database) as warden:
        answer = warden.analytics(
            cast(Report, report),
            since=start,
            until=end,
            agent=agent,
            by=cast(SpendBy, by),
            top=top,
        )
    click.echo(render(answer, output), nl=False)


def _instant(option: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"`{text}` is not an ISO 8601 time", param_hint=option) from None
    if instant.tzinfo is None:
        raise click.BadParameter("give a zone, such as `Z` or `+02:00`", param_hint=option)
    return instant


def render(answer: Analytics, output: str) -> str:
    """The report as `table`, `json` or `csv` text, ending with a newline."""
    if output == "json":
        return json.dumps(answer.to_dict(), indent=2) + "\n"
    rows = answer.records()
    columns = _columns(answer)
    if output == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_csv_cell(row.get(name)) for name in columns] for row in rows)
        return buffer.getvalue()
    if not rows:
        return "(no decisions in the range)\n"
    cells = [columns, *([_cell(row.get(name)) for name in columns] for row in rows)]
    widths = [max(len(line[index]) for line in cells) for index in range(len(columns))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        + "\n"
        for line in cells
    )


def _columns(answer: Analytics) -> list[str]:
    if answer.report == "denials":
        return ["reason_code", "denials"]
    if answer.report == "turnaround":
        return ["requested", "approved", "rejected", "expired", "open", "median_seconds",
                "p90_seconds"]  # fmt: skip
    return ["key", "currency", "decisions", "allowed", "denied", "pending", "allowed_amount",
            "captured_amount", "allowed_minor", "captured_minor"]  # fmt: skip


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def _csv_cell(value: object) -> str:
    """A CSV cell a spreadsheet will not run: text an agent chose (an agent id, a recipient, a
    category) that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is prefixed with
    `'` (OWASP's advice on CSV injection). Numbers are written as they are."""
    text = _cell(value)
    if isinstance(value, str) and text.startswith(_FORMULA_STARTS):
        return "'" + text
    return text
