"""`paywarden reconcile` and `paywarden payments list|show`: payments made on rails.

`reconcile` asks each payment's rail, with the payment's original idempotency key, what
happened to every payment still `submitted` or `unknown`, and settles each at most once: a
settled payment captures its hold, a definite failure voids it, an open one keeps it. Rails
that need configuration read it from the environment (the sandbox: `PAYWARDEN_SANDBOX_STATE`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import get_args

import click

from paywarden import limits
from paywarden.adapters.storage.postgres_audit import database_missing
from paywarden.errors import NotFoundError, PaywardenError, StateConflictError
from paywarden.money import DEFAULT_CURRENCIES, format_minor
from paywarden.ports import PaymentRow, PaymentState
from paywarden.warden import Warden

EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
OPEN_STATES = ("submitted", "unknown")
LIST_LIMIT_MAX = 1000


def _database_option(function: Callable[..., None]) -> Callable[..., None]:
    return click.option(
        "--database",
        default="paywarden.db",
        show_default=True,
        type=click.Path(dir_okay=False),
        help="SQLite ledger file, or a PostgreSQL URL (postgresql://...).",
    )(function)


def _json_option(function: Callable[..., None]) -> Callable[..., None]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(function)


@contextmanager
def _ledger(database: str) -> Iterator[Warden]:
    """The ledger, opened without a policy; an unknown id exits 1, other errors exit 2."""
    if database_missing(database):
        click.echo(f"error: no ledger at `{database}`", err=True)
        sys.exit(EXIT_USAGE)
    try:
        with Warden.open(None, database=database) as warden:
            yield warden
    except NotFoundError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_NOT_FOUND)
    except PaywardenError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_USAGE)


def _time(us: int) -> str:
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _money(amount_minor: int, currency: str) -> str:
    if currency not in DEFAULT_CURRENCIES:  # a token declared only in a policy
        return f"{amount_minor} minor {currency}"
    return f"{format_minor(amount_minor, DEFAULT_CURRENCIES.exponent(currency))} {currency}"


def _amount(row: PaymentRow) -> str:
    return _money(row.amount_minor, row.currency)


def payment_dict(row: PaymentRow) -> dict[str, object]:
    """A payment as JSON: every stored field, the intent as an object, amounts in minor units."""
    data = dataclasses.asdict(row)
    data["intent"] = json.loads(row.intent)
    return data


def _line(row: PaymentRow) -> str:
    return (
        f"{row.payment_id}  {row.state:<9} {_amount(row):>14}  {row.agent}  {row.rail}"
        f"  {_time(row.created_us)}"
    )


def _open_states(warden: Warden) -> dict[str, str]:
    return {
        row.payment_id: row.state
        for state in OPEN_STATES
        for row in warden.payments(state=state, limit=LIST_LIMIT_MAX)
    }


@click.command()
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=limits.reconcile_batch_max,
    show_default=True,
    help="Look at most at this many open payments, oldest first.",
)
@_json_option
@_database_option
def reconcile(limit: int, as_json: bool, database: str) -> None:
    """Ask the rails about every submitted or unknown payment; settle what they answer."""
    with _ledger(database) as warden:
        before = _open_states(warden)
        changed = warden.reconcile(limit)
        still_open = len(_open_states(warden))
    if as_json:
        changes = [
            {**payment_dict(row), "previous_state": before.get(row.payment_id)} for row in changed
        ]
        click.echo(json.dumps({"changed": changes, "still_open": still_open}, indent=2))
        return
    for row in changed:
        previous = before.get(row.payment_id, "open")
        detail = row.error or row.rail_payment_id or "-"
        click.echo(
            f"{row.payment_id}  {previous} -> {row.state}  {_amount(row)}  {row.agent}"
            f"  {row.rail}  {detail}"
        )
    click.echo(f"{len(changed)} changed, {still_open} still open")


@click.group()
def payments() -> None:
    """Payments made on rails: list, show, resolve."""


@payments.command("list")
@click.option("--agent", default=None, help="Only this agent's payments.")
@click.option(
    "--state",
    default=None,
    type=click.Choice(get_args(PaymentState)),
    help="Only payments in this state.",
)
@click.option(
    "--limit",
    type=click.IntRange(1, LIST_LIMIT_MAX),
    default=100,
    show_default=True,
    help="At most this many payments.",
)
@_json_option
@_database_option
def payments_list(
    agent: str | None, state: str | None, limit: int, as_json: bool, database: str
) -> None:
    """List payments, newest first."""
    with _ledger(database) as warden:
        rows = warden.payments(agent=agent, state=state, limit=limit)
    if as_json:
        click.echo(json.dumps([payment_dict(row) for row in rows], indent=2))
        return
    for row in rows:
        click.echo(_line(row))
    if not rows:
        click.echo("(no payments)")


@payments.command("show")
@click.argument("payment_id")
@_json_option
@_database_option
def payments_show(payment_id: str, as_json: bool, database: str) -> None:
    """Show one payment: its state, rail, key, amounts and intent."""
    with _ledger(database) as warden:
        row = warden.payment(payment_id)
    if as_json:
        click.echo(json.dumps(payment_dict(row), indent=2))
        return
    fields = (
        ("payment", row.payment_id),
        ("state", row.state),
        ("amount", _amount(row)),
        ("refunded", _money(row.refunded_minor, row.currency)),
        ("agent", row.agent),
        ("rail", row.rail),
        ("rail_key", row.rail_key),
        ("rail_id", row.rail_payment_id or "-"),
        ("decision", row.decision_id),
        ("hold", row.hold_id),
        ("error", row.error or "-"),
        ("created", _time(row.created_us)),
        ("updated", _time(row.updated_us)),
    )
    for name, value in fields:
        click.echo(f"{name + ':':<10} {value}")


@payments.command("resolve")
@click.argument("payment_id")
@click.option(
    "--state",
    required=True,
    type=click.Choice(["settled", "failed"]),
    help="What you found the payment's outcome to be.",
)
@click.option("--actor", required=True, help="Who resolves it (recorded in the audit log).")
@click.option("--reason", required=True, help="Why, such as what the rail or chain shows.")
@click.option("--rail-id", default=None, help="The rail's (or the chain's) id of the payment.")
@_database_option
def payments_resolve(
    payment_id: str, state: str, actor: str, reason: str, rail_id: str | None, database: str
) -> None:
    """Settle or fail, by hand, a payment whose outcome the rail cannot tell.

    Only an `unknown` or `submitted` payment: `settled` captures its hold, `failed` releases it.
    Audited as `payment.resolved`. Exit status: 0 resolved, 1 no such payment or it is in
    another state, 2 no such ledger.
    """
    with _ledger(database) as warden:
        try:
            row = warden.resolve_payment(
                payment_id, state=state, actor=actor, reason=reason, rail_payment_id=rail_id
            )
        except StateConflictError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(1)
    click.echo(f"{row.payment_id}: {row.state} ({_amount(row)}, hold {row.hold_id})")
