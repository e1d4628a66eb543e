"""A PaymentIntent is validated and normalised before any rule sees it; bad fields are named."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from paywarden.errors import InvalidAmountError, InvalidCurrencyError, InvalidIntentError
from paywarden.money import Money
from support.intents import TREASURY_TRANSFER, intent_builder

_intent = intent_builder("120.50", **TREASURY_TRANSFER)


def test_builds_an_intent_with_exact_money_and_normalised_fields() -> None:
    intent = _intent(
        action="Payments.Transfer",
        environment="Production",
        category="SaaS",
        rail="Stripe",
        recipient="Vendor.Example.COM.",
    )
    assert intent.amount == Money(12050, "USD", 2)
    assert (intent.amount_minor, intent.currency) == (12050, "USD")
    assert intent.action == "payments.transfer"
    assert (intent.environment, intent.category, intent.rail) == ("production", "saas", "stripe")
    assert intent.recipient == "vendor.example.com"
    assert intent.recipient_original == "Vendor.Example.COM."


def test_intent_is_immutable() -> None:
    intent = _intent()
    with pytest.raises(AttributeError, match="immutable"):
        intent.amount = Money(1, "USD", 2)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("amount", "currency", "error", "message"),
    [
        ("1.5", "JPY", InvalidAmountError, "more decimal places than JPY"),
        ("0.0001", "KWD", InvalidAmountError, "more decimal places than KWD"),
        ("0.0000001", "USDC", InvalidAmountError, "more decimal places than USDC"),
        ("-0", "USD", InvalidAmountError, "must not be negative"),
        ("0", "USD", InvalidAmountError, "greater than zero"),
        (0, "USD", InvalidAmountError, "greater than zero"),
        (Decimal("NaN"), "USD", InvalidAmountError, "not a finite number"),
        (Decimal("Infinity"), "USD", InvalidAmountError, "not a finite number"),
        (0.1, "USD", InvalidAmountError, "is a float"),
        (True, "USD", InvalidAmountError, "boolean"),
        ("", "USD", InvalidAmountError, "not a plain decimal number"),
        ("１２３", "USD", InvalidAmountError, "not a plain decimal number"),
        ("١٢٣", "USD", InvalidAmountError, "not a plain decimal number"),
        ("1e3", "USD", InvalidAmountError, "not a plain decimal number"),
        (10**30, "USD", InvalidAmountError, "above the hard maximum"),
        ("10.00", "XTS", InvalidCurrencyError, "unknown currency `XTS`"),
        ("10.00", "XXX", InvalidCurrencyError, "unknown currency `XXX`"),
        ("10.00", "XAU", InvalidCurrencyError, "unknown currency `XAU`"),
        ("10.00", "UЅD", InvalidCurrencyError, "non-ASCII"),
        ("10.00", None, InvalidIntentError, "currency is required"),
    ],
    ids=repr,
)
def test_rejects_intent_with_invalid_money(
    amount: object, currency: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        _intent(amount=amount, currency=currency)


def test_accepts_money_whose_currency_agrees_and_rejects_one_that_disagrees() -> None:
    money = Money.parse("5.00", "EUR")
    assert _intent(amount=money, currency=None).amount == money
    assert _intent(amount=money, currency="eur").amount == money
    with pytest.raises(InvalidIntentError, match="currency disagrees"):
        _intent(amount=money, currency="USD")
    with pytest.raises(InvalidIntentError, match="greater than zero"):
        _intent(amount=Money(0, "EUR", 2), currency=None)


def test_rejects_money_above_a_per_call_maximum() -> None:
    with pytest.raises(InvalidAmountError, match="above the maximum of 100.00 USD"):
        _intent(amount="100.01", amount_minor_max=10000)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("agent", "", "agent `` must be ASCII"),
        ("agent", "treasury agent", "agent `treasury agent` must be ASCII"),
        ("agent", "-agent", "starting with a letter or digit"),
        ("agent", "agént", "must be ASCII"),
        ("agent", "a" * 129, "agent is longer than 128"),
        ("agent", 42, "agent must be a string, not int"),
        ("action", "payments transfer", "dot-separated lowercase names"),
        ("action", "payments..transfer", "dot-separated lowercase names"),
        ("action", "payments.*", "dot-separated lowercase names"),
        ("action", "", "dot-separated lowercase names"),
        ("environment", "prod env", "environment `prod env` must be ASCII"),
        ("category", "saas\u200b", "must be ASCII"),
        ("session_id", "s 1", "session_id `s 1` must be ASCII"),
        ("recipient", "", "recipient must not be empty"),
        ("recipient", "   ", "recipient must not be empty"),
        ("recipient", None, "recipient must be a string"),
        ("recipient", "x" * 513, "recipient is longer than 512"),
        ("recipient", "paypal.com\u200b", "invisible or control character U\\+200B"),
        ("recipient", "\u202epaypal.com", "invisible or control character U\\+202E"),
        ("recipient", "pay\u00adpal.com", "invisible or control character U\\+00AD"),
        ("recipient", "paypal.com\x00", "invisible or control character U\\+0000"),
        ("recipient", "x..com", "`x..com` has an invalid host name label"),
        ("recipient", "https://", "has no host"),
        ("recipient", "счёт-42", "an account id must be printable ASCII"),
        ("purpose", "pay \u202einvoice", "purpose contains the invisible or control character"),
        ("recipient_name", "ACME\u200d", "recipient_name contains the invisible"),
        ("purpose", "x" * 1025, "purpose is longer than 1024"),
        ("idempotency_key", "key with spaces", "printable ASCII"),
        ("idempotency_key", "", "printable ASCII"),
        ("idempotency_key", "k" * 256, "longer than 255"),
        ("metadata", ["a"], "must be a mapping"),
        ("metadata", {"rate": 0.1}, "metadata `rate` is a float"),
        ("metadata", {"bad key": "x"}, "metadata key `bad key`"),
        ("metadata", {"nested": {"a": 1}}, "must be text, an integer, a bool or null"),
        ("metadata", {f"k{i}": i for i in range(33)}, "more than 32 entries"),
        ("metadata", {"note": "x" * 513}, "longer than 512"),
    ],
    ids=repr,
)
def test_rejects_intent_field_naming_the_problem(field: str, value: object, message: str) -> None:
    with pytest.raises(InvalidIntentError, match=message) as caught:
        _intent(**{field: value})
    # A recipient that is no valid payee has its own, narrower code.
    expected = "invalid_recipient" if field == "recipient" else "invalid_intent"
    assert caught.value.code == expected


def test_optional_fields_may_be_absent() -> None:
    intent = _intent()
    assert intent.environment is None
    assert intent.category is None
    assert intent.metadata == {}


def test_fingerprint_is_the_same_for_spelling_variants_of_one_intent() -> None:
    base = _intent(recipient="x.evil.com", amount="12.5", action="payments.transfer")
    same = _intent(recipient=" X.EVIL.COM. ", amount=Decimal("12.50"), action="PAYMENTS.transfer")
    assert base.fingerprint() == same.fingerprint()
    assert base == same
    assert hash(base) == hash(same)


@pytest.mark.parametrize(
    "change",
    [
        {"amount": "12.51"},
        {"currency": "EUR"},
        {"recipient": "y.evil.com"},
        {"agent": "other-agent"},
        {"action": "payments.refund"},
        {"metadata": {"ticket": "FIN-1"}},
        {"session_id": "s-2"},
    ],
    ids=repr,
)
def test_fingerprint_changes_when_a_bound_field_changes(change: dict[str, Any]) -> None:
    base = _intent(amount="12.50")
    assert _intent(**{"amount": "12.50", **change}).fingerprint() != base.fingerprint()


def test_fingerprint_ignores_the_idempotency_key_but_equality_does_not() -> None:
    first = _intent(idempotency_key="key-1")
    second = _intent(idempotency_key="key-2")
    assert first.fingerprint() == second.fingerprint()
    assert first != second


def test_replace_validates_again_and_keeps_the_original_recipient_text() -> None:
    intent = _intent(recipient="Vendor.Example.COM")
    moved = intent.replace(environment="Staging")
    assert moved.environment == "staging"
    assert moved.recipient_original == "Vendor.Example.COM"
    assert intent.replace(currency="EUR").amount == Money(12050, "EUR", 2)
    with pytest.raises(InvalidAmountError):
        intent.replace(currency="JPY")  # 120.50 has no JPY form


def test_replace_with_a_new_amount_as_text_keeps_the_currency() -> None:
    intent = _intent(currency="EUR")
    assert intent.replace(amount="99.99").amount == Money(9999, "EUR", 2)
    assert intent.replace(amount=Money(5, "JPY", 0)).amount == Money(5, "JPY", 0)
    with pytest.raises(InvalidAmountError, match="must not be negative"):
        intent.replace(amount="-1")


def test_metadata_cannot_be_changed_after_the_fingerprint_is_taken() -> None:
    source = {"ticket": "FIN-1"}
    intent = _intent(metadata=source)
    fingerprint = intent.fingerprint()
    source["ticket"] = "FIN-2"
    with pytest.raises(TypeError):
        intent.metadata["ticket"] = "FIN-3"  # type: ignore[index]
    assert intent.metadata == {"ticket": "FIN-1"}
    assert (
        intent.fingerprint() == fingerprint == _intent(metadata={"ticket": "FIN-1"}).fingerprint()
    )
