"""One canonical recipient form: variants cannot slip past a deny list or onto an allow list."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from paywarden.errors import InvalidIntentError
from paywarden.intent import PaymentIntent, normalize_recipient, normalize_recipient_pattern
from paywarden.policy import compile_policy, evaluate
from paywarden.policy.compiler import check_policy

NOW = datetime(2026, 1, 7, 15, 0, tzinfo=UTC)

VARIANTS_OF_X_EVIL = [
    "x.evil.com",
    "X.EVIL.COM",
    "x.evil.com.",
    " x.evil.com ",
    "x.evil.com. ",
    "ｘ.ｅｖｉｌ.ｃｏｍ",  # full-width letters
    "x.evil.com\u3002",  # ideographic full stop as the trailing dot
    "x\u3002evil\uff0ecom",  # ideographic and full-width full stops as separators
]


def _pay(recipient: str) -> PaymentIntent:
    return PaymentIntent(
        agent="procurement-agent",
        action="payments.transfer",
        amount="25.00",
        currency="USD",
        recipient=recipient,
    )


@pytest.mark.parametrize("recipient", VARIANTS_OF_X_EVIL, ids=repr)
def test_spelling_variants_are_one_recipient(recipient: str) -> None:
    assert normalize_recipient(recipient) == "x.evil.com"
    assert _pay(recipient).fingerprint() == _pay("x.evil.com").fingerprint()


@pytest.mark.parametrize("recipient", VARIANTS_OF_X_EVIL, ids=repr)
@pytest.mark.parametrize("denied", ["x.evil.com", "X.Evil.Com.", "*.evil.com", "*.EVIL.COM"])
def test_denies_every_variant_of_a_denied_recipient(recipient: str, denied: str) -> None:
    policy = compile_policy(
        "currency: USD\n"
        "rules:\n"
        "  - id: deny-evil\n"
        "    effect: deny\n"
        f"    recipients: [{denied!r}]\n"
        "  - id: allow-all\n"
        "    effect: allow\n"
        "    actions: ['payments.*']\n"
    )
    decision = evaluate(policy, _pay(recipient), now=NOW)
    assert (decision.outcome, decision.rule_ids) == ("deny", ("deny-evil",))


ALLOW_PAYPAL = """\
currency: USD
rules:
  - id: allow-paypal
    effect: allow
    recipients: [paypal.com]
"""


@pytest.mark.parametrize("recipient", ["paypal.com", "PAYPAL.COM", "paypal.com.", " paypal.com "])
def test_allows_spelling_variants_of_an_allowlisted_recipient(recipient: str) -> None:
    decision = evaluate(compile_policy(ALLOW_PAYPAL), _pay(recipient), now=NOW)
    assert decision.outcome == "allow"


@pytest.mark.parametrize(
    "lookalike",
    [
        "pаypal.com",  # Cyrillic a
        "paypaI.com",  # capital i
        "paypal.co",
        "paypal.com.evil.net",
        "xn--pypal-4ve.com",  # the punycode of the Cyrillic lookalike
    ],
    ids=repr,
)
def test_lookalike_of_an_allowlisted_recipient_is_not_allowed(lookalike: str) -> None:
    intent = _pay(lookalike)
    assert intent.recipient != "paypal.com"
    decision = evaluate(compile_policy(ALLOW_PAYPAL), intent, now=NOW)
    assert (decision.outcome, decision.reason_code) == ("deny", "no_rule_matched")


def test_cyrillic_lookalike_normalises_to_its_distinct_idna_form() -> None:
    assert normalize_recipient("pаypal.com") == "xn--pypal-4ve.com"
    assert normalize_recipient("PАYPAL.COM") == "xn--pypal-4ve.com"


@pytest.mark.parametrize(
    ("recipient", "code_point"),
    [
        ("paypal.com\u200b", "200B"),  # zero-width space
        ("pay\u200bpal.com", "200B"),
        ("paypal.com\u200d", "200D"),  # zero-width joiner
        ("\u202epaypal.com", "202E"),  # right-to-left override
        ("paypal\u2066.com", "2066"),  # left-to-right isolate
        ("\ufeffpaypal.com", "FEFF"),  # byte order mark
    ],
    ids=repr,
)
def test_rejects_invisible_and_bidi_control_characters(recipient: str, code_point: str) -> None:
    with pytest.raises(InvalidIntentError, match=f"U\\+{code_point}"):
        normalize_recipient(recipient)
    with pytest.raises(InvalidIntentError, match=f"U\\+{code_point}"):
        _pay(recipient)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("Straße.de", "xn--strae-oqa.de"),  # UTS #46 non-transitional, as browsers do
        ("MÜNCHEN.de", "xn--mnchen-3ya.de"),
        ("Bob@Example.COM", "bob@example.com"),
        ("Bob@Example.COM.", "bob@example.com"),
        ("https://API.Example.com/v1?q=1#frag", "https://api.example.com/v1"),
        ("https://api.example.com", "https://api.example.com/"),
        ("https://api.example.com:8443/x", "https://api.example.com:8443/x"),
        ("Vendor-Corp-123", "Vendor-Corp-123"),  # opaque ids keep their case
        ("acct_1ABC", "acct_1ABC"),
    ],
)
def test_normalises_domains_mailboxes_urls_and_account_ids(raw: str, canonical: str) -> None:
    assert normalize_recipient(raw) == canonical


@pytest.mark.parametrize(
    ("pattern", "canonical"),
    [
        ("*.EVIL.com.", "*.evil.com"),
        (" *.evil.com ", "*.evil.com"),
        ("*.münchen.de", "*.xn--mnchen-3ya.de"),
        ("*@Bücher.DE", "*@xn--bcher-kva.de"),
        ("https://*.München.de/*", "https://*.xn--mnchen-3ya.de/*"),
        ("PayPal.com", "paypal.com"),
    ],
)
def test_recipient_patterns_use_the_same_canonical_form(pattern: str, canonical: str) -> None:
    assert normalize_recipient_pattern(pattern) == canonical


def test_rejects_a_pattern_label_mixing_wildcards_and_non_ascii() -> None:
    with pytest.raises(InvalidIntentError, match="xn--"):
        normalize_recipient_pattern("*.mün*.de")
    with pytest.raises(InvalidIntentError, match="U\\+200B"):
        normalize_recipient_pattern("*.evil.com\u200b")


def test_policy_with_an_invalid_recipient_pattern_fails_to_compile_with_its_rule() -> None:
    policy, report = check_policy(
        "currency: USD\n"
        "rules:\n"
        "  - id: deny-bad\n"
        "    effect: deny\n"
        "    recipients: ['*.mün*.de', 'ok.com']\n"
    )
    assert policy is None
    [error] = report.errors
    assert (error.rule_id, error.mark and error.mark.line) == ("deny-bad", 5)
    assert "recipients" in error.message


@pytest.mark.parametrize("recipient", [".", "...", ". .", " . ", "\u3002"], ids=repr)
def test_rejects_a_recipient_made_only_of_dots(recipient: str) -> None:
    with pytest.raises(InvalidIntentError, match="recipient"):
        normalize_recipient(recipient)


@pytest.mark.parametrize("url", ["https://api.example.com:99999/", "https://api.example.com:x/"])
def test_rejects_a_url_with_an_invalid_port_as_invalid_input(url: str) -> None:
    with pytest.raises(InvalidIntentError, match="invalid port"):
        normalize_recipient(url)


def test_rejects_urls_of_other_schemes_as_invalid_input() -> None:
    with pytest.raises(InvalidIntentError, match="only http and https"):
        normalize_recipient("b://a::")
