"""Secret values recognised by their format inside free text: card numbers, keys and tokens.

Every detector returns the leftmost `Found` (kind and span) or None, and starts with a guard
that costs far less than its regex, so ordinary prose is rejected cheaply: provider formats
only run when the text has a run of at least 14 token characters, card numbers only when it
has 12 digits in a row (single spaces or dashes allowed), the keyword formats only when their
keyword is present. docs/redaction.md lists every format with its source.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Found:
    """One secret in a text: its kind and where it is (`text[start:end]`)."""

    kind: str
    start: int
    end: int


# Provider key formats: (kind, regex). Each starts where no letter, digit, `_` or `-` precedes
# it: `task_test_...` is not a Stripe key, and neither is `-pw_...` inside a random base64url id.
PROVIDER_FORMATS: tuple[tuple[str, str], ...] = (
    ("stripe_key", r"(?:sk|rk|pk|ek)_(?:live|test|prod)_[A-Za-z0-9]{10,}"),
    ("stripe_webhook_secret", r"whsec_[A-Za-z0-9+/=]{20,}"),
    ("anthropic_key", r"sk-ant-[a-z]{2,8}[0-9]{2}-[A-Za-z0-9_-]{20,}"),
    (
        "openai_key",
        r"sk-(?:(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{20,}|(?=[A-Za-z0-9_-]{0,63}[0-9])"
        r"[A-Za-z0-9_-]{32,})",
    ),
    ("github_token", r"gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}"),
    (
        "gitlab_token",
        r"gl(?:pat|oas|dt|rt|rtr|cbt|ptt|ft|imt|agent|soat|ffct)-[A-Za-z0-9_.-]{20,}"
        r"|GR1348941[A-Za-z0-9_-]{20,}",
    ),
    (
        "slack_token",
        r"xox[abeoprs]-[A-Za-z0-9-]{10,}|xoxe\.xox[bp]-[A-Za-z0-9-]{20,}"
        r"|xapp-[0-9]-[A-Za-z0-9-]{10,}",
    ),
    ("slack_webhook", r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_-]{20,}"),
    ("aws_access_key", r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])"),
    ("google_api_key", r"AIza[A-Za-z0-9_-]{35}"),
    ("google_oauth", r"GOCSPX-[A-Za-z0-9_-]{20,}|ya29\.[A-Za-z0-9_-]{20,}"),
    ("jwt", r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*"),
    ("paywarden_key", r"pw_[a-z0-9-]{1,32}_[0-9a-f]{12}_[0-9a-f]{48}|pw_[A-Za-z0-9_-]{16,}"),
    ("twilio_api_key", r"SK[0-9a-fA-F]{32}(?![A-Za-z0-9])"),
    ("sendgrid_key", r"SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"),
    ("npm_token", r"npm_[A-Za-z0-9]{36}"),
    ("pypi_token", r"pypi-AgE(?:IcHlwaS5vcmc|NdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{50,}"),
    ("huggingface_token", r"hf_[A-Za-z0-9]{30,}|api_org_[A-Za-z0-9]{30,}"),
    ("mailgun_key", r"key-[0-9a-f]{32}(?![A-Za-z0-9])"),
    ("digitalocean_token", r"do[opr]_v1_[0-9a-f]{64}"),
    ("shopify_token", r"shp(?:at|ss|ca|pa)_[0-9a-fA-F]{32}"),
    ("square_token", r"sq0(?:atp|csp)-[A-Za-z0-9_-]{22,}|EAAA[A-Za-z0-9_-]{60,}"),
)
_PROVIDERS = re.compile(
    r"(?<![A-Za-z0-9_-])(?:" + "|".join(f"(?P<{k}>{r})" for k, r in PROVIDER_FORMATS) + ")"
)
# Every provider format is at least 14 characters of this set long (a JWT header is the
# shortest); text without such a run cannot hold one.
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_.+/=~-]{14}")
_AZURE_SECRET = re.compile(r"(?<![A-Za-z0-9_~.])[A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}")
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]{0,40}(?:PRIVATE|ENCRYPTED)[A-Z0-9 ]{0,40}-----")
_B64TOKEN = r"[A-Za-z0-9._~+/-]"
_BEARER = re.compile(
    rf"(?<![A-Za-z0-9])(?i:bearer)\s+({_B64TOKEN}{{16,}}|(?={_B64TOKEN}{{0,15}}[0-9])"
    rf"{_B64TOKEN}{{8,}})=*"
)
_BASIC = re.compile(r"(?<![A-Za-z0-9])(?i:basic)\s+([A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])")
_URL_PASSWORD = re.compile(r"//[^\s/?#@:]*:[^\s/?#]*@")

# Card numbers ----------------------------------------------------------------------------------

CARD_DIGITS_MIN = 12
CARD_DIGITS_MAX = 19
# 12 digits, maybe split by short runs of white space (any: tabs, line breaks, no-break and
# thin spaces, as pasted) or dashes: no card number is shorter.
_DENSE_DIGITS = re.compile(r"[0-9](?:[\s-]{0,3}[0-9]){11}")
_DIGIT_RUN = re.compile(r"[0-9]+(?:[\s-]{1,3}[0-9]+)*")
_NOT_DIGIT = re.compile(r"[^0-9]+")
_DIGIT_GROUP = re.compile(r"[0-9]+")
_ANY = frozenset(range(12, 20))
_LONG = frozenset(range(16, 20))
# Issuer identification number ranges (lowest and highest prefix, same length) and the card
# lengths each issues. A Luhn-valid number outside every range (an order id starting with 1)
# is not a card number.
CARD_ISSUERS: tuple[tuple[str, str, frozenset[int], str], ...] = (
    ("4", "4", frozenset({13, 16, 19}), "Visa"),
    ("51", "55", frozenset({16}), "Mastercard"),
    ("2221", "2720", frozenset({16}), "Mastercard"),
    ("34", "34", frozenset({15}), "American Express"),
    ("37", "37", frozenset({15}), "American Express"),
    ("300", "305", frozenset(range(14, 20)), "Diners Club"),
    ("36", "36", frozenset(range(14, 20)), "Diners Club"),
    ("38", "39", frozenset(range(14, 20)), "Diners Club"),
    ("3528", "3589", _LONG, "JCB"),
    ("6011", "6011", _LONG, "Discover"),
    ("644", "649", _LONG, "Discover"),
    ("65", "65", _LONG, "Discover"),
    ("62", "62", _LONG, "UnionPay"),
    ("2200", "2204", _LONG, "Mir"),
    ("50", "50", _ANY, "Maestro"),
    ("56", "69", _ANY, "Maestro"),
    ("81", "82", frozenset({16}), "RuPay"),
    ("9792", "9792", frozenset({16}), "Troy"),
)


def _prefix_table() -> dict[str, frozenset[int]]:
    """Every issuer prefix written out ("2221" ... "2720") with the lengths it allows."""
    table: dict[str, frozenset[int]] = {}
    for low, high, lengths, _ in CARD_ISSUERS:
        for number in range(int(low), int(high) + 1):
            prefix = str(number)
            table[prefix] = table.get(prefix, frozenset()) | lengths
    return table


_CARD_PREFIXES = _prefix_table()
_CARD_PREFIX_CHARS = sorted({len(prefix) for prefix in _CARD_PREFIXES})
_DOUBLED = str.maketrans("0123456789", "0246813579")  # 2d, minus 9 when that is over 9


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check over a string of ASCII digits."""
    backwards = digits[::-1]
    kept, doubled = backwards[0::2], backwards[1::2].translate(_DOUBLED)
    total = sum(kept.encode()) + sum(doubled.encode()) - 48 * len(digits)
    return total % 10 == 0


def is_card_number(digits: str) -> bool:
    """A real issuer's prefix, a length that issuer uses, and the Luhn check digit."""
    length = len(digits)
    for chars in _CARD_PREFIX_CHARS:
        lengths = _CARD_PREFIXES.get(digits[:chars])
        if lengths is not None and length in lengths:
            return luhn_ok(digits)
    return False


def find_card_number(text: str) -> Found | None:
    """Whole digit groups (split by single spaces or dashes) that form a card number.

    Every window of consecutive groups of a run is tried, so a number preceded or followed by
    another group (a reference, an expiry, a CVC: "4242 4242 4242 4242 123") is still found.
    """
    return _find_card_number(text) if _DENSE_DIGITS.search(text) else None


def _find_card_number(text: str) -> Found | None:
    for run in _DIGIT_RUN.finditer(text):
        start, end = run.span()
        if end - start < CARD_DIGITS_MIN:
            continue
        chunk = run.group()
        compact = _NOT_DIGIT.sub("", chunk)
        if len(compact) <= CARD_DIGITS_MAX and is_card_number(compact):
            return Found("card_number", start, end)
        found = _card_in_groups(chunk, start)
        if found is not None:
            return found
    return None


def _card_in_groups(chunk: str, offset: int) -> Found | None:
    """A card number made of some consecutive whole groups of a longer run."""
    groups = [(group.start(), group.end()) for group in _DIGIT_GROUP.finditer(chunk)]
    for first, (start, _) in enumerate(groups):
        digits = ""
        for group_start, group_end in groups[first:]:
            digits += chunk[group_start:group_end]
            if len(digits) > CARD_DIGITS_MAX:
                break
            if len(digits) >= CARD_DIGITS_MIN and is_card_number(digits):
                return Found("card_number", offset + start, offset + group_end)
    return None


# Keyword formats -------------------------------------------------------------------------------


def find_provider_key(text: str) -> Found | None:
    return _find_provider_key(text) if _TOKEN_RUN.search(text) else None


def _find_provider_key(text: str) -> Found | None:
    match = _PROVIDERS.search(text)
    if match is None or match.lastgroup is None:
        return None
    return Found(match.lastgroup, match.start(), match.end())


def find_azure_secret(text: str) -> Found | None:
    match = _AZURE_SECRET.search(text) if "Q~" in text else None
    return Found("azure_client_secret", match.start(), match.end()) if match else None


def find_pem_block(text: str) -> Found | None:
    match = _PEM.search(text) if "-----BEGIN" in text else None
    return Found("pem_block", match.start(), match.end()) if match else None


def find_bearer_token(text: str) -> Found | None:
    match = _BEARER.search(text) if ("earer" in text or "EARER" in text) else None
    return Found("bearer_token", match.start(), match.end()) if match else None


def find_basic_credentials(text: str) -> Found | None:
    """`Basic <base64>` whose base64 decodes to printable `user:password` (not to JSON, as the
    first segment of a JWT does)."""
    if "asic" not in text and "ASIC" not in text:
        return None
    for match in _BASIC.finditer(text):
        token = match.group(1)
        try:
            decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
            credentials = decoded.decode("utf-8")
        except (binascii.Error, ValueError):
            continue
        if ":" in credentials and credentials.isprintable() and credentials[0] != "{":
            return Found("basic_auth", match.start(), match.end())
    return None


def find_url_password(text: str) -> Found | None:
    """`//user:password@` in a URL written in free text; the span is the user information."""
    match = _URL_PASSWORD.search(text) if ("//" in text and "@" in text) else None
    return Found("url_password", match.start() + 2, match.end() - 1) if match else None


# Nothing shorter than this holds a secret value, except `//u:p@` (a `Basic` header this short
# carries a one-letter user and password).
_DENSE_CHARS_MIN = 12
_KEYWORD_DETECTORS = (find_pem_block, find_azure_secret, find_bearer_token, find_basic_credentials)


def find_value_secret(text: str) -> Found | None:
    """The leftmost secret value in `text`; `has_value_secret` applies the same rules. Text
    that is not ASCII is looked at in NFKC too, so full-width digits or letters hide nothing
    (positions are then those of the normalised text)."""
    found = _find_value_secret(text)
    if found is None and not text.isascii():
        found = _find_value_secret(unicodedata.normalize("NFKC", text))
    return found


def _find_value_secret(text: str) -> Found | None:
    found = [find_url_password(text)]
    if len(text) >= _DENSE_CHARS_MIN:
        found.extend(detect(text) for detect in _KEYWORD_DETECTORS)
        if _TOKEN_RUN.search(text):
            found.append(_find_provider_key(text))
        if _DENSE_DIGITS.search(text):
            found.append(_find_card_number(text))
    return min((f for f in found if f is not None), key=lambda f: f.start, default=None)


def has_value_secret(text: str) -> bool:
    """Whether `text` holds any secret value: `find_value_secret(text) is not None`, faster.

    The guards are inlined: ordinary short prose costs a length check and a few `in` tests.
    """
    if _has_value_secret(text):
        return True
    return not text.isascii() and _has_value_secret(unicodedata.normalize("NFKC", text))


def _has_value_secret(text: str) -> bool:
    if "@" in text and find_url_password(text):
        return True
    if len(text) < _DENSE_CHARS_MIN:  # shorter than every other format
        return False
    if _TOKEN_RUN.search(text) and _find_provider_key(text):
        return True
    if _DENSE_DIGITS.search(text) and _find_card_number(text):
        return True
    return bool(
        ("-----BEGIN" in text and find_pem_block(text))
        or ("Q~" in text and find_azure_secret(text))
        or (("earer" in text or "EARER" in text) and find_bearer_token(text))
        or (("asic" in text or "ASIC" in text) and find_basic_credentials(text))
    )


# Every kind the detectors above report.
VALUE_KINDS: tuple[str, ...] = (
    "card_number",
    *(kind for kind, _ in PROVIDER_FORMATS),
    "azure_client_secret",
    "pem_block",
    "bearer_token",
    "basic_auth",
    "url_password",
)
