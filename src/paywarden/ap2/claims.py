"""Verified AP2 payloads to paywarden's exact values (`paywarden.mandates`).

Field names, `vct` values and constraint shapes are those of the AP2 v0.2 JSON schemas
(`OpenPaymentMandate`, `PaymentMandate` in google-agentic-commerce/AP2). Amounts in AP2 are
integers of minor units, except `payment.budget.max`, a number of major units: it is converted
with the currency's exponent from its shortest decimal text (so `12.5` USD is 1250, `1000` JPY
is 1000 and `0.5` USDC is 500000), and refused when it has more decimals than the currency has
or more significant digits than a JSON number keeps exactly (15). Never `float * 100`.

An unknown constraint type is refused (`mandate_invalid`): a constraint paywarden cannot
enforce must not be silently ignored. Pre-set claims of an open mandate (`payee`,
`payment_amount`, `payment_instrument`, `execution_date`) become constraints of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from paywarden.ap2.chain import invalid
from paywarden.errors import InvalidInputError
from paywarden.mandates import (
    CLOSED_PAYMENT_VCT,
    OPEN_PAYMENT_VCT,
    Constraints,
    Party,
    Pisp,
)
from paywarden.money import CurrencyTable, Money, parse_amount_minor

FREQUENCIES = frozenset(
    {"ON_DEMAND", "DAILY", "WEEKLY", "BIWEEKLY", "MONTHLY", "QUARTERLY", "ANNUALLY"}
)
_EXACT_DIGITS = 15


class Reader:
    """Reads AP2 payloads with one currency table; every problem raises `ChainError`."""

    def __init__(self, currencies: CurrencyTable) -> None:
        self.currencies = currencies

    def open_constraints(self, payload: Mapping[str, Any]) -> tuple[Constraints, Constraints]:
        """(the open mandate's constraints, its pre-set claims as constraints)."""
        if payload.get("vct") != OPEN_PAYMENT_VCT:
            raise invalid(f"a delegating hop must be `{OPEN_PAYMENT_VCT}`, not {_vct(payload)}")
        items = payload.get("constraints")
        if not isinstance(items, list):
            raise invalid("the open mandate has no `constraints` list")
        fields: dict[str, Any] = {}
        seen: set[str] = set()
        for item in items:
            kind = item.get("type") if isinstance(item, dict) else None
            if not isinstance(kind, str) or kind in seen:
                raise invalid("each constraint must be an object of a `type` not seen before")
            seen.add(kind)
            fields.update(self._constraint(kind, item))
        return Constraints(**fields), self._presets(payload)

    def _constraint(self, kind: object, item: Mapping[str, Any]) -> dict[str, Any]:
        if kind == "payment.amount_range":
            currency = self.currency(item.get("currency"))
            low = None if item.get("min") is None else _minor(item.get("min"), "amount_range.min")
            high = _minor(item.get("max"), "amount_range.max")
            return {"range_currency": currency, "amount_min": low, "amount_max": high}
        if kind == "payment.allowed_payees":
            return {"allowed_payees": tuple(_party(p) for p in _list(item, "allowed"))}
        if kind == "payment.allowed_payment_instruments":
            ids = tuple(_text(i, "id") for i in _list(item, "allowed"))
            return {"allowed_instruments": ids}
        if kind == "payment.allowed_pisps":
            return {"allowed_pisps": tuple(_pisp(p) for p in _list(item, "allowed"))}
        if kind == "payment.budget":
            currency = self.currency(item.get("currency"))
            return {
                "budget_currency": currency,
                "budget_max": self.major(item.get("max"), currency),
            }
        if kind == "payment.agent_recurrence":
            return _recurrence(item)
        if kind == "payment.execution_date":
            start, end = item.get("not_before"), item.get("not_after")
            return {
                "not_before": None if start is None else _date(start, "not_before"),
                "not_after": None if end is None else _date(end, "not_after"),
            }
        if kind == "payment.reference":
            return {"reference": _text(item, "conditional_transaction_id")}
        raise invalid(f"unknown constraint type {str(kind)[:64]!r}: paywarden cannot enforce it")

    def _presets(self, payload: Mapping[str, Any]) -> Constraints:
        fields: dict[str, Any] = {}
        if payload.get("payee") is not None:
            fields["allowed_payees"] = (_party(payload["payee"]),)
        if payload.get("payment_amount") is not None:
            preset = self.amount(payload["payment_amount"])
            fields.update(
                range_currency=preset.currency,
                amount_min=preset.amount_minor,
                amount_max=preset.amount_minor,
            )
        if payload.get("payment_instrument") is not None:
            fields["allowed_instruments"] = (_text(payload["payment_instrument"], "id"),)
        if payload.get("execution_date") is not None:
            day = _date(payload["execution_date"], "execution_date")
            fields.update(not_before=day, not_after=day)
        return Constraints(**fields)

    def currency(self, code: object) -> str:
        try:
            return self.currencies.normalize(code)
        except InvalidInputError as error:
            raise invalid(f"mandate currency: {error}") from None

    def amount(self, value: object) -> Money:
        """An AP2 `Amount`: `{amount: integer minor units, currency}`."""
        if not isinstance(value, dict):
            raise invalid("`payment_amount` is not an object")
        currency = self.currency(value.get("currency"))
        minor = _minor(value.get("amount"), "payment_amount.amount")
        if minor == 0:
            raise invalid("`payment_amount.amount` is zero")
        return Money(minor, currency, self.currencies.exponent(currency))

    def major(self, value: object, currency: str) -> int:
        """A number of major units (`payment.budget.max`) to exact minor units."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise invalid("`payment.budget.max` is not a number")
        text = repr(value) if isinstance(value, float) else str(value)
        number = Decimal(text).normalize()  # pydantic writes 12000 as 12000.0
        if not number.is_finite() or len(number.as_tuple().digits) > _EXACT_DIGITS:
            raise invalid(f"`payment.budget.max` {text} cannot be read exactly")
        try:
            return parse_amount_minor(number, currency, self.currencies.exponent(currency))
        except InvalidInputError as error:
            raise invalid(f"`payment.budget.max`: {error}") from None

    def closed(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The closed mandate's fields of `paywarden.mandates.Mandate`."""
        if payload.get("vct") != CLOSED_PAYMENT_VCT:
            raise invalid(f"the terminal hop must be `{CLOSED_PAYMENT_VCT}`, not {_vct(payload)}")
        execution = payload.get("execution_date")
        pisp = payload.get("pisp")
        return {
            "transaction_id": _text(payload, "transaction_id"),
            "payee": _party(payload.get("payee")),
            "amount": self.amount(payload.get("payment_amount")),
            "instrument_id": _text(payload.get("payment_instrument"), "id"),
            "pisp": None if pisp is None else _pisp(pisp),
            "execution_date": None if execution is None else _date(execution, "execution_date"),
        }


def _vct(payload: Mapping[str, Any]) -> str:
    return repr(str(payload.get("vct"))[:64])


def _minor(value: object, name: str) -> int:
    if type(value) is not int or value < 0:
        raise invalid(f"`{name}` must be a non-negative integer of minor units")
    return value


def _text(value: object, name: str) -> str:
    text = value.get(name) if isinstance(value, dict) else None
    if not isinstance(text, str) or not text or len(text) > 512:
        raise invalid(f"`{name}` is missing or not a short string")
    return text


def _list(item: Mapping[str, Any], name: str) -> list[Any]:
    value = item.get(name)
    if not isinstance(value, list) or not value:
        raise invalid(f"`{item.get('type')}.{name}` must be a non-empty list")
    return value


def _party(value: object) -> Party:
    if not isinstance(value, dict):
        raise invalid("a payee or merchant is not an object")
    website = value.get("website")
    if website is not None and not isinstance(website, str):
        raise invalid("a payee's `website` is not a string")
    return Party(_text(value, "id"), _text(value, "name"), website)


def _pisp(value: object) -> Pisp:
    return Pisp(_text(value, "legal_name"), _text(value, "brand_name"), _text(value, "domain_name"))


def _recurrence(item: Mapping[str, Any]) -> dict[str, Any]:
    frequency = item.get("frequency")
    if frequency not in FREQUENCIES:
        raise invalid(f"`payment.agent_recurrence.frequency` {str(frequency)[:32]!r} is unknown")
    occurrences = item.get("max_occurrences")
    if occurrences is not None and (type(occurrences) is not int or occurrences < 1):
        raise invalid("`payment.agent_recurrence.max_occurrences` must be a positive integer")
    return {"frequency": frequency, "max_occurrences": occurrences}


def _date(value: object, name: str) -> date:
    """An ISO 8601 date, or a date-time (its UTC date)."""
    if not isinstance(value, str) or len(value) > 64:
        raise invalid(f"`{name}` is not an ISO 8601 date")
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise invalid(f"`{name}` {value!r} is not an ISO 8601 date") from None
    if moment.tzinfo is None:
        raise invalid(f"`{name}` {value!r} has no time zone")
    return moment.astimezone(UTC).date()
