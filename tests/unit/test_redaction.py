"""The redaction engine: secret key names, secret values in free text, URLs, policy extension.

The formats here are written out independently of `paywarden.audit.secret_formats` (from the
providers' documentation, see docs/redaction.md), and every secret is generated from its format
by Hypothesis, embedded in prose. Both sides are tested: secrets are always caught, and near
misses (too short, wrong characters, no issuer prefix, identifiers that only look similar) are
left alone.
"""

from __future__ import annotations

import base64
import copy
import json
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paywarden.audit import redact as engine
from paywarden.audit.redact import DEFAULT_REDACTOR, REDACTED, Redactor, pattern_problem, redact
from paywarden.audit.secret_formats import CARD_ISSUERS, VALUE_KINDS
from paywarden.policy import check_policy, compile_policy

R = DEFAULT_REDACTOR
ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "_-"
UPPER_DIGITS = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"

# Prose ----------------------------------------------------------------------------------------

# No item starts with a digit, so numbers never touch: "10:30 1234 5678" would be one run of
# digit groups, which is how a card number is written.
PROSE_WORDS = [
    *("Monthly", "API", "usage", "for", "the", "research", "agent", "invoice", "INV-2026-0042"),
    *("paid", "on 2026-03-10", "at 10:30", "USD 120.50", "bearers", "of", "news", "seed"),
    *("basic-plan", "sk", "pk", "task_test", "desk-reservation", "key", "token", "author"),
    *("ticket=FIN-42", "note:", "see", "https://vendor.example.com/pay?order=17", "PIN"),
    *("bob@example.com", "call +1 415 555 2671", "order 123456789012", "ACME-77", "plan"),
    *("password", "reset", "requested", "Signature", "pending", "tokens_used=1200"),
]
prose = st.lists(st.sampled_from(PROSE_WORDS), max_size=12).map(" ".join)


@given(prose)
def test_prose_without_secrets_is_left_alone(text: str) -> None:
    value = {"purpose": text, "metadata": {"note": text, "items": [text]}}
    assert R.redact(value, "$.intent") == (value, [])
    assert R.secret_kind(text) is None
    assert R.redact_url(text) == (text, False)


# Card numbers ---------------------------------------------------------------------------------


def luhn_complete(body: str) -> str:
    for digit in "0123456789":
        candidate = body + digit
        total = 0
        for index, char in enumerate(reversed(candidate)):
            value = int(char) * (2 if index % 2 else 1)
            total += value - 9 if value > 9 else value
        if total % 10 == 0:
            return candidate
    raise AssertionError("unreachable")


# (lowest prefix, highest prefix, lengths) per network, from the networks' published IIN ranges.
ISSUERS = [
    (4, 4, (13, 16, 19)),  # Visa
    (51, 55, (16,)),  # Mastercard
    (2221, 2720, (16,)),  # Mastercard 2-series
    (34, 34, (15,)),  # American Express
    (37, 37, (15,)),
    (300, 305, tuple(range(14, 20))),  # Diners Club
    (36, 36, tuple(range(14, 20))),
    (38, 39, tuple(range(14, 20))),
    (3528, 3589, tuple(range(16, 20))),  # JCB
    (6011, 6011, tuple(range(16, 20))),  # Discover
    (644, 649, tuple(range(16, 20))),
    (65, 65, tuple(range(16, 20))),
    (62, 62, tuple(range(16, 20))),  # UnionPay
    (2200, 2204, tuple(range(16, 20))),  # Mir
    (50, 50, tuple(range(12, 20))),  # Maestro
    (56, 69, tuple(range(12, 20))),
    (81, 82, (16,)),  # RuPay
    (9792, 9792, (16,)),  # Troy
]


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    low, high, lengths = draw(st.sampled_from(ISSUERS))
    length = draw(st.sampled_from(lengths))
    prefix = str(draw(st.integers(low, high)))
    rest = length - 1 - len(prefix)
    return luhn_complete(prefix + draw(st.text("0123456789", min_size=rest, max_size=rest)))


@st.composite
def grouped(draw: st.DrawFn, number: str) -> str:
    style = draw(st.sampled_from(["compact", "fours", "amex", "random"]))
    if style == "compact":
        return number
    if style == "fours":
        cuts = list(range(4, len(number), 4))
    elif style == "amex":
        cuts = [cut for cut in (4, 10) if cut < len(number)]
    else:
        cuts = sorted(draw(st.sets(st.integers(1, len(number) - 1), max_size=6)))
    separator = draw(st.sampled_from([" ", "-"]))
    pieces = [number[a:b] for a, b in zip([0, *cuts], [*cuts, len(number)], strict=True)]
    return separator.join(pieces)


@given(card_numbers().flatmap(grouped), prose, prose, st.sampled_from(["", " 123", " 12/28"]))
def test_every_real_card_number_is_caught_in_text(
    card: str, before: str, after: str, tail: str
) -> None:
    text = f"{before} card {card}{tail}, {after}"
    assert R.redact({"purpose": text}) == ({"purpose": REDACTED}, ["$.purpose"])
    assert R.secret_kind(text) == "card_number"
    encoded = card.replace(" ", "%20")
    scrubbed, changed = R.redact_url(f"https://shop.example/pay?ref=7&note={encoded}#top")
    assert changed and scrubbed == f"https://shop.example/pay?ref=7&note={REDACTED}#top"


NO_ISSUER = ["0", "1", "7", "31", "33", "306", "309", "3527", "3590", "21", "28", "83", "90", "95"]


@given(st.sampled_from(NO_ISSUER), st.integers(12, 19), st.data())
def test_luhn_valid_numbers_without_an_issuer_prefix_are_left_alone(
    prefix: str, length: int, data: st.DataObject
) -> None:
    rest = length - 1 - len(prefix)
    number = luhn_complete(prefix + data.draw(st.text("0123456789", min_size=rest, max_size=rest)))
    text = f"order {number} shipped"
    assert R.redact({"purpose": text}) == ({"purpose": text}, [])


@pytest.mark.parametrize(
    "number",
    [
        luhn_complete("378282246310005"),  # an American Express prefix, but 16 digits
        luhn_complete("55555555555544"),  # a Mastercard prefix, but 15 digits
        luhn_complete("42424242424242"),  # a Visa prefix, but 15 digits
        "4242424242424241",  # Luhn check fails
        "1234567812345670",  # Luhn-valid order id, no issuer starts with 1
    ],
)
def test_numbers_that_are_not_card_numbers_are_left_alone(number: str) -> None:
    assert R.secret_kind(f"ref {number} ok") is None


# Provider formats -----------------------------------------------------------------------------

# kind, prefixes, body alphabet, shortest and longest body, fixed suffix.
FORMATS: list[tuple[str, tuple[str, ...], str, int, int, str]] = [
    ("stripe_key", ("sk_live_", "sk_test_", "rk_live_", "rk_test_", "pk_live_"), ALNUM, 10, 99, ""),
    ("stripe_webhook_secret", ("whsec_",), ALNUM, 20, 40, ""),
    ("anthropic_key", ("sk-ant-api03-", "sk-ant-admin01-"), URLSAFE, 20, 93, "AA"),
    ("openai_key", ("sk-proj-", "sk-svcacct-", "sk-admin-"), URLSAFE, 20, 160, ""),
    ("github_token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), ALNUM, 36, 40, ""),
    ("github_token", ("github_pat_",), ALNUM + "_", 22, 82, ""),
    (
        "gitlab_token",
        ("glpat-", "gloas-", "gldt-", "glrt-", "glptt-", "glft-"),
        URLSAFE,
        20,
        64,
        "",
    ),
    ("gitlab_token", ("glimt-", "glagent-", "glsoat-", "glffct-", "glcbt-"), URLSAFE, 20, 50, ""),
    (
        "slack_token",
        ("xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xapp-1-"),
        ALNUM + "-",
        10,
        60,
        "",
    ),
    ("slack_webhook", ("hooks.slack.com/services/",), ALNUM + "/", 20, 60, ""),
    ("aws_access_key", ("AKIA", "ASIA", "ABIA", "ACCA"), UPPER_DIGITS, 16, 16, ""),
    ("google_api_key", ("AIza",), URLSAFE, 35, 35, ""),
    ("google_oauth", ("GOCSPX-", "ya29."), URLSAFE, 20, 100, ""),
    ("twilio_api_key", ("SK",), HEX, 32, 32, ""),
    ("npm_token", ("npm_",), ALNUM, 36, 36, ""),
    ("pypi_token", ("pypi-AgEIcHlwaS5vcmc", "pypi-AgENdGVzdC5weXBpLm9yZw"), URLSAFE, 50, 120, ""),
    ("huggingface_token", ("hf_",), string.ascii_letters, 30, 34, ""),
    ("mailgun_key", ("key-",), HEX, 32, 32, ""),
    ("digitalocean_token", ("dop_v1_", "doo_v1_", "dor_v1_"), HEX, 64, 64, ""),
    ("shopify_token", ("shpat_", "shpss_", "shpca_", "shppa_"), HEX + "ABCDEF", 32, 32, ""),
    ("square_token", ("sq0atp-", "sq0csp-"), URLSAFE, 22, 43, ""),
    ("square_token", ("EAAA",), URLSAFE, 60, 64, ""),
]
BEFORE = ["", " ", "key ", "note: ", "token=", "(", '"', "'", "\n", "use "]
AFTER = ["", " ", ")", ".", '"', ",", "\n", " for staging"]


@st.composite
def provider_secrets(draw: st.DrawFn) -> tuple[str, str]:
    kind, prefixes, alphabet, shortest, longest, suffix = draw(st.sampled_from(FORMATS))
    body = draw(st.text(alphabet, min_size=shortest, max_size=longest))
    return kind, draw(st.sampled_from(prefixes)) + body + suffix


@st.composite
def structured_secrets(draw: st.DrawFn) -> tuple[str, str]:
    """Formats with inner structure: JWTs, paywarden keys, PEM blocks, auth headers, Azure."""
    kind = draw(
        st.sampled_from(
            ["jwt", "paywarden_key", "pem_block", "bearer_token", "basic_auth", "openai_key"]
            + ["sendgrid_key", "azure_client_secret"]
        )
    )
    text = draw(st.text(URLSAFE, min_size=22, max_size=43))
    if kind == "jwt":
        claims = draw(st.dictionaries(st.text(string.ascii_lowercase, max_size=5), st.integers()))
        segments = [{"alg": draw(st.sampled_from(["HS256", "RS256", "ES384"]))}, claims]
        encoded = [base64.urlsafe_b64encode(json.dumps(s).encode()).decode() for s in segments]
        secret = ".".join([*(e.rstrip("=") for e in encoded), text])
    elif kind == "paywarden_key":
        tag = draw(st.from_regex(r"[a-z0-9-]{1,32}", fullmatch=True))
        key_id, key_secret = draw(st.text(HEX, min_size=12, max_size=12)), text.encode().hex()
        secret = f"pw_{tag}_{key_id}_{(key_secret * 2)[:48].ljust(48, '0')}"
    elif kind == "pem_block":
        label = draw(st.sampled_from(["", "RSA ", "EC ", "DSA ", "OPENSSH ", "ENCRYPTED ", "PGP "]))
        secret = f"-----BEGIN {label}PRIVATE KEY-----\nMIIE{text}\n-----END {label}PRIVATE KEY-----"
    elif kind == "bearer_token":
        secret = draw(st.sampled_from(["Bearer ", "bearer ", "BEARER  "])) + text + "=="
    elif kind == "basic_auth":
        user, password = draw(st.text(ALNUM, min_size=2)), draw(st.text(ALNUM + "!:$", min_size=1))
        secret = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    elif kind == "openai_key":
        legacy = draw(st.text(ALNUM, min_size=20, max_size=20))
        secret = f"sk-{legacy}T3BlbkFJ{draw(st.text(ALNUM, min_size=20, max_size=20))}"
    elif kind == "sendgrid_key":
        secret = f"SG.{text[:22].ljust(22, 'a')}.{(text * 2)[:43].ljust(43, 'b')}"
    else:
        head = draw(st.text(ALNUM + "_~.", min_size=3, max_size=3))
        tail = draw(st.text(ALNUM + "_~.-", min_size=31, max_size=34))
        secret = f"{head}{draw(st.sampled_from(string.digits))}Q~{tail}"
    return kind, secret


@given(provider_secrets() | structured_secrets(), prose, prose, st.data())
def test_every_provider_format_is_caught_inside_text(
    secret: tuple[str, str], before: str, after: str, data: st.DataObject
) -> None:
    kind, value = secret
    joined = data.draw(st.sampled_from(BEFORE)) + value + data.draw(st.sampled_from(AFTER))
    text = f"{before} {joined} {after}".strip()
    assert R.secret_kind(text) == kind
    clean, paths = R.redact({"purpose": text, "metadata": {"ticket": "FIN-42", "note": text}})
    assert clean == {"purpose": REDACTED, "metadata": {"ticket": "FIN-42", "note": REDACTED}}
    assert paths == ["$.metadata.note", "$.purpose"]


@given(st.sampled_from(FORMATS), st.data())
def test_a_provider_key_one_character_too_short_is_left_alone(
    spec: tuple[str, tuple[str, ...], str, int, int, str], data: st.DataObject
) -> None:
    _, prefixes, alphabet, shortest, _, _ = spec
    body = data.draw(st.text(alphabet, min_size=shortest - 1, max_size=shortest - 1))
    text = f"value {data.draw(st.sampled_from(prefixes))}{body} end"
    # A random body may hold a run of digits that is a card number; nothing else may match.
    assert R.secret_kind(text) in (None, "card_number")


@given(
    st.one_of(
        st.text(),
        prose,
        st.tuples(prose, provider_secrets() | structured_secrets(), prose).map(
            lambda parts: f"{parts[0]} {parts[1][1]}{parts[2]}"
        ),
        st.tuples(st.text(max_size=8), card_numbers()).map("".join),
    )
)
def test_redact_replaces_a_string_exactly_when_secret_kind_finds_a_secret(text: str) -> None:
    clean, paths = R.redact(text)
    assert (clean, paths) == ((REDACTED, ["$"]) if R.secret_kind(text) else (text, []))


@given(provider_secrets())
def test_a_provider_prefix_inside_a_longer_word_is_not_a_key(secret: tuple[str, str]) -> None:
    kind, value = secret
    if kind != "slack_webhook":  # a URL path: no word boundary to test
        assert R.secret_kind("x" + value) != kind


@pytest.mark.parametrize(
    "text",
    [
        "sk_live_short",
        "task_test_abcdefghijklmnop",  # not `sk_test_`: a word ends in `sk`
        "skip_live_abcdefgh12345678",
        "AKIAabcdefghijklmnop",  # lower case
        "AKIA1234567890ABCDEFG",  # 17 characters
        "ghp_abcdefghij-klmnopqrstuvwxyz0123456789",  # `-` is not in a GitHub token
        "sk-this-is-a-long-slug-without-any-digits-at-all",
        "eyJhbGci.eyJ",
        "-----BEGIN CERTIFICATE-----",
        "-----BEGIN PUBLIC KEY-----",
        "the bearer of bad news",
        "Bearer token",
        "basic plan",
        "Basic information requested",
        "pw_short_key",
        "key-0123456789abcdef",  # too short for a Mailgun key
        "hooks.slack.com/services/",
        "xoxb-123",
        "0x52908400098527886E0F7030069857D2E4169EE7",  # an EVM address is an identity
        "session 550e8400-e29b-41d4-a716-446655440000",
    ],
)
def test_near_misses_are_left_alone(text: str) -> None:
    assert R.secret_kind(text) is None
    assert R.redact({"purpose": text}) == ({"purpose": text}, [])


@given(st.from_regex(r"[a-z0-9-]{1,32}", fullmatch=True), st.text(HEX, min_size=60, max_size=60))
def test_paywarden_keys_of_every_environment_are_caught(tag: str, hex_chars: str) -> None:
    key = f"pw_{tag}_{hex_chars[:12]}_{hex_chars[12:]}"
    assert R.secret_kind(f"my key is {key}, keep it") == "paywarden_key"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("password=hunter2", "secret_assignment"),
        ('{"api_key": "abc"}', "secret_assignment"),
        ("PIN: 1234", "secret_assignment"),
        ("db_password: correcthorse", "secret_assignment"),
        ("login https://bob:hunter2@vendor.example.com/x", "url_password"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ.sig then 4242 4242 4242 4242", "jwt"),
        ("4242 4242 4242 4242 then eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ.sig", "card_number"),
    ],
)
def test_secret_kind_names_the_first_secret(text: str, kind: str) -> None:
    assert R.secret_kind(text) == kind
    assert redact({"note": text}) == ({"note": REDACTED}, ["$.note"])


@pytest.mark.parametrize(
    "text",
    [
        "Signature: pending",  # after `:`, a short word is prose
        "token: abc",
        "author=bob",
        "time 10:30, ratio 3:2",
        "password=",
        "https://vendor.example.com:8443/pay",
        "ssh://git@github.com/org/repo",  # a user name alone is not a password
    ],
)
def test_assignments_and_urls_without_a_secret_are_left_alone(text: str) -> None:
    assert R.secret_kind(text) is None


# Key names ------------------------------------------------------------------------------------

SECRET_NAMES = [
    *("auth", "auth_token", "authToken", "Authorization", "x-api-key", "X-Api-Key", "apiKey"),
    *("APIKey", "api.key", "client_secret", "password", "passwd", "pwd", "db_passwd", "pin"),
    *("passphrase", "pin_code", "pincode", "cvv", "cvc", "cvv2", "card_number", "cardNumber"),
    *("CARD-NUMBER", "pan", "private_key", "privateKey", "secret", "seed", "seed_phrase"),
    *("mnemonic", "token", "access_token", "refresh_token", "id_token", "signature", "cookie"),
    *("set-cookie", "session_token", "credential", "credentials", "otp", "totp", "ssn"),
    *("pepper", "oauth", "dbpassword", "passwordHash", "stripeApiKey", "jsessionid"),
    *("aws_secret_access_key", "AccountKey", "sig", "recovery_code", "verification_code"),
]
PLAIN_NAMES = [
    *("author", "authority", "authored_by", "tokenizer_name", "tokens_used", "max_tokens"),
    *("pinned", "spinach", "seedling", "secretary", "session_id", "idempotency_key", "key"),
    *("public_key", "salt", "iban", "account_number", "routing_number", "description"),
    *("japan", "span", "ticket", "note", "amount", "signed_at", "passport_country"),
]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_key_names_are_redacted_wholesale(name: str) -> None:
    assert R.secret_key(name)
    value = {"metadata": {name: 1234, "ticket": "FIN-42"}}
    assert R.redact(value, "$.intent") == (
        {"metadata": {name: REDACTED, "ticket": "FIN-42"}},
        [f"$.intent.metadata.{name}"],
    )


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_plain_key_names_are_kept(name: str) -> None:
    assert not R.secret_key(name)
    assert R.redact({name: "visible"}) == ({name: "visible"}, [])


NEUTRAL_WORDS = ["customer", "order", "primary", "value", "old", "new", "db", "vendor", "ref"]
SECRET_PHRASES = [["password"], ["api", "key"], ["card", "number"], ["access", "token"], ["cvv"]]


def styled(words: list[str], style: str) -> str:
    if style == "camel":
        return words[0] + "".join(word.title() for word in words[1:])
    if style == "pascal":
        return "".join(word.title() for word in words)
    if style == "upper":
        return "_".join(words).upper()
    return style.join(words)


STYLES = st.sampled_from(["camel", "pascal", "upper", "_", "-", "."])


@given(
    st.lists(st.sampled_from(NEUTRAL_WORDS), max_size=2),
    st.sampled_from(SECRET_PHRASES),
    st.lists(st.sampled_from(NEUTRAL_WORDS), max_size=2),
    STYLES,
)
def test_a_secret_phrase_in_any_spelling_makes_a_secret_name(
    before: list[str], phrase: list[str], after: list[str], style: str
) -> None:
    assert R.secret_key(styled([*before, *phrase, *after], style))


@given(st.lists(st.sampled_from([*NEUTRAL_WORDS, *PLAIN_NAMES]), min_size=1, max_size=4), STYLES)
def test_names_made_of_plain_words_are_not_secret(words: list[str], style: str) -> None:
    assert not R.secret_key(styled(words, style))


# The walk: copies, paths, idempotence ---------------------------------------------------------

leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | prose
    | provider_secrets().map(lambda secret: f"key {secret[1]}")
    | card_numbers()
)
names = st.sampled_from([*SECRET_NAMES[:8], *PLAIN_NAMES[:8]]) | st.text(max_size=6)
values = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(names, children, max_size=3),
    max_leaves=12,
)


@given(values)
def test_redaction_never_mutates_is_idempotent_and_lists_sorted_paths(value: Any) -> None:
    original = copy.deepcopy(value)
    clean, paths = R.redact(value, "$.x")
    assert value == original
    assert paths == sorted(paths) and all(path.startswith("$.x") for path in paths)
    again, again_paths = R.redact(clean, "$.x")
    assert again == clean
    assert set(again_paths) <= set(paths)  # only secret-named keys are listed again
    assert R.redact(value, "$.x") == (clean, paths)  # deterministic


def test_paths_name_nested_keys_and_list_items_and_tuples_become_lists() -> None:
    value = {
        "metadata": {"items": ("ok", {"apiKey": "x"}, "4111 1111 1111 1111"), "token": None},
        "purpose": "fine",
    }
    assert R.redact(value, "$.intent") == (
        {
            "metadata": {"items": ["ok", {"apiKey": REDACTED}, REDACTED], "token": None},
            "purpose": "fine",
        },
        ["$.intent.metadata.items[1].apiKey", "$.intent.metadata.items[2]"],
    )
    assert R.redact("sk_live_abcdefghij12") == (REDACTED, ["$"])
    assert R.redact(42) == (42, [])


# URLs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://bob:hunter2@vendor.example.com/pay",
            f"https://{REDACTED}@vendor.example.com/pay",
        ),
        ("https://bob@vendor.example.com/", f"https://{REDACTED}@vendor.example.com/"),
        ("https://u:p@ss@vendor.example.com/", f"https://{REDACTED}@vendor.example.com/"),
        (
            "https://a.example/pay?api_key=abc&order=7",
            f"https://a.example/pay?api_key={REDACTED}&order=7",
        ),
        (
            "https://a.example/?x=1&token=t0k;jsessionid=ab12",
            f"https://a.example/?x=1&token={REDACTED};jsessionid={REDACTED}",
        ),
        (
            "https://a.example/cb#access_token=abc&state=9",
            f"https://a.example/cb#access_token={REDACTED}&state=9",
        ),
        (
            "https://a.example/?X-Api-Key=k&Signature=s",
            f"https://a.example/?X-Api-Key={REDACTED}&Signature={REDACTED}",
        ),
        ("https://a.example/?api%5Fkey=abc", f"https://a.example/?api%5Fkey={REDACTED}"),
        (
            "https://a.example/?q=sk_live_abcdefghij12&page=2",
            f"https://a.example/?q={REDACTED}&page=2",
        ),
        ("https://a.example/?note=pay+4242+4242+4242+4242", f"https://a.example/?note={REDACTED}"),
        (
            "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/cccccccccccccccccccccccc",
            f"https://{REDACTED}",
        ),
        ("https://a.example/pay?order=7&amp;ref=x#section-2", None),
        ("vendor.example.com", None),
        ("not a url: just words, ratio 3:2", None),
        ("", None),
    ],
)
def test_redact_url_scrubs_credentials_and_keeps_the_rest(url: str, expected: str | None) -> None:
    scrubbed, changed = R.redact_url(url)
    assert (scrubbed, changed) == ((expected, True) if expected else (url, False))
    assert R.redact_url(scrubbed) == (scrubbed, False)


@given(st.text())
def test_redact_url_never_crashes_and_settles(text: str) -> None:
    scrubbed, changed = R.redact_url(text)
    assert isinstance(scrubbed, str) and changed == (scrubbed != text)
    assert R.redact_url(scrubbed) == (scrubbed, False)
    assert R.secret_kind(scrubbed) is None


@given(provider_secrets() | structured_secrets(), st.sampled_from(["?key=", "?q=x&v=", "/"]))
def test_redact_url_removes_every_secret_value(secret: tuple[str, str], where: str) -> None:
    _, value = secret
    scrubbed, changed = R.redact_url(f"https://api.example.com/v1{where}{value}")
    assert changed and value not in scrubbed and REDACTED in scrubbed


# Policy extension -----------------------------------------------------------------------------

POLICY = """
currency: USD
redaction:
  key_names: [employee_number, tax_id]
  value_patterns: ['\\bEMP-[0-9]{6}\\b']
rules:
  - {id: api, effect: allow, actions: [x402.pay]}
"""


def test_the_policy_extension_adds_names_and_patterns() -> None:
    redactor = compile_policy(POLICY).redaction
    assert redactor == Redactor(("employee_number", "tax_id"), (r"\bEMP-[0-9]{6}\b",))
    assert redactor.secret_kind("badge EMP-004211 at the desk") == "policy_pattern"
    assert redactor.secret_kind("EMP-0042") is None
    assert redactor.secret_kind("sk_live_abcdefghij12") == "stripe_key"  # built-ins stay
    for name in ("employee_number", "employeeNumber", "customer-tax-id", "TAXID", "taxId"):
        assert redactor.secret_key(name), name
    for name in ("employee", "tax", "syntax_id", "number"):
        assert not redactor.secret_key(name), name
    clean, paths = redactor.redact({"note": "for EMP-123456", "taxId": "DE123", "team": "ops"})
    assert clean == {"note": REDACTED, "taxId": REDACTED, "team": "ops"}
    assert paths == ["$.note", "$.taxId"]
    assert not DEFAULT_REDACTOR.secret_key("tax_id")
    assert compile_policy("rules: []\ncurrency: USD").redaction is DEFAULT_REDACTOR


@pytest.mark.parametrize(
    ("section", "line", "message"),
    [
        ("redaction: [a]", 3, "must be a mapping"),
        ("redaction: {}", 3, "must be a mapping"),
        ("redaction:\n  keys: [a]", 3, "must be a mapping"),
        ("redaction:\n  key_names: 5", 4, "must be a list of strings"),
        ("redaction:\n  key_names: []", 4, "1 to 100 entries"),
        ("redaction:\n  key_names:\n    - ok\n    - ''", 6, "non-empty strings"),
        ("redaction:\n  key_names: ['---']", 4, "no letters or digits"),
        ("redaction:\n  key_names: ['" + "a" * 65 + "']", 4, "longer than 64"),
        ("redaction:\n  value_patterns:\n    - ok\n    - '(unclosed'", 6, "not a valid regular"),
        ("redaction:\n  value_patterns: ['x*']", 4, "empty string"),
        ("redaction:\n  value_patterns: ['(a+)+$']", 4, "exponential"),
        ("redaction:\n  value_patterns: ['redact']", 4, "redacted again"),
        ("redaction:\n  value_patterns: ['" + "a" * 513 + "']", 4, "longer than 512"),
        ("redaction:\n  value_patterns: [" + ", ".join(["'a'"] * 101) + "]", 4, "1 to 100"),
    ],
)
def test_a_bad_redaction_section_is_a_compile_error_at_its_line(
    section: str, line: int, message: str
) -> None:
    text = f"currency: USD\nrules: []\n{section}\n"
    policy, report = check_policy(text)
    assert policy is None
    errors = report.errors
    assert len(errors) == 1 and message in errors[0].message, report.lines()
    assert errors[0].mark is not None and errors[0].mark.line == line


def test_a_double_quoted_pattern_with_an_escape_gets_a_warning() -> None:
    text = 'currency: USD\nrules: []\nredaction:\n  value_patterns: ["\\bEMP"]\n'
    policy, report = check_policy(text)
    assert policy is not None
    assert any("single quotes" in warning.message for warning in report.warnings)


@pytest.mark.parametrize(
    ("pattern", "nested"),
    [
        ("(a+)+", True),
        (r"(?:\w*x)*", True),
        ("((ab)+){2,}", True),
        ("(a|b+)*", True),
        ("(ab)+", False),
        ("[(a+)]+", False),
        (r"\(a+\)+", False),
        ("(a+)", False),
        (r"\bEMP-[0-9]{6}\b", False),
    ],
)
def test_nested_quantifiers_are_refused(pattern: str, nested: bool) -> None:
    problem = pattern_problem(pattern)
    assert (problem is not None and "exponential" in problem) is nested


def test_a_redactor_built_in_python_checks_its_patterns_too() -> None:
    with pytest.raises(ValueError, match="empty string"):
        Redactor(extra_value_patterns=("x?",))
    with pytest.raises(ValueError, match="letter or digit"):
        Redactor(extra_key_names=("__",))


# The documentation is the contract --------------------------------------------------------

REDACTION_MD = Path(__file__).resolve().parents[2] / "docs" / "redaction.md"


def test_docs_list_every_key_name_rule_and_value_kind() -> None:
    text = REDACTION_MD.read_text(encoding="utf-8")
    names = [
        *engine.SECRET_WORDS,
        *engine.SECRET_PHRASES,
        *engine.SECRET_ENDINGS,
        *engine.SECRET_BEGINNINGS,
        *VALUE_KINDS,
        engine.KIND_ASSIGNMENT,
        engine.KIND_POLICY_PATTERN,
    ]
    assert sorted(name for name in set(names) if f"`{name}`" not in text) == []
    assert [network for *_, network in CARD_ISSUERS if f"| {network} |" not in text] == []
