"""Canonical encoding, entry hashing and redaction (catalog AU-05, AU-09 in part, IN-09 in part).

Distinct values never share canonical bytes, equal values always do, encoding is stable under a
parse round trip, floats and other ambiguous types are refused, no field boundary can shift
inside the entry hash, and secrets are redacted with their paths listed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import struct
import unicodedata
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from paywarden.audit.canonical import canonical_bytes, canonical_text
from paywarden.audit.chain import DOMAIN, GENESIS_PARENT, entry_hash
from paywarden.audit.records import redact_decision_text
from paywarden.audit.redact import REDACTED, redact

# Canonical encoding -----------------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers() | st.text()
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)


def same(a: Any, b: Any) -> bool:
    """Equality that tells True from 1 (Python's == does not; JSON does)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@given(json_values, json_values)
def test_distinct_values_never_share_canonical_text(a: Any, b: Any) -> None:
    assert (canonical_text(a) == canonical_text(b)) is same(a, b)
    assert (canonical_bytes(a) == canonical_bytes(b)) is same(a, b)


@given(json_values)
def test_encode_parse_encode_is_stable(value: Any) -> None:
    text = canonical_text(value)
    parsed = json.loads(text)
    assert same(parsed, value)
    assert canonical_text(parsed) == text
    assert canonical_bytes(parsed) == text.encode("utf-8")


@given(st.dictionaries(st.text(max_size=8), json_values, min_size=2, max_size=6))
def test_key_order_does_not_change_the_encoding(value: dict[str, Any]) -> None:
    reordered = dict(reversed(list(value.items())))
    assert list(reordered) != list(value)
    assert canonical_text(reordered) == canonical_text(value)


@given(
    st.recursive(
        st.floats(allow_nan=True, allow_infinity=True),
        lambda children: (
            st.lists(children, min_size=1, max_size=3)
            | st.dictionaries(st.text(max_size=4), children, min_size=1, max_size=3)
        ),
        max_leaves=6,
    ),
    json_values,
)
def test_floats_are_refused_at_any_depth(with_floats: Any, other: Any) -> None:
    for value in (with_floats, [other, with_floats], {"ok": other, "amount": with_floats}):
        with pytest.raises(TypeError, match="float"):
            canonical_text(value)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("10.0", "10.00"),
        (unicodedata.normalize("NFC", "Zoë"), unicodedata.normalize("NFD", "Zoë")),
        (True, 1),
        (False, 0),
        (None, "null"),
        ([], {}),
        ("a", ["a"]),
        ({"a": "bc"}, {"ab": "c"}),
        (["ab", "c"], ["a", "bc"]),
        ("1", 1),
    ],
)
def test_values_that_could_be_confused_encode_differently(a: object, b: object) -> None:
    assert canonical_text(a) != canonical_text(b)


def test_equal_values_encode_identically() -> None:
    assert canonical_text(-0) == canonical_text(0) == "0"
    assert canonical_text({"b": 1, "a": [True, None]}) == '{"a":[true,null],"b":1}'
    assert canonical_text(("x", 1)) == canonical_text(["x", 1])
    assert canonical_bytes({"name": "Zoë ☕"}) == '{"name":"Zoë ☕"}'.encode()
    assert canonical_text(10**30) == "1" + "0" * 30  # exact, never a float


@pytest.mark.parametrize(
    "value",
    [
        1.0,
        -0.0,
        float("nan"),
        float("inf"),
        Decimal("10.00"),
        b"bytes",
        {"a", "b"},
        {1: "integer key"},
        {("a",): "tuple key"},
        {"nested": {2: "x"}},
        [object()],
    ],
)
def test_ambiguous_types_are_refused(value: object) -> None:
    with pytest.raises(TypeError):
        canonical_text(value)


def test_a_circular_value_is_refused_not_walked_forever() -> None:
    circular: list[object] = []
    circular.append(circular)
    with pytest.raises(ValueError, match="circular"):
        canonical_text(circular)
    looped: dict[str, object] = {}
    looped["self"] = [looped]
    with pytest.raises(ValueError, match="circular"):
        canonical_text(looped)


def test_nesting_is_bounded_but_ordinary_depth_is_fine() -> None:
    deep: object = "leaf"
    for _ in range(100):
        deep = {"k": [deep]}
    assert canonical_text(deep).count("[") == 100
    for _ in range(100):
        deep = [deep]
    with pytest.raises(ValueError, match="nest deeper"):
        canonical_text(deep)


def test_a_shared_subvalue_is_not_mistaken_for_a_cycle() -> None:
    shared = {"x": [1, 2]}
    assert canonical_text([shared, shared, {"again": shared}]) == (
        '[{"x":[1,2]},{"x":[1,2]},{"again":{"x":[1,2]}}]'
    )


# Entry hashes -----------------------------------------------------------------------------------


def reference_hash(
    parent: str, seq: int, created_us: int, kind: str, ref_id: str, body: str
) -> str:
    """The documented layout, written out independently of the implementation."""
    data = DOMAIN + bytes.fromhex(parent) + struct.pack(">Q", seq) + struct.pack(">q", created_us)
    for field in (kind, ref_id, body):
        encoded = field.encode("utf-8")
        data += len(encoded).to_bytes(4, "big") + encoded
    return hashlib.sha256(data).hexdigest()


def test_the_entry_hash_layout_is_pinned() -> None:
    """Old hashes must stay verifiable: the layout and domain tag never change silently."""
    assert DOMAIN == b"paywarden.audit.v1\x00"
    args = (GENESIS_PARENT, 1, 1_773_154_800_000_000, "decision", "dec_000001", '{"a":1}')
    assert entry_hash(*args) == reference_hash(*args)
    assert entry_hash(*args) == "ef089b5b361fe6529f2d95bf4d2715c06ec1b2791d6836358e545cc4aebcffc7"
    negative = ("ab" * 32, 2**63 - 1, -5, "", "", "")
    assert entry_hash(*negative) == reference_hash(*negative)


@given(
    st.text(max_size=12),
    st.integers(0, 12),
    st.integers(0, 12),
    st.integers(0, 12),
    st.integers(0, 12),
)
def test_no_field_boundary_shift_can_collide(
    text: str, first: int, second: int, other_first: int, other_second: int
) -> None:
    """Splitting one string into (kind, ref_id, body) in two ways gives two hashes."""

    def split(a: int, b: int) -> tuple[str, str, str]:
        a, b = sorted((min(a, len(text)), min(b, len(text))))
        return text[:a], text[a:b], text[b:]

    one, two = split(first, second), split(other_first, other_second)
    assume(one != two)
    assert "".join(one) == "".join(two)
    assert entry_hash(GENESIS_PARENT, 1, 0, *one) != entry_hash(GENESIS_PARENT, 1, 0, *two)


def test_the_boundary_examples_from_the_catalog_differ() -> None:
    base = (GENESIS_PARENT, 7, 1_000)
    assert entry_hash(*base, "ab", "c", "{}") != entry_hash(*base, "a", "bc", "{}")
    assert entry_hash(*base, "k", "ab", "c") != entry_hash(*base, "k", "a", "bc")
    assert entry_hash(*base, "k", "", "ab") != entry_hash(*base, "k", "ab", "")


@given(
    st.sampled_from(["parent", "seq", "created_us", "kind", "ref_id", "body"]),
    st.integers(1, 2**40),
)
def test_every_field_changes_the_hash(field: str, delta: int) -> None:
    fields: dict[str, Any] = {
        "parent": "11" * 32,
        "seq": 42,
        "created_us": 1_773_154_800_000_000,
        "kind": "decision",
        "ref_id": "dec_1",
        "body": '{"amount_minor":2500}',
    }
    changed = dict(fields)
    value = fields[field]
    if isinstance(value, int):
        changed[field] = value + delta
    elif field == "parent":
        changed[field] = f"{(int(value, 16) + delta) % 2**256:064x}"
    else:
        changed[field] = value + str(delta)
    assert entry_hash(*changed.values()) != entry_hash(*fields.values())


# Redaction --------------------------------------------------------------------------------------


def luhn_complete(prefix: str) -> str:
    """`prefix` plus the check digit that makes it pass the Luhn check."""
    for digit in "0123456789":
        candidate = prefix + digit
        total = 0
        for index, char in enumerate(reversed(candidate)):
            value = int(char)
            if index % 2 == 1:
                value = value * 2 - 9 if value > 4 else value * 2
            total += value
        if total % 10 == 0:
            return candidate
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    "key",
    [
        "api_key",
        "apiKey",
        "API-KEY",
        "password",
        "db_passwd",
        "access_token",
        "client_secret",
        "Authorization",
        "auth",
        "session_cookie",
        "card_number",
        "pan",
        "cvv",
        "cvc",
        "private_key",
        "pepper",
        "credential",
        "signature",
    ],
)
def test_secret_looking_keys_are_redacted_wholesale(key: str) -> None:
    value = {"metadata": {key: "harmless-looking-value", "ticket": "FIN-42"}}
    clean, paths = redact(value, "$.intent")
    assert clean == {"metadata": {key: REDACTED, "ticket": "FIN-42"}}
    assert paths == [f"$.intent.metadata.{key}"]


def test_a_secret_key_with_no_value_is_not_listed() -> None:
    assert redact({"api_key": None}) == ({"api_key": None}, [])


@pytest.mark.parametrize(
    "text",
    [
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "use sk_test_abcdefgh12345678 for staging",
        "rk_live_abcdefgh12345678",
        "pk_live_abcdefgh12345678",
        "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
        "-----BEGIN PRIVATE KEY-----\nMIIE...",
        "-----BEGIN EC PRIVATE KEY-----",
        "pw_abcdefghijklmnop_1234",
    ],
)
def test_secret_values_are_redacted_wherever_they_appear(text: str) -> None:
    clean, paths = redact({"purpose": text, "list": ["fine", text]})
    assert clean == {"purpose": REDACTED, "list": ["fine", REDACTED]}
    assert paths == ["$.list[1]", "$.purpose"]


@pytest.mark.parametrize(
    "text",
    [
        "card 4242 4242 4242 4242",
        "4242-4242-4242-4242",
        "4242424242424242",
        "amex 3782 822463 10005 please",
        "visa13 4222222222222",
        "card 4242 4242 4242 4242 123 12/28",  # followed by a CVC group
        "4242 4242 4242 4242 12 28",
        "ref 7 4242 4242 4242 4242",  # preceded by another group
        "pay 5555-5555-5555-4444 now",
    ],
)
def test_card_numbers_are_redacted(text: str) -> None:
    assert redact({"purpose": text}) == ({"purpose": REDACTED}, ["$.purpose"])


@pytest.mark.parametrize(
    "text",
    [
        "4242 4242 4242 4241",  # fails the Luhn check
        "order 123456789012",  # 12 digits
        "amount 120.50 USD",
        "invoice 2026-03-10",
        "call +1 415 555 2671",
        "sk_live_short",  # too short to be a key
        "skip_live_abcdefgh12345678",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact({"purpose": text}) == ({"purpose": text}, [])


# Every issuer's prefix range (IIN) and the lengths it issues. A Luhn-valid number under no
# issuer prefix (an order id starting with 1) is not a card number: tests/unit/test_redaction.py
# checks that side.
CARD_ISSUERS = [
    (4, 4, (13, 16, 19)),
    (51, 55, (16,)),
    (2221, 2720, (16,)),
    (34, 34, (15,)),
    (37, 37, (15,)),
    (300, 305, range(14, 20)),
    (36, 36, range(14, 20)),
    (38, 39, range(14, 20)),
    (3528, 3589, range(16, 20)),
    (6011, 6011, range(16, 20)),
    (644, 649, range(16, 20)),
    (65, 65, range(16, 20)),
    (62, 62, range(16, 20)),
    (2200, 2204, range(16, 20)),
    (50, 50, range(12, 20)),
    (56, 69, range(12, 20)),
    (81, 82, (16,)),
    (9792, 9792, (16,)),
]


@given(
    st.sampled_from([(low, high, n) for low, high, lengths in CARD_ISSUERS for n in lengths]),
    st.data(),
    st.text(alphabet="abcxyz .,:#/", max_size=10),
    st.text(alphabet="abcxyz .,:#/", max_size=10),
)
def test_any_luhn_valid_card_number_is_redacted(
    issuer: tuple[int, int, int], data: st.DataObject, before: str, after: str
) -> None:
    low, high, length = issuer
    prefix = str(data.draw(st.integers(low, high)))
    rest = length - 1 - len(prefix)
    body = prefix + data.draw(st.text(alphabet="0123456789", min_size=rest, max_size=rest))
    number = luhn_complete(body)
    # Split into groups at random points, joined by spaces or dashes.
    cuts = sorted(data.draw(st.sets(st.integers(1, length - 1), max_size=5)))
    pieces = [number[a:b] for a, b in zip([0, *cuts], [*cuts, length], strict=True)]
    separators = data.draw(st.lists(st.sampled_from([" ", "-"]), min_size=len(pieces)))
    grouped = "".join(p + s for p, s in zip(pieces, separators, strict=False))[:-1]
    tail = data.draw(st.sampled_from(["", " 123", " 12/28", "-07"]))
    text = f"{before}x{grouped}{tail}x{after}"
    clean, paths = redact({"purpose": text, "n": 1})
    assert clean == {"purpose": REDACTED, "n": 1}
    assert paths == ["$.purpose"]


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ", max_size=60))
def test_text_without_digits_or_key_prefixes_is_never_redacted(text: str) -> None:
    assert redact({"purpose": text, "items": [text]}) == ({"purpose": text, "items": [text]}, [])


@given(json_values)
def test_redaction_does_not_mutate_its_input_and_is_idempotent(value: Any) -> None:
    original = copy.deepcopy(value)
    clean, paths = redact(value, "$.x")
    assert same(value, original)
    again, _ = redact(clean, "$.x")
    assert same(again, clean)
    assert paths == sorted(paths)
    assert all(path.startswith("$.x") for path in paths)


def test_redacted_paths_are_sorted_and_nested() -> None:
    value = {
        "z": ["ok", {"password": "hunter2"}],
        "a": {"b": "card 4242424242424242"},
        "m": "sk_live_abcdefgh12345678",
    }
    clean, paths = redact(value)
    assert paths == ["$.a.b", "$.m", "$.z[1].password"]
    assert clean == {"z": ["ok", {"password": REDACTED}], "a": {"b": REDACTED}, "m": REDACTED}


def test_decision_text_is_scrubbed_without_touching_the_original() -> None:
    decision: dict[str, object] = {
        "outcome": "deny",
        "reason": "rule `r` failed: 'sk_live_abcdefgh12345678(' not a valid regex; denied",
        "trace": {
            "rules": [
                {"rule_id": "r", "error": "'sk_live_abcdefgh12345678(' not a valid regex"},
                {"rule_id": "ok", "error": None},
                {"rule_id": "e", "error": "division by zero"},
            ],
            "budgets": [],
        },
    }
    original = copy.deepcopy(decision)
    clean, paths = redact_decision_text(decision)
    assert decision == original
    assert paths == ["$.decision.reason", "$.decision.trace.rules[0].error"]
    assert clean["reason"] == REDACTED
    trace = clean["trace"]
    assert isinstance(trace, dict)
    assert [rule["error"] for rule in trace["rules"]] == [REDACTED, None, "division by zero"]
    assert redact_decision_text(original | {"reason": "fine"})[1] == [
        "$.decision.trace.rules[0].error"
    ]
    harmless: dict[str, object] = {"outcome": "allow", "reason": "allowed", "trace": {"rules": []}}
    assert redact_decision_text(harmless) == (harmless, [])
