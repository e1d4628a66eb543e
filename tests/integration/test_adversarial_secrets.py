"""Adversarial tests, class 2 of issue 12: secrets never enter storage.

The attacker (or a careless agent) puts card numbers, provider API keys, tokens, PEM blocks,
paywarden's own keys and key-named secrets (`pin`, `cvv`, `seed`, ...) into every field it
controls: free text, metadata values and keys, the recipient's URL (query, fragment, userinfo,
path), identifiers (session id, category, rail, idempotency key, action), REST bodies and
headers, MCP arguments, and requests that wait for a human approval. Then every byte of the
SQLite file and its -wal/-shm is searched (the audit log, approvals, payments, the webhook
outbox and the REST idempotency table all live there), and `approvals show` is read.

The secret values are assembled from parts so that this file itself does not look like a leak.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from adversarial_support import REFUSED, RecordingRail, leaks, table_state
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_support import Gateway, open_gateway

from paywarden import FrozenClock, Warden
from paywarden.adapters.notify.webhook import WebhookOptions
from paywarden.admission import digest_key
from paywarden.audit.canonical import canonical_text
from paywarden.audit.redact import REDACTED
from paywarden.entrypoints.cli.main import cli
from paywarden.errors import IdempotencyConflictError, InvalidIntentError, InvalidRecipientError
from support.audit import audit_count, bodies, new_entries
from support.intents import intent_body, intent_builder
from support.ledger_file import rows
from support.mcp import mcp_call, tool_text
from support.wardens import OpenWarden, no_sleep

START = "2026-01-05T12:00:00+00:00"
POLICY = """
currency: USD
rules:
  - {id: review, effect: require_approval, actions: ["payments.*"], amount: {gt: 100}}
  - {id: pay, effect: allow, actions: ["payments.*"]}
"""
_A36 = "Zq8pL2mN4rT6vX1bC3dF5gH7jK9wY0sA2eU4"
# kind -> a value of that kind, each recognised by the redactor (docs/redaction.md).
CATALOGUE: dict[str, str] = {
    "visa": "4242 4242 4242 4242",
    "visa-dashes": "4000-0566-5566-5556",
    "mastercard": "5555555555554444",
    "mastercard-2series": "2223003122003222",
    "amex": "3782 822463 10005",
    "discover": "6011111111111117",
    "jcb": "3530111333300000",
    "diners": "3056930009020004",
    "unionpay": "6200000000000005",
    "stripe-live": "sk_" + "live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "stripe-test": "sk_" + "test_" + "26PHem9AhJZvU623DfE1x4sd",
    "stripe-restricted": "rk_" + "live_" + "51H8qZk2eZvKYlo2C0aBcDeF",
    "stripe-webhook": "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "openai": "sk-" + "proj-" + "Ab3dEfGhIjKlMnOpQrStUvWx9",
    "openai-legacy": "sk-" + "T3BlbkFJ" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6",
    "anthropic": "sk-" + "ant-api03-" + "Xy9_Zw8-Vu7Ts6Rq5Po4Nm3Lk2Jh1Gf0",
    "github": "ghp" + "_" + _A36,
    "github-pat": "github" + "_pat_" + "11ABCDEFG0123456789_abcdefghijkl",
    "gitlab": "glpat" + "-" + "xYz12AbC34dEf56GhI78jK",
    "slack": "xoxb" + "-" + "123456789012-1234567890123-AbCdEfGhIjKl",
    "slack-webhook": "https://hooks.slack.com/services/T0001/B0002/" + "XXXXyyyyZZZZ0000wwww1111",
    "aws": "AKIA" + "IOSFODNN7EXAMPLE",
    "google": "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
    "jwt": "eyJhbGciOiJIUzI1NiJ9"
    + ".eyJzdWIiOiJhZ2VudCJ9"
    + ".dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "bearer": "Bearer " + "a1b2c3d4e5f6g7h8i9j0",
    "pem": "-----BEGIN RSA " + "PRIVATE KEY----- MIIEowIBAAKCAQEAzQ7",
    "paywarden-live": "pw_" + "live_" + "0a1b2c3d4e5f_" + "0123456789abcdef" * 3,
    "paywarden-staging-eu": "pw_" + "staging-eu_" + "a0b1c2d3e4f5_" + "fedcba9876543210" * 3,
    "paywarden-dev": "pw_" + "dev_" + "0f1e2d3c4b5a_" + "00112233445566778899aabb" * 2,
}
# Secrets that fit an identifier (letters, digits and `._:@/-`): the ones an agent could pass
# as a session id, category, rail or idempotency key.
IDENTIFIER_SHAPED = [
    "stripe-live",
    "stripe-webhook",
    "github",
    "gitlab",
    "slack",
    "aws",
    "google",
    "jwt",
    "paywarden-live",
    "paywarden-staging-eu",
]
# Category and rail are lower-cased before the secret check: these formats stay recognisable
# in lower case. AWS ids, Google keys and JWTs do not (see the pinned bypass at the end).
CASE_FOLDED_FIELDS = ("category", "rail")
FOLD_SAFE = [kind for kind in IDENTIFIER_SHAPED if kind not in ("aws", "google", "jwt")]
IDENTIFIER_CASES = [
    (field, kind)
    for field in ("session_id", "idempotency_key", *CASE_FOLDED_FIELDS)
    for kind in (FOLD_SAFE if field in CASE_FOLDED_FIELDS else IDENTIFIER_SHAPED)
]
# Secret by key name only: the values are ordinary, so they are made distinctive to be found.
KEY_NAMED = {
    "pin": "zqpin4821zq",
    "cvv": "zqcvv913zq",
    "cvc2": "zqcvc2zq",
    "passphrase": "zq correct horse battery staple zq",
    "seed": "zq abandon ability able about above absent zq",
    "seed_phrase": "zq legal winner thank year wave sausage zq",
    "mnemonic": "zq zoo zoo zoo zoo zoo zoo wrong zq",
    "private_key": "zqprivkeyzq",
    "privateKey": "zqprivkey2zq",
    "password": "zqhunter2zq",
    "db_passwd": "zqdbpasswdzq",
    "cardNumber": "zqcardnumberzq",
    "x-api-key": "zqapikeyzq",
    "clientSecret": "zqclientsecretzq",
    "Authorization": "zqauthorizationzq",
    "access_token": "zqaccesstokenzq",
    "otp": "zqotpzq",
    "ssn": "zqssnzq",
}
# Look like secrets to a naive scrubber, but are ordinary data: kept exactly.
ORDINARY_METADATA: dict[str, str | int | bool | None] = {
    "author": "Jane Doe",
    "authority": "finance",
    "pinned": "yes",
    "spinach": "green",
    "seedling": "small",
    "secretary": "Sam",
    "passport_country": "FR",
    "tokens_used": 1234,
    "max_tokens": 4096,
    "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5",
    "idempotency_key": "order-77",
    "order_id": "1000000000000009",  # Luhn-valid, but no issuer starts with 1
    "invoice": "INV-2024-000123",
    "phone": "+1 415 555 0100",
}


def _needles(secret: str) -> list[str]:
    """The secret as written, without separators, and its distinctive tail."""
    needles = {secret, secret.replace(" ", "").replace("-", "")}
    if secret.startswith(("Bearer ", "-----BEGIN")):
        needles.add(secret.split()[-1])
    return sorted(needles)


def _luhn_digit(body: str) -> str:
    """The check digit that makes `body + digit` pass the Luhn test (independent of paywarden)."""
    total = 0
    for index, char in enumerate(reversed(body)):
        value = int(char)
        if index % 2 == 0:
            value = value * 2 - 9 if value * 2 > 9 else value * 2
        total += value
    return str((10 - total % 10) % 10)


_intent = intent_builder("10.00")


def _warden(open_warden: OpenWarden, policy: str = POLICY, **options: Any) -> Warden:
    return open_warden(policy, rails={"sandbox": RecordingRail()}, sleep=no_sleep, **options)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    with open_gateway(tmp_path, POLICY) as opened:
        yield opened


# Free text and metadata: redacted at the boundary, through approvals and the outbox -------------


@pytest.mark.parametrize("kind", sorted(CATALOGUE))
def test_a_secret_in_free_text_and_metadata_is_stored_nowhere(
    kind: str, open_warden: OpenWarden, database: Path
) -> None:
    secret = CATALOGUE[kind]
    webhook = WebhookOptions(url="http://127.0.0.1:9/hook", secret="whk", poll_seconds=3600)
    with _warden(open_warden, webhook=webhook) as warden:
        warden.add_operator("alice", name="Alice")
        fields: dict[str, Any] = {
            "purpose": f"pay with {secret} now",
            "recipient_name": f"Vendor ({secret})",
            "metadata": {"note": f"use {secret}", "ref": "FIN-42", **ORDINARY_METADATA},
        }
        paid = warden.pay(_intent(**fields))
        assert paid.state == "settled"
        pending = warden.authorize(_intent("500.00", **fields))
        assert pending.outcome == "require_approval" and pending.approval_id
        shown = warden.approval(pending.approval_id).to_dict()
        intent = shown["intent"]
        assert isinstance(intent, dict)
        assert intent["purpose"] == intent["recipient_name"] == REDACTED
        assert intent["metadata"] == {"note": REDACTED, "ref": "FIN-42", **ORDINARY_METADATA}
        warden.approve(pending.approval_id, operator="alice", reason="checked")
        used = warden.pay(_intent("500.00", **fields))  # the same details, so the same digest
        assert (used.decision.reason_code, used.state) == ("approved", "settled")
        outbox = [body for (body,) in rows(database, "SELECT body FROM outbox")]
        assert len(outbox) >= 2  # requested and decided events were queued
    for needle in _needles(secret):
        assert needle not in json.dumps(shown)
        assert not any(needle in body for body in outbox)
    assert leaks(database, _needles(secret)) == []


def test_key_named_secrets_are_redacted_and_ordinary_words_are_not(
    open_warden: OpenWarden, database: Path
) -> None:
    metadata: dict[str, Any] = {**KEY_NAMED, **ORDINARY_METADATA}
    purpose = "Order 1000000000000009 for the author; pinned; ref 2024-01-15 12:30"
    with _warden(open_warden) as warden:
        decision = warden.authorize(_intent(purpose=purpose, metadata=metadata))
        assert decision.outcome == "allow"
    (body,) = bodies(database, "decision")
    stored = body["intent"]["metadata"]
    assert {key: stored[key] for key in KEY_NAMED} == dict.fromkeys(KEY_NAMED, REDACTED)
    assert {key: stored[key] for key in ORDINARY_METADATA} == ORDINARY_METADATA
    assert body["intent"]["purpose"] == purpose
    assert body["redacted"] == sorted(f"$.intent.metadata.{key}" for key in KEY_NAMED)
    secrets = list(KEY_NAMED.values())
    assert leaks(database, secrets) == []
    plain_hashes = [hashlib.sha256(value.encode()).hexdigest() for value in secrets]
    assert leaks(database, plain_hashes) == []


# Identifiers never carry a secret: refused, audited, not stored -------------------------------


@pytest.mark.parametrize(("field", "kind"), IDENTIFIER_CASES)
def test_a_secret_in_an_identifier_is_refused_audited_and_not_stored(
    field: str, kind: str, open_warden: OpenWarden, database: Path
) -> None:
    secret = CATALOGUE[kind]
    with _warden(open_warden) as warden:
        state = table_state(database)
        before = audit_count(warden)
        with pytest.raises(InvalidIntentError) as refused:
            warden.pay(_intent(**{field: secret}))
        assert refused.value.decision_id is not None
        (entry,) = new_entries(warden, before)
        assert (entry.kind, entry.ref_id) == (REFUSED, refused.value.decision_id)
        # Recorded redacted (the idempotency key is not part of a refusal record at all).
        assert json.loads(entry.body)["intent"].get(field, REDACTED) == REDACTED
        assert table_state(database) == state
    assert leaks(database, [*_needles(secret), secret.lower()]) == []


@pytest.mark.parametrize("kind", ["stripe-live", "stripe-restricted", "paywarden-live"])
def test_a_secret_as_the_action_is_refused(
    kind: str, open_warden: OpenWarden, database: Path
) -> None:
    secret = CATALOGUE[kind]
    with _warden(open_warden) as warden, pytest.raises(InvalidIntentError):
        warden.authorize(_intent(action=secret.upper()))
    assert leaks(database, [secret, secret.lower(), secret.upper()]) == []


# Secrets in the recipient: a URL's query, fragment, userinfo, path, or the payee itself -------

RECIPIENT_CASES = [
    ("https://vendor.example.com/pay?api_key=zqQuerySecret123", "zqQuerySecret123", 200),
    ("https://vendor.example.com/pay?ref={stripe-live}", "{stripe-live}", 200),
    ("https://vendor.example.com/pay?x=1&password=zqPw9876&y=2", "zqPw9876", 200),
    ("vendor.example.com/pay#access_token={jwt}", "{jwt}", 200),
    ("https://vendor.example.com/cb?sig=zqSigValue55", "zqSigValue55", 200),
    ("https://vendor.example.com/{stripe-live}", "{stripe-live}", 422),
    ("https://vendor.example.com/4242424242424242", "4242424242424242", 422),
    ("https://u:{github}@vendor.example.com/", "{github}", 422),
    ("https://{stripe-live}@vendor.example.com/", "{stripe-live}", 422),
    ("https://user:zqUserinfoPw1@vendor.example.com/", "zqUserinfoPw1", 422),
    ("{paywarden-live}", "{paywarden-live}", 422),
    ("4242 4242 4242 4242", "4242 4242 4242 4242", 422),
    ("billing+{stripe-live}@vendor.example.com", "{stripe-live}", 422),
]


def _fill(text: str) -> str:
    for kind, secret in CATALOGUE.items():
        text = text.replace("{" + kind + "}", secret)
    return text


@pytest.mark.parametrize(("recipient", "secret", "status"), RECIPIENT_CASES, ids=repr)
def test_a_secret_in_the_recipient_is_stored_nowhere_via_rest(
    gateway: Gateway, recipient: str, secret: str, status: int
) -> None:
    recipient, secret = _fill(recipient), _fill(secret)
    before = audit_count(gateway.warden)
    answer = gateway.client.post(
        "/v1/authorizations", json=intent_body(recipient=recipient), headers=gateway.auth("agent-a")
    )
    assert answer.status_code == status, answer.text
    (entry,) = new_entries(gateway.warden, before)
    assert entry.kind == ("decision" if status == 200 else REFUSED)
    kept = json.loads(entry.body)["intent"]["recipient_original" if status == 200 else "recipient"]
    assert REDACTED in kept  # the raw text is kept for the record, scrubbed
    assert leaks(gateway.database, _needles(secret)) == []


def test_a_secret_in_the_recipient_is_stored_nowhere_via_mcp(
    open_warden: OpenWarden, database: Path
) -> None:
    with _warden(open_warden) as warden:
        key, _ = warden.create_key(role="agent", agent="agent-a", actor="test")
        for recipient, secret, status in RECIPIENT_CASES:
            result = mcp_call(
                warden, key, "request_payment", intent_body(recipient=_fill(recipient))
            )
            assert result.is_error == (status == 422), tool_text(result)
            assert _fill(secret) not in tool_text(result) or status == 422
        listed = mcp_call(warden, key, "list_my_payments", {})
    assert not listed.is_error
    for _, secret, _ in RECIPIENT_CASES:
        assert _fill(secret) not in tool_text(listed)
        assert leaks(database, _needles(_fill(secret))) == []


# REST bodies and MCP arguments -----------------------------------------------------------------


def test_rest_idempotency_with_secrets_replays_refuses_a_changed_secret_and_stores_no_plain_hash(
    gateway: Gateway,
) -> None:
    visa, mastercard = CATALOGUE["visa"], CATALOGUE["mastercard"]
    body = intent_body(purpose=f"card {visa}", metadata={"pin": "zqpin1111zq", "ref": "A-1"})
    headers = gateway.auth("agent-a", **{"Idempotency-Key": "order-7"})
    first = gateway.client.post("/v1/payments", json=body, headers=headers)
    assert first.status_code == 200 and first.json()["state"] == "settled"
    again = gateway.client.post("/v1/payments", json=body, headers=headers)
    assert again.headers.get("Idempotent-Replayed") == "true" and again.content == first.content
    changed = intent_body(purpose=f"card {mastercard}", metadata=body["metadata"])
    conflict = gateway.client.post("/v1/payments", json=changed, headers=headers)
    assert (conflict.status_code, conflict.json()["code"]) == (422, "idempotency_key_reused")
    pin_changed = {**body, "metadata": {"pin": "zqpin2222zq", "ref": "A-1"}}
    conflict = gateway.client.post("/v1/payments", json=pin_changed, headers=headers)
    assert conflict.status_code == 422
    assert len(gateway.warden.payments()) == 1
    [(stored,)] = rows(gateway.database, "SELECT fingerprint FROM idempotency_keys")
    plain = hashlib.sha256(
        json.dumps(["POST", "/v1/payments", body], sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    assert stored != plain  # not a plain SHA-256
    secrets = [visa, mastercard, "zqpin1111zq", "zqpin2222zq"]
    assert leaks(gateway.database, [n for s in secrets for n in _needles(s)]) == []


def test_library_idempotency_compares_secrets_by_a_keyed_hmac_only(
    open_warden: OpenWarden, database: Path
) -> None:
    visa, amex = CATALOGUE["visa"], CATALOGUE["amex"]
    with _warden(open_warden) as warden:
        first = warden.authorize(_intent(purpose=f"card {visa}", idempotency_key="k-1"))
        replay = warden.authorize(_intent(purpose=f"card {visa}", idempotency_key="k-1"))
        assert replay.replayed and replay.hold_id == first.hold_id
        with pytest.raises(IdempotencyConflictError):
            warden.authorize(_intent(purpose=f"card {amex}", idempotency_key="k-1"))
        digest = warden.admit(_intent(purpose=f"card {visa}")).secret_digest
        server_secret = warden.server_secret()
    free: dict[str, object] = {"purpose": f"card {visa}", "recipient_name": None, "metadata": {}}
    text = canonical_text([free, None]).encode("utf-8")
    assert digest == hmac.new(digest_key(server_secret), text, hashlib.sha256).hexdigest()
    assert digest != hashlib.sha256(text).hexdigest()
    (body,) = bodies(database, "decision")
    assert body["intent"]["secret_digest"] == digest
    plain = [hashlib.sha256(s.encode()).hexdigest() for s in (visa, visa.replace(" ", ""))]
    assert leaks(database, [*_needles(visa), *_needles(amex), *plain]) == []


def test_secrets_in_mcp_arguments_are_redacted_or_refused(
    open_warden: OpenWarden, database: Path
) -> None:
    token, card = CATALOGUE["github"], CATALOGUE["jcb"]
    with _warden(open_warden) as warden:
        key, _ = warden.create_key(role="agent", agent="agent-a", actor="test")
        paid = mcp_call(
            warden,
            key,
            "request_payment",
            intent_body(
                purpose=f"token {token}",
                recipient_name=f"card {card}",
                metadata={"seed": "zq zoo zoo wrong zq", "ticket": "T-9"},
            ),
        )
        assert not paid.is_error and paid.structured_content
        assert paid.structured_content["status"] == "paid"
        before = audit_count(warden)
        refused = mcp_call(warden, key, "request_payment", intent_body(session_id=token))
        assert refused.is_error and tool_text(refused).startswith("invalid_intent: ")
        assert [entry.kind for entry in new_entries(warden, before)] == [REFUSED]
        refused = mcp_call(warden, key, "request_payment", intent_body(idempotency_key=token))
        assert refused.is_error
    assert leaks(database, [*_needles(token), *_needles(card), "zq zoo zoo wrong zq"]) == []


def test_approvals_show_prints_redacted_fields(open_warden: OpenWarden, database: Path) -> None:
    secret = CATALOGUE["anthropic"]
    with open_warden(POLICY, clock=None, sleep=no_sleep) as warden:  # the CLI's system clock
        pending = warden.authorize(
            _intent("500.00", purpose=f"key {secret}", metadata={"cvv": "zqcvv777zq"})
        )
        assert pending.approval_id
    shown = CliRunner().invoke(
        cli, ["approvals", "show", pending.approval_id, "--database", str(database)]
    )
    assert shown.exit_code == 0, shown.output
    intent = json.loads(shown.output)["intent"]
    assert (intent["purpose"], intent["metadata"]["cvv"]) == (REDACTED, REDACTED)
    assert secret not in shown.output and "zqcvv777zq" not in shown.output
    assert leaks(database, [secret, "zqcvv777zq"]) == []


# Properties: generated secrets of every shape, embedded in prose ------------------------------

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_ISSUERS = [("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15)]
_ISSUERS += [("6011", 16), ("3528", 16), ("62", 16), ("36", 14), ("4", 19)]


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    prefix, length = draw(st.sampled_from(_ISSUERS))
    middle = draw(st.text(alphabet="0123456789", min_size=length - len(prefix) - 1).filter(bool))
    body = (prefix + middle)[: length - 1]
    body = body.ljust(length - 1, "0")
    digits = body + _luhn_digit(body)
    style = draw(st.sampled_from(["plain", "spaces", "dashes"]))
    if style == "plain":
        return digits
    groups = [digits[index : index + 4] for index in range(0, len(digits), 4)]
    return (" " if style == "spaces" else "-").join(groups)


@st.composite
def provider_keys(draw: st.DrawFn) -> str:
    def alnum(low: int, high: int) -> str:
        return draw(st.text(alphabet=_ALNUM, min_size=low, max_size=high))

    shape = draw(st.sampled_from(["stripe", "github", "aws", "google", "slack", "pw", "jwt"]))
    if shape == "stripe":
        prefix = draw(st.sampled_from(["sk", "rk", "pk"])) + "_"
        return prefix + draw(st.sampled_from(["live_", "test_"])) + alnum(10, 40)
    if shape == "github":
        return draw(st.sampled_from(["ghp_", "gho_", "ghs_"])) + alnum(36, 40)
    if shape == "aws":
        upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
        return "AKIA" + draw(st.text(alphabet=upper, min_size=16, max_size=16))
    if shape == "google":
        return "AIza" + draw(st.text(alphabet=_ALNUM + "_-", min_size=35, max_size=35))
    if shape == "slack":
        return "xoxb-" + alnum(10, 30)
    if shape == "pw":
        tag = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1))
        hexdigits = "0123456789abcdef"
        return (
            f"pw_{tag[:32]}_"
            + draw(st.text(alphabet=hexdigits, min_size=12, max_size=12))
            + "_"
            + draw(st.text(alphabet=hexdigits, min_size=48, max_size=48))
        )
    return "eyJ" + alnum(10, 30) + "." + alnum(0, 30)


_PROSE = st.text(alphabet="abcdefghij klmnop,;()!", max_size=30)


@given(st.one_of(card_numbers(), provider_keys()), _PROSE, _PROSE)
@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
def test_property_a_generated_secret_never_survives_admission(
    secret: str, before: str, after: str
) -> None:
    with Warden.open(POLICY, clock=FrozenClock(START)) as warden:
        text = f"{before} {secret} {after}"
        admitted = warden.admit(
            _intent(purpose=text, recipient_name=text[:256], metadata={"n": text[:512]})
        )
        kept = json.dumps(admitted.canonical(), ensure_ascii=False)
        assert secret not in kept and secret.replace(" ", "").replace("-", "") not in kept
        assert admitted.purpose == REDACTED and admitted.metadata["n"] == REDACTED
        identifier = secret.replace(" ", "-")
        if " " not in secret and not identifier.replace("-", "").isdigit():
            # Token formats are refused in identifiers; a bare digit run is not (it is an
            # order number or a timestamp far more often than a card: see the test below).
            with pytest.raises((InvalidIntentError, InvalidRecipientError)):
                warden.admit(_intent(session_id=identifier))


def test_a_card_like_digit_run_in_a_machine_identifier_is_accepted(open_warden: OpenWarden) -> None:
    """Idempotency keys and session ids are made by machines: a Luhn-valid digit run with an
    issuer prefix is not refused there (a payee, scanned for card numbers, still is)."""
    number = "4242424242424242"
    with _warden(open_warden) as warden:
        decision = warden.authorize(
            _intent(idempotency_key=f"order-{number}", session_id=f"s-{number}")
        )
        assert decision.outcome == "allow"
        with pytest.raises(InvalidRecipientError, match="card_number"):
            warden.authorize(_intent(recipient=number))


@given(
    st.sampled_from(["1", "7", "80", "83", "99"]),
    st.integers(min_value=12, max_value=19),
    st.text(alphabet="0123456789", min_size=20, max_size=20),
)
@settings(max_examples=200, deadline=None)
def test_property_numbers_outside_every_issuer_range_are_not_redacted(
    prefix: str, length: int, digits: str
) -> None:
    body = (prefix + digits)[: length - 1]
    number = body + _luhn_digit(body)  # Luhn-valid: only the issuer prefix tells it apart
    with Warden.open(POLICY, clock=FrozenClock(START)) as warden:
        admitted = warden.admit(_intent(purpose=f"order {number}", metadata={"id": number}))
    assert (admitted.purpose, admitted.metadata["id"]) == (f"order {number}", number)
    assert admitted.redacted == ()


# Real leaks found: pinned, strict -----------------------------------------------------------------


def test_a_secret_idempotency_key_header_is_refused_and_not_stored(gateway: Gateway) -> None:
    secret = CATALOGUE["stripe-live"]
    headers = gateway.auth("agent-a", **{"Idempotency-Key": secret})
    answer = gateway.client.post("/v1/payments", json=intent_body(), headers=headers)
    assert answer.status_code == 422 and answer.json()["code"] == "invalid_intent"
    assert leaks(gateway.database, [secret]) == []


@pytest.mark.parametrize(
    "recipient",
    [
        "https://u:{stripe-live}@vendor.example.com/",
        "https://vendor.example.com:99999/?token={stripe-live}",
        "https://vendor.example.com:99999/?password=zqPlainPw42",
    ],
)
def test_a_refused_recipient_is_not_quoted_with_its_secret_in_a_stored_rest_answer(
    gateway: Gateway, recipient: str
) -> None:
    recipient = _fill(recipient)
    secret = CATALOGUE["stripe-live"] if CATALOGUE["stripe-live"] in recipient else "zqPlainPw42"
    headers = gateway.auth("agent-a", **{"Idempotency-Key": "order-9"})
    answer = gateway.client.post(
        "/v1/payments", json=intent_body(recipient=recipient), headers=headers
    )
    assert answer.status_code == 422
    (refused,) = bodies(gateway.database, REFUSED)
    assert secret not in json.dumps(refused)  # the audit entry itself is clean...
    assert leaks(gateway.database, [secret]) == []  # ...but the stored REST answer is not


def test_a_secret_as_a_metadata_key_is_refused_and_not_stored(
    open_warden: OpenWarden, database: Path
) -> None:
    secret = CATALOGUE["stripe-live"]
    with _warden(open_warden) as warden:
        with pytest.raises(InvalidIntentError, match="metadata key looks like a secret"):
            warden.pay(_intent(metadata={secret: "x"}))
        assert [entry.kind for entry in warden.audit_entries()][-1] == "decision.refused"
    assert leaks(database, [secret]) == []


def test_a_policy_pattern_secret_is_not_quoted_in_a_refusal_reason(
    open_warden: OpenWarden, database: Path
) -> None:
    policy = POLICY + "redaction:\n  value_patterns: ['EMP-[0-9]{6}']\n"
    with _warden(open_warden, policy) as warden:
        key, _ = warden.create_key(role="agent", agent="agent-a", actor="test")
        admitted = warden.admit(_intent(purpose="employee EMP-123456"))
        assert admitted.purpose == REDACTED  # the pattern is in force for free text
        result = mcp_call(
            warden,
            key,
            "request_payment",
            intent_body(recipient="https://vendor.example.com:99999/EMP-654321"),
        )
        assert result.is_error
    assert leaks(database, ["EMP-654321"]) == []


def test_an_upper_case_secret_in_a_folded_identifier_is_refused(
    open_warden: OpenWarden, database: Path
) -> None:
    aws = CATALOGUE["aws"]
    attempts = [
        {"category": aws},
        {"rail": aws},
        {"action": aws},
        {"recipient": f"billing+{aws}@vendor.example.com"},
    ]
    with _warden(open_warden) as warden:
        for changes in attempts:
            try:
                warden.authorize(_intent(**changes))
            except (InvalidIntentError, InvalidRecipientError):
                continue  # refused: what should happen to each of them
    assert leaks(database, [aws.lower()]) == []


def test_a_secret_in_an_agents_refund_reason_is_not_stored(gateway: Gateway) -> None:
    card = CATALOGUE["visa"]
    paid = gateway.client.post(
        "/v1/payments",
        json=intent_body(),
        headers=gateway.auth("agent-a", **{"Idempotency-Key": "p-1"}),
    )
    payment_id = paid.json()["payment"]["payment_id"]
    refund = gateway.client.post(
        f"/v1/payments/{payment_id}/refund",
        json={"amount": "1.00", "reason": f"card {card}"},
        headers=gateway.auth("agent-a", **{"Idempotency-Key": "r-1"}),
    )
    assert refund.status_code == 200 and refund.json()["state"] == "settled"
    assert leaks(gateway.database, _needles(card)) == []


@pytest.mark.parametrize("separator", ["\u00a0", "\u2009", "  ", "\t", "\n"], ids=repr)
def test_a_card_number_with_other_whitespace_is_not_stored(
    separator: str, open_warden: OpenWarden, database: Path
) -> None:
    card = separator.join(["4242", "4242", "4242", "4242"])
    with _warden(open_warden) as warden:
        assert warden.authorize(_intent(purpose=f"card {card} exp 12/28")).outcome == "allow"
    assert leaks(database, [card]) == []
