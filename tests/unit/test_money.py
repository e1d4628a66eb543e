"""Money is exact: every bad amount or currency class is rejected with a message naming it."""

from __future__ import annotations

import decimal
from decimal import Decimal

import pytest

from paywarden import limits
from paywarden.errors import InvalidAmountError, InvalidCurrencyError, InvalidInputError
from paywarden.money import (
    DEFAULT_TOKEN_EXPONENTS,
    ISO_4217_EXPONENTS,
    CurrencyTable,
    Money,
    format_minor,
)

# --- accepted amounts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "currency", "minor", "exponent"),
    [
        ("12.50", "USD", 1250, 2),
        ("12.5", "USD", 1250, 2),
        ("12", "USD", 1200, 2),
        ("0.01", "USD", 1, 2),
        ("00012", "USD", 1200, 2),
        (12, "USD", 1200, 2),
        (Decimal("12.50"), "USD", 1250, 2),
        (Decimal("1E+2"), "USD", 10000, 2),
        ("1500", "JPY", 1500, 0),
        ("1.234", "KWD", 1234, 3),
        ("0.000001", "USDC", 1, 6),
        ("1.5", "usdc", 1500000, 6),
        ("0.0001", "CLF", 1, 4),
        ("10000000000000.00", "USD", limits.amount_minor_max, 2),
    ],
)
def test_parses_edge_values_into_exact_minor_units(
    value: object, currency: str, minor: int, exponent: int
) -> None:
    money = Money.parse(value, currency)
    assert (money.amount_minor, money.exponent) == (minor, exponent)
    assert money.currency == currency.upper()
    assert type(money.amount_minor) is int


def test_ten_dimes_make_exactly_one_dollar() -> None:
    total = sum(Money.parse("0.10", "USD").amount_minor for _ in range(10))
    assert total == Money.parse("1.00", "USD").amount_minor == 100


def test_str_and_to_decimal_show_the_currency_exponent() -> None:
    assert str(Money.parse("5", "USD")) == "5.00 USD"
    assert str(Money.parse("5", "JPY")) == "5 JPY"
    assert str(Money.parse("0.5", "USDC")) == "0.500000 USDC"
    assert Money.parse("12.34", "USD").to_decimal() == Decimal("12.34")


def test_zero_is_accepted_only_when_asked_for() -> None:
    assert Money.parse("0", "USD", allow_zero=True).amount_minor == 0
    with pytest.raises(InvalidAmountError, match="greater than zero"):
        Money.parse("0", "USD")


def test_parsing_ignores_the_global_decimal_context() -> None:
    with decimal.localcontext() as ctx:
        ctx.prec = 3
        ctx.rounding = decimal.ROUND_DOWN
        money = Money.parse(Decimal("123456.78"), "USD")
        assert money.amount_minor == 12345678
        assert Money.parse("123456.78", "USD").amount_minor == 12345678


# --- rejected amounts -----------------------------------------------------------------------

NOT_PLAIN = "not a plain decimal number"


@pytest.mark.parametrize(
    ("value", "currency", "message"),
    [
        # too many decimals for the currency (IN-04): never rounded
        ("10.001", "USD", "more decimal places than USD allows"),
        ("1.5", "JPY", "more decimal places than JPY allows"),
        ("0.0001", "KWD", "more decimal places than KWD allows"),
        ("0.0000001", "USDC", "more decimal places than USDC allows"),
        (Decimal("10.001"), "USD", "more decimal places than USD allows"),
        (Decimal("1E-1000000"), "USD", "more decimal places"),
        # zero and negatives (IN-02)
        ("0", "USD", "greater than zero"),
        ("0.00", "USD", "greater than zero"),
        (0, "USD", "greater than zero"),
        ("-0", "USD", "must not be negative"),
        ("-0.01", "USD", "must not be negative"),
        (-5, "USD", "must not be negative"),
        (Decimal("-0"), "USD", "must not be negative"),
        (Decimal("-0.01"), "USD", "must not be negative"),
        # non-finite numbers (IN-01)
        (Decimal("NaN"), "USD", "not a finite number"),
        (Decimal("sNaN"), "USD", "not a finite number"),
        (Decimal("Infinity"), "USD", "not a finite number"),
        (Decimal("-Infinity"), "USD", "not a finite number"),
        ("NaN", "USD", NOT_PLAIN),
        ("Infinity", "USD", NOT_PLAIN),
        # floats, booleans and other types
        (0.1, "USD", "is a float"),
        (12.5, "USD", "is a float"),
        (float("nan"), "USD", "is a float"),
        (float("inf"), "USD", "is a float"),
        (True, "USD", "boolean"),
        (False, "USD", "boolean"),
        (None, "USD", "not NoneType"),
        ([], "USD", "not list"),
        ({}, "USD", "not dict"),
        (b"12", "USD", "not bytes"),
        # junk text: one grammar only (ASCII digits, at most one dot)
        ("", "USD", NOT_PLAIN),
        (" 12 ", "USD", NOT_PLAIN),
        ("12\n", "USD", NOT_PLAIN),
        ("1_000", "USD", NOT_PLAIN),
        ("1,000", "USD", NOT_PLAIN),
        ("１２３", "USD", NOT_PLAIN),
        ("١٢٣", "USD", NOT_PLAIN),
        ("1e3", "USD", NOT_PLAIN),
        ("+5", "USD", NOT_PLAIN),
        ("0x10", "USD", NOT_PLAIN),
        ("10.", "USD", NOT_PLAIN),
        (".5", "USD", NOT_PLAIN),
        ("1.2.3", "USD", NOT_PLAIN),
        ("$12", "USD", NOT_PLAIN),
        ("12 USD", "USD", NOT_PLAIN),
        # huge values (IN-03)
        ("10000000000000.01", "USD", "above the hard maximum"),
        (10**20, "USD", "above the hard maximum"),
        (Decimal("1E+30"), "USD", "above the hard maximum"),
        (Decimal("1E+1000000"), "USD", "too many digits"),
        ("9" * 39, "USD", "above the hard maximum"),
        ("9" * 41, "USD", "longer than 40"),
        ("123456789012345678901234567890.5", "USD", "above the hard maximum"),
    ],
    ids=repr,
)
def test_rejects_invalid_amount_naming_the_problem(
    value: object, currency: str, message: str
) -> None:
    with pytest.raises(InvalidAmountError, match=message) as caught:
        Money.parse(value, currency)
    assert caught.value.code == "invalid_amount"
    assert isinstance(caught.value, InvalidInputError)
    assert isinstance(caught.value, ValueError)


def test_rejects_amount_above_a_configured_maximum_naming_both() -> None:
    assert Money.parse("100.00", "USD", amount_minor_max=10000).amount_minor == 10000
    with pytest.raises(InvalidAmountError, match=r"`100\.01` USD is above the maximum of 100\.00"):
        Money.parse("100.01", "USD", amount_minor_max=10000)


def test_money_cannot_be_built_from_a_float_or_out_of_range_minor_units() -> None:
    with pytest.raises(InvalidAmountError, match="must be an int"):
        Money(12.5, "USD", 2)  # type: ignore[arg-type]
    with pytest.raises(InvalidAmountError, match="must be an int"):
        Money(True, "USD", 2)
    with pytest.raises(InvalidAmountError, match="outside"):
        Money(-1, "USD", 2)
    with pytest.raises(InvalidAmountError, match="outside"):
        Money(limits.amount_minor_max + 1, "USD", 2)


# --- currencies -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("XTS", "unknown currency `XTS`"),
        ("XXX", "unknown currency `XXX`"),
        ("XAU", "unknown currency `XAU`"),
        ("XAG", "unknown currency `XAG`"),
        ("XDR", "unknown currency `XDR`"),
        ("ABC", "unknown currency `ABC`"),
        ("US D", "unknown currency `US D`"),
        ("USD ", "unknown currency"),
        ("", "unknown currency"),
        ("UЅD", "non-ASCII"),  # Cyrillic DZE
        ("ＵＳＤ", "non-ASCII"),  # full-width letters
        ("ЕUR", "non-ASCII"),  # Cyrillic IE
    ],
    ids=repr,
)
def test_rejects_unknown_test_metal_and_lookalike_currencies(code: str, message: str) -> None:
    with pytest.raises(InvalidCurrencyError, match=message) as caught:
        Money.parse("1.00", code)
    assert caught.value.code == "invalid_currency"


@pytest.mark.parametrize("code", [None, 840, b"USD"], ids=repr)
def test_rejects_a_currency_that_is_not_text(code: object) -> None:
    with pytest.raises(InvalidCurrencyError, match="must be a string"):
        Money.parse("1.00", code)


def test_accepts_known_codes_in_any_ascii_case() -> None:
    assert Money.parse("1", "usd").currency == "USD"
    assert Money.parse("1", "Eur").currency == "EUR"
    assert Money.parse("1", "usdc").currency == "USDC"


def test_currency_table_knows_iso_exponents_and_stablecoin_tokens() -> None:
    table = CurrencyTable()
    assert table.exponent("USD") == 2
    assert table.exponent("JPY") == 0
    assert table.exponent("KWD") == 3
    assert table.exponent("CLF") == 4
    assert table.exponent("USDC") == 6
    assert "XTS" not in table
    assert "XAU" not in table
    assert len(ISO_4217_EXPONENTS) > 150


def test_configured_tokens_extend_the_table_and_are_validated() -> None:
    table = CurrencyTable(tokens={"MYT": 4})
    assert Money.parse("0.0001", "MYT", currencies=table).amount_minor == 1
    with pytest.raises(InvalidCurrencyError):
        Money.parse("1", "MYT")  # the default table does not know it
    with pytest.raises(InvalidCurrencyError, match="3 to 10 ASCII capitals"):
        CurrencyTable(tokens={"my-token": 4})
    with pytest.raises(InvalidCurrencyError, match="exponent must be an integer"):
        CurrencyTable(tokens={"MYT": 19})
    with pytest.raises(InvalidCurrencyError, match="exponent must be an integer"):
        CurrencyTable(tokens={"MYT": True})


# --- format_minor ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minor", "exponent", "text"),
    [
        (0, 2, "0.00"),
        (1, 2, "0.01"),
        (1250, 2, "12.50"),
        (5, 0, "5"),
        (1, 6, "0.000001"),
        (1234, 3, "1.234"),
        (-150, 2, "-1.50"),
    ],
)
def test_formats_minor_units_with_exactly_the_exponent_decimals(
    minor: int, exponent: int, text: str
) -> None:
    assert format_minor(minor, exponent) == text


@pytest.mark.parametrize("code", sorted({**ISO_4217_EXPONENTS, **DEFAULT_TOKEN_EXPONENTS}))
def test_every_known_currency_round_trips_its_smallest_and_largest_amount(code: str) -> None:
    exponent = CurrencyTable().exponent(code)
    for minor in (1, 10**exponent, limits.amount_minor_max):
        assert Money.parse(format_minor(minor, exponent), code).amount_minor == minor
