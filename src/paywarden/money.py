"""Exact money: integer minor units plus the currency's exponent.

Below the edge every amount is a `Money(amount_minor, currency, exponent)`. `Decimal` appears only
while parsing; `float` never does. The parser accepts exactly one grammar for text (ASCII digits
with at most one dot), a `Decimal` that is finite, or an `int` of major units, and rejects
everything else with a message naming the problem: NaN, infinities, negatives, zero, more decimal
places than the currency has, junk such as `"1_000"`, `" 12 "`, full-width digits, booleans and
exponents, unknown currencies, and amounts above the configured maximum.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from paywarden import limits
from paywarden.errors import InvalidAmountError, InvalidCurrencyError

# ISO 4217 active codes by exponent. Codes not listed have exponent 2. Test, metal, fund and
# "no currency" codes (XTS, XXX, XAU, XAG, XPD, XPT, XDR, XBA..XBD, XSU, XUA) are left out on
# purpose: a payment in them is always a mistake.
_ISO_4217_EXPONENT_2 = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP "
    "BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR "
    "FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW "
    "KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN "
    "NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD "
    "SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU "
    "UZS VED VES WST XCD XCG YER ZAR ZMW ZWG ZWL"
)
_ISO_4217_EXPONENT_0 = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_ISO_4217_EXPONENT_3 = "BHD IQD JOD KWD LYD OMR TND"
_ISO_4217_EXPONENT_4 = "CLF UYW"

# Stablecoins as their token contracts define them (USDC: "WITH 6 Decimals").
DEFAULT_TOKEN_EXPONENTS: Mapping[str, int] = {"USDC": 6, "USDT": 6, "EURC": 6, "PYUSD": 6}


def _iso_table() -> dict[str, int]:
    table: dict[str, int] = {}
    for codes, exponent in (
        (_ISO_4217_EXPONENT_2, 2),
        (_ISO_4217_EXPONENT_0, 0),
        (_ISO_4217_EXPONENT_3, 3),
        (_ISO_4217_EXPONENT_4, 4),
    ):
        table.update(dict.fromkeys(codes.split(), exponent))
    return table


ISO_4217_EXPONENTS: Mapping[str, int] = _iso_table()

_CURRENCY_CODE = re.compile(r"\A[A-Z][A-Z0-9]{2,9}\Z", re.ASCII)
_AMOUNT_TEXT = re.compile(r"\A([0-9]+)(?:\.([0-9]+))?\Z", re.ASCII)


class CurrencyTable:
    """Known currencies and their exponents: ISO 4217 plus configured tokens.

    A code missing from the table is an error, never "2 by default".
    """

    __slots__ = ("_exponents",)

    def __init__(self, tokens: Mapping[str, int] | None = None) -> None:
        exponents = dict(ISO_4217_EXPONENTS)
        for code, exponent in {**DEFAULT_TOKEN_EXPONENTS, **(tokens or {})}.items():
            if not _CURRENCY_CODE.match(code):
                raise InvalidCurrencyError(f"token code `{code}` must be 3 to 10 ASCII capitals")
            if type(exponent) is not int or not 0 <= exponent <= limits.currency_exponent_max:
                raise InvalidCurrencyError(
                    f"token `{code}` exponent must be an integer from 0 to "
                    f"{limits.currency_exponent_max}"
                )
            exponents[code] = exponent
        self._exponents = exponents

    def normalize(self, code: object) -> str:
        """Return the canonical code (ASCII upper case) or raise `InvalidCurrencyError`."""
        if not isinstance(code, str):
            raise InvalidCurrencyError(f"currency must be a string, not {type(code).__name__}")
        if not code.isascii():
            raise InvalidCurrencyError(f"currency `{code}` contains non-ASCII characters")
        canonical = code.upper()
        if not _CURRENCY_CODE.match(canonical) or canonical not in self._exponents:
            raise InvalidCurrencyError(f"unknown currency `{code}`")
        return canonical

    def exponent(self, code: str) -> int:
        return self._exponents[self.normalize(code)]

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and code in self._exponents


DEFAULT_CURRENCIES = CurrencyTable()


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount: `amount_minor` units of 10**-exponent `currency`."""

    amount_minor: int
    currency: str
    exponent: int

    def __post_init__(self) -> None:
        if type(self.amount_minor) is not int:
            raise InvalidAmountError("amount_minor must be an int")
        if not 0 <= self.amount_minor <= limits.amount_minor_max:
            raise InvalidAmountError(
                f"amount_minor `{self.amount_minor}` is outside 0..{limits.amount_minor_max}"
            )

    @classmethod
    def parse(
        cls,
        value: object,
        currency: object,
        *,
        currencies: CurrencyTable = DEFAULT_CURRENCIES,
        amount_minor_max: int = limits.amount_minor_max,
        allow_zero: bool = False,
    ) -> Money:
        """Parse an edge value (text, `Decimal` or `int` of major units) into `Money`."""
        code = currencies.normalize(currency)
        exponent = currencies.exponent(code)
        amount_minor = parse_amount_minor(value, code, exponent)
        if amount_minor == 0 and not allow_zero:
            raise InvalidAmountError("amount must be greater than zero")
        if amount_minor > amount_minor_max:
            raise InvalidAmountError(
                f"amount `{format_minor(amount_minor, exponent)}` {code} is above the maximum "
                f"of {format_minor(amount_minor_max, exponent)} {code}"
            )
        return cls(amount_minor, code, exponent)

    def to_decimal(self) -> Decimal:
        """The amount in major units, for display and for adapters that want Decimal."""
        return Decimal(self.amount_minor).scaleb(-self.exponent)

    def __str__(self) -> str:
        return f"{format_minor(self.amount_minor, self.exponent)} {self.currency}"


def format_minor(amount_minor: int, exponent: int) -> str:
    """Render minor units as plain decimal text with exactly `exponent` decimals."""
    sign = "-" if amount_minor < 0 else ""
    digits = str(abs(amount_minor)).rjust(exponent + 1, "0")
    if exponent == 0:
        return sign + digits
    return f"{sign}{digits[:-exponent]}.{digits[-exponent:]}"


def parse_amount_minor(value: object, code: str, exponent: int) -> int:
    """Turn one edge value into minor units, exactly, or raise `InvalidAmountError`."""
    if isinstance(value, bool):
        raise InvalidAmountError(f"amount must be a number, not the boolean `{value}`")
    if isinstance(value, int):
        if value < 0:
            raise InvalidAmountError(f"amount `{value}` must not be negative")
        return _checked_size(value * 10**exponent)
    if isinstance(value, float):
        raise InvalidAmountError(
            f'amount `{value!r}` is a float; pass text such as "12.50" or a Decimal, '
            "because floats cannot represent money exactly"
        )
    if isinstance(value, Decimal):
        return _decimal_to_minor(value, code, exponent)
    if isinstance(value, str):
        return _text_to_minor(value, code, exponent)
    raise InvalidAmountError(
        f"amount must be text, an int or a Decimal, not {type(value).__name__}"
    )


def _text_to_minor(text: str, code: str, exponent: int) -> int:
    if len(text) > limits.amount_text_chars_max:
        raise InvalidAmountError(f"amount text is longer than {limits.amount_text_chars_max} chars")
    if text.startswith("-"):
        raise InvalidAmountError(f"amount `{text}` must not be negative")
    match = _AMOUNT_TEXT.match(text)
    if match is None:
        raise InvalidAmountError(
            f"amount `{text}` is not a plain decimal number (ASCII digits with at most one dot, "
            "no sign, spaces, separators or exponent)"
        )
    whole, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > exponent:
        raise InvalidAmountError(_too_many_decimals(text, code, exponent))
    return _checked_size(int(whole + fraction.ljust(exponent, "0")))


def _decimal_to_minor(value: Decimal, code: str, exponent: int) -> int:
    if not value.is_finite():
        raise InvalidAmountError(f"amount `{value}` is not a finite number")
    sign, digits, power = value.as_tuple()
    if sign:
        raise InvalidAmountError(f"amount `{value}` must not be negative")
    assert isinstance(power, int)  # finite Decimals always have an int exponent
    if len(digits) + max(power, 0) > limits.amount_text_chars_max:
        raise InvalidAmountError(f"amount `{value}` has too many digits")
    coefficient = int("".join(map(str, digits)))
    shift = power + exponent
    if shift < 0:
        raise InvalidAmountError(_too_many_decimals(str(value), code, exponent))
    return _checked_size(coefficient * 10**shift)


def _checked_size(amount_minor: int) -> int:
    if amount_minor > limits.amount_minor_max:
        raise InvalidAmountError(
            f"amount is above the hard maximum of {limits.amount_minor_max} minor units"
        )
    return amount_minor


def _too_many_decimals(text: str, code: str, exponent: int) -> str:
    return f"amount `{text}` has more decimal places than {code} allows ({exponent})"
