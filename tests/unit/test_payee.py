"""Payees: one canonical identity per payee, whatever the spelling (issue 12, section 1).

Method: tables of spellings a hostile agent would try, each checked against the canonical
payee a browser would reach; Hypothesis properties that parsing is idempotent, that a payee
always matches a pattern made of its own canonical form, and that case-sensitive ids never
match an allow pattern in another case.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paywarden.errors import InvalidRecipientError
from paywarden.payee import Payee, eip55, parse_payee
from paywarden.policy.recipients import compile_patterns, parse_pattern

EVIL = "evil.example"
SPELLINGS_OF_EVIL = [
    "evil.example",
    "EVIL.Example.",
    " evil.example ",
    "ｅｖｉｌ.ｅｘａｍｐｌｅ",
    "evil\u3002example",
    "evil.example:443",
    "evil.example:8443",
    "evil.example/",
    "evil.example/pay?x=1#f",
    "evil.example\\pay",
    "//evil.example/x",
    "\\\\evil.example",
    "http:evil.example",
    "https:/evil.example",
    "https:\\\\evil.example\\x",
    "HTTPS://EVIL.EXAMPLE:443/a/../b",
    "https://ev%69l.example/",
    "https://evil.example./pay",
    "http://evil.example:80/",
]


@pytest.mark.parametrize("spelling", SPELLINGS_OF_EVIL, ids=repr)
def test_every_spelling_of_a_host_has_that_host_as_its_identity(spelling: str) -> None:
    payee = parse_payee(spelling)
    assert payee.identity == EVIL and payee.host == EVIL
    assert parse_payee(payee.text) == payee


@pytest.mark.parametrize(
    ("spelling", "identity"),
    [
        ("0x7f.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("https://2130706433/", "127.0.0.1"),
        ("https://0x7f000001/x", "127.0.0.1"),
        ("10.0.0.1:8080/pay", "10.0.0.1"),
        ("[::1]", "[::1]"),
        ("https://[0:0:0:0:0:0:0:1]:8443/", "[::1]"),
        ("2001:DB8::1", "[2001:db8::1]"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("https://[::ffff:a00:1]/", "10.0.0.1"),
    ],
)
def test_ip_literals_are_canonical_in_every_notation(spelling: str, identity: str) -> None:
    payee = parse_payee(spelling)
    assert payee.identity == identity
    assert payee.kind in ("ip", "url")


@pytest.mark.parametrize(
    ("spelling", "kind", "identity", "text"),
    [
        (
            "https://API.Example.com/v1?q=1#f",
            "url",
            "api.example.com",
            "https://api.example.com/v1",
        ),
        ("api.example.com:8443/v1", "url", "api.example.com", "https://api.example.com:8443/v1"),
        ("Straße.de", "domain", "xn--strae-oqa.de", "xn--strae-oqa.de"),
        ("bücher.de", "domain", "xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("Billing@ACME.com", "email", "billing@acme.com", "billing@acme.com"),
        ("mailto:billing@acme.com", "email", "billing@acme.com", "billing@acme.com"),
        ("acct_1AbC", "account", "acct_1AbC", "acct_1AbC"),
        ("Vendor-42", "id", "Vendor-42", "Vendor-42"),
        ("order:abc", "id", "order:abc", "order:abc"),
        ("2130706433", "id", "2130706433", "2130706433"),
        ("accounts/123", "url", "accounts", "https://accounts/123"),
        ("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "address", None, None),
        ("BC1QAR0SRRR7XFKVY5L643LYDNW9RE59GTZZWF5MDQ", "address", None, None),
    ],
)
def test_each_kind_has_its_canonical_identity_and_text(
    spelling: str, kind: str, identity: str | None, text: str | None
) -> None:
    payee = parse_payee(spelling)
    assert payee.kind == kind
    if identity is not None:
        assert (payee.identity, payee.text) == (identity, text)
    assert parse_payee(payee.text) == payee


def test_bech32_addresses_are_one_identity_in_either_case() -> None:
    lower = parse_payee("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq")
    assert parse_payee(lower.text.upper()) == lower


# EIP-55 test vectors (https://eips.ethereum.org/EIPS/eip-55).
EIP55_VECTORS = [
    "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "fB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "dbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "D1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]


@pytest.mark.parametrize("checksummed", EIP55_VECTORS)
def test_evm_addresses_are_checksum_checked_then_compared_in_one_case(checksummed: str) -> None:
    assert eip55(checksummed.lower()) == checksummed
    payee = parse_payee("0x" + checksummed)
    assert (
        payee == parse_payee("0x" + checksummed.lower()) == parse_payee("0X" + checksummed.upper())
    )
    assert payee.identity == "0x" + checksummed.lower()
    caip = parse_payee("eip155:8453:0x" + checksummed)
    assert caip.identity == "eip155:8453:0x" + checksummed.lower()
    wrong = checksummed[:-1] + (checksummed[-1].swapcase() if checksummed[-1].isalpha() else "A")
    with pytest.raises(InvalidRecipientError, match="EIP-55"):
        parse_payee("0x" + wrong)


@pytest.mark.parametrize(
    ("spelling", "message"),
    [
        ("https://good.example@evil.example/", "user information"),
        ("https://u:p@evil.example", "user information"),
        ("https://good.example\\@evil.example", None),  # a path: the host is good.example
        ("user@evil.example/x", "user information"),
        ("bob:secret@evil.example", "user information"),
        ("ftp://evil.example/", "only http and https"),
        ("ws://evil.example/", "only http and https"),
        ("https://", "no host"),
        ("https://evil.example:99999/", "invalid port"),
        ("https://a%00b.example", "host cannot be parsed"),
        ("https://-x-.example", "invalid host name label"),
        ("https://xn--.example", "invalid host name label"),
        ("https://xn--zz.example", "invalid IDNA label"),
        ("x..example", "invalid host name label"),
        ("v1.2", "not a valid one"),
        ("evil\n.example", "U\\+000A"),
        ("evil.example\u200b", "U\\+200B"),
        ("\u202eevil.example", "U\\+202E"),
        ("fe80::1%eth0", "zone"),
        ("счёт-42", "printable ASCII"),
        ("bc1QAR0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "mixes upper and lower"),
        ("x" * 513, "longer than 512 bytes"),
        ("é" * 257, "longer than 512 bytes"),
    ],
    ids=repr,
)
def test_malformed_recipients_are_refused_with_their_own_code(
    spelling: str, message: str | None
) -> None:
    if message is None:
        assert parse_payee(spelling).identity == "good.example"
        return
    with pytest.raises(InvalidRecipientError, match=message) as caught:
        parse_payee(spelling)
    assert caught.value.code == "invalid_recipient"


# Patterns ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "payee", "matches"),
    [
        ("*.evil.example", "https://pay.evil.example:8443/x", True),
        ("*.evil.example", "PAY.EVIL.EXAMPLE.", True),
        ("*.evil.example", "bob@pay.evil.example", True),
        ("*.evil.example", "evil.example", False),
        ("evil.example", "//EVIL.example/pay", True),
        ("10.0.0.0/8", "http://0x0a.1/", True),
        ("10.0.0.0/8", "::ffff:10.9.9.9", True),
        ("10.0.0.0/8", "11.0.0.1", False),
        ("2001:db8::/32", "https://[2001:db8::5]/", True),
        ("https://api.example.com/v1/*", "api.example.com/v1/pay", True),
        ("https://api.example.com/v1/*", "https://api.example.com/v2/pay", False),
        ("https://api.example.com/v1/*", "http://api.example.com/v1/pay", False),
        ("api.example.com/v1/*", "https://API.example.com:443/v1/x", True),
        ("*@acme.com", "Billing@ACME.com", True),
        ("acct_1AbC", "acct_1AbC", True),
        ("acct_1AbC", "acct_1aBc", False),
        ("vendor-*", "vendor-42", True),
        ("Vendor-*", "vendor-42", False),
        ("0xABC*", "0xabc0000000000000000000000000000000000000", True),
    ],
)
def test_patterns_match_payees_by_what_they_name(pattern: str, payee: str, matches: bool) -> None:
    assert compile_patterns([pattern]).matches(parse_payee(payee)) is matches


def test_case_insensitive_id_matching_is_only_on_request() -> None:
    matcher = compile_patterns(["acct_1AbC"])
    other_case = parse_payee("ACCT_1ABC")
    assert not matcher.matches(other_case)
    assert matcher.matches(other_case, ignore_id_case=True)


@pytest.mark.parametrize(
    "pattern", ["*.mün*.de", "ftp://x.example/*", "http*://x.example/*", "10.0.0.1/8", "x\u200b"]
)
def test_invalid_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(InvalidRecipientError):
        parse_pattern(pattern)


@pytest.mark.parametrize(
    "pattern",
    ["*.EVIL.example.", "https://*.München.de/*", "*@Bücher.DE", "10.0.0.0/8", "acct_1AbC"],
)
def test_a_patterns_canonical_text_parses_to_the_same_pattern(pattern: str) -> None:
    parsed = parse_pattern(pattern)
    assert parse_pattern(parsed.text) == parsed


# Properties ----------------------------------------------------------------------------------

PIECES = st.sampled_from(
    [
        *"aZ09.@:/\\?#[]%-_ ",
        "xn--",
        "http:",
        "https://",
        "//",
        ":8443",
        "0x",
        "acct_",
        "\u00a0",
        "\u3002",
        "ß",
        "ü",
        "а",
        "Ｋ",
        "::",
        "127",
    ]
)
TEXTS = st.one_of(st.text(max_size=40), st.lists(PIECES, max_size=14).map("".join))


@settings(max_examples=400)
@given(text=TEXTS)
def test_parsing_is_idempotent_or_refuses(text: str) -> None:
    try:
        payee = parse_payee(text)
    except InvalidRecipientError:
        return
    assert parse_payee(payee.text) == payee
    assert parse_payee(payee) is payee
    assert payee.text == payee.text.strip() and payee.identity


@settings(max_examples=300)
@given(text=TEXTS)
def test_a_payee_always_matches_its_own_canonical_form(text: str) -> None:
    try:
        payee = parse_payee(text)
    except InvalidRecipientError:
        return
    own = compile_patterns([payee.text])
    assert own.matches(payee)
    if payee.host is not None:
        assert compile_patterns([payee.host]).matches(payee)


ID_CHARS = st.sampled_from("abcdefghijKLMNOPQRST0123456789")


@given(suffix=st.text(ID_CHARS, min_size=1, max_size=16))
def test_an_allow_pattern_for_an_account_never_names_it_in_another_case(suffix: str) -> None:
    payee = parse_payee(f"acct_{suffix}")
    swapped = f"acct_{suffix.swapcase()}"
    if swapped == payee.identity:
        return
    matcher = compile_patterns([swapped])
    assert not matcher.matches(payee)
    assert matcher.matches(payee, ignore_id_case=True)  # a deny list would still catch it


def test_payee_to_dict_names_kind_identity_and_host() -> None:
    payee = parse_payee("https://api.example.com:8443/v1")
    assert payee.to_dict() == {
        "kind": "url",
        "identity": "api.example.com",
        "text": "https://api.example.com:8443/v1",
        "host": "api.example.com",
        "port": 8443,
    }
    assert str(payee) == payee.text
    assert isinstance(parse_payee(payee), Payee)
