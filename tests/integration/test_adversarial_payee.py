"""Adversarial tests, class 1 of issue 12: one payee, one canonical identity, used everywhere.

The attacker is a prompt-injected agent that wants money to reach a payee the policy denies, or
a payee no rule saw. It spells the denied host every way a browser or HTTP client still reaches
it (case, trailing and ideographic dots, full-width letters, ports, paths, scheme-less and
half-written URLs, backslashes, percent-encoding, IDNA, every `inet_aton` notation, IPv4-mapped
IPv6), hides a host behind `user@`, changes the case of case-sensitive rail ids, and splits its
spending over spellings to stretch per-recipient budgets.

Method: real Wardens on SQLite files, a recording rail wrapping the real sandbox (it notes the
exact payee it is asked to pay), the REST app through TestClient and the MCP server through
the SDK's in-process client. Hypothesis generates spellings, IPv4 notations and arbitrary
recipient texts.
"""

from __future__ import annotations

import ipaddress
import json
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from adversarial_support import RecordingRail
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from rest_support import Gateway, open_gateway

from paywarden import FrozenClock, PaymentIntent, Warden
from paywarden.errors import InvalidRecipientError
from paywarden.payee import Payee, eip55, parse_payee
from paywarden.policy.recipients import GLOB_CHARS, compile_patterns
from paywarden.testing import example_intent
from support.audit import audit_count, bodies, new_entries
from support.intents import intent_body
from support.mcp import mcp_call, tool_text
from support.wardens import grant_request, no_sleep

START = "2026-01-05T12:00:00+00:00"
CHECKSUMMED = "0x52908400098527886E0F7030069857D2E4169EE7"  # an EIP-55 test vector
POLICY = f"""
currency: USD
rules:
  - id: deny-host
    effect: deny
    recipients: ["evil.example", "bücher.example", "10.1.2.3", "2001:db9::dead"]
  - id: deny-subdomains
    effect: deny
    recipients: ["*.evil.example"]
  - id: deny-networks
    effect: deny
    recipients: ["127.0.0.0/8", "2001:db8::/32", "::ffff:192.168.0.0/112"]
  - id: deny-ids
    effect: deny
    recipients: ["acct_1EvilAcct", "{CHECKSUMMED}", "evil-vendor"]
  - id: allow-good
    effect: allow
    actions: ["payments.*"]
    recipients: ["good.example", "*.good.example", "acct_1AbC"]
"""
HOSTILE_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# (spelling, identity it must resolve to, the deny rule that must catch it)
DENIED: list[tuple[str, str, str]] = [
    ("evil.example", "evil.example", "deny-host"),
    ("EVIL.EXAMPLE", "evil.example", "deny-host"),
    ("Evil.Example.", "evil.example", "deny-host"),
    ("evil.example..", "evil.example", "deny-host"),
    ("ｅｖｉｌ．ｅｘａｍｐｌｅ", "evil.example", "deny-host"),
    ("evil。example", "evil.example", "deny-host"),
    ("evil｡example", "evil.example", "deny-host"),
    ("evil.example:443", "evil.example", "deny-host"),
    ("evil.example:8443", "evil.example", "deny-host"),
    ("evil.example:", "evil.example", "deny-host"),
    ("evil.example/", "evil.example", "deny-host"),
    ("evil.example/pay?invoice=1#top", "evil.example", "deny-host"),
    ("evil.example\\pay", "evil.example", "deny-host"),
    ("evil.example.:8443/x", "evil.example", "deny-host"),
    ("//evil.example", "evil.example", "deny-host"),
    ("//EVIL.example:8443/x", "evil.example", "deny-host"),
    ("\\\\evil.example\\x", "evil.example", "deny-host"),
    ("http:evil.example", "evil.example", "deny-host"),
    ("https:evil.example", "evil.example", "deny-host"),
    ("HTTP:evil.example", "evil.example", "deny-host"),
    ("https:/evil.example", "evil.example", "deny-host"),
    ("https:\\\\evil.example", "evil.example", "deny-host"),
    ("HTTPS://EVIL.EXAMPLE:443/", "evil.example", "deny-host"),
    ("http://evil.example:80/a/../b", "evil.example", "deny-host"),
    ("https://evil.example:0443/", "evil.example", "deny-host"),
    ("https://evil.example./x", "evil.example", "deny-host"),
    ("https://%65vil.example/", "evil.example", "deny-host"),
    ("https://ev%69l.%45xample/", "evil.example", "deny-host"),
    ("https://evil%2eexample/", "evil.example", "deny-host"),
    ("https://evil.exa\u034fmple/", "evil.example", "deny-host"),  # UTS 46 ignores U+034F
    ("https://ＥＶＩＬ．ｅｘａｍｐｌｅ／", "evil.example", "deny-host"),
    ("https://evil.example#@good.example", "evil.example", "deny-host"),
    ("https://evil.example?@good.example", "evil.example", "deny-host"),
    ("https://evil.example\\@good.example", "evil.example", "deny-host"),
    ("evil.example/.good.example", "evil.example", "deny-host"),
    ("https://@evil.example/", "evil.example", "deny-host"),  # empty userinfo: no credentials
    ("https://:@evil.example/", "evil.example", "deny-host"),
    ("mailto:Billing@Evil.Example", "billing@evil.example", "deny-host"),
    ("bob@EVIL.example.", "bob@evil.example", "deny-host"),
    # IDNA: the deny rule names `bücher.example`; punycode and Unicode spellings are one host.
    ("BÜCHER.example", "xn--bcher-kva.example", "deny-host"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example", "deny-host"),
    ("https://XN--BCHER-KVA.example/", "xn--bcher-kva.example", "deny-host"),
    ("https://b%C3%BCcher.example/", "xn--bcher-kva.example", "deny-host"),
    ("bu\u0308cher.example", "xn--bcher-kva.example", "deny-host"),  # NFKC composes it
    # The exact IP rule `10.1.2.3`, in inet_aton notations inside URLs and dotted forms.
    ("10.1.2.3", "10.1.2.3", "deny-host"),
    ("http://0xa.0x1.0x2.0x3/", "10.1.2.3", "deny-host"),
    ("http://167838211/", "10.1.2.3", "deny-host"),
    ("http://012.1.2.3/", "10.1.2.3", "deny-host"),
    ("http://10.1.515/", "10.1.2.3", "deny-host"),
    ("0xa.0x10203", "10.1.2.3", "deny-host"),
    ("[::ffff:10.1.2.3]", "10.1.2.3", "deny-host"),
    ("https://[::ffff:a01:203]:8443/", "10.1.2.3", "deny-host"),
    ("１０.１.２.３", "10.1.2.3", "deny-host"),
    # The exact IPv6 rule `2001:db9::dead`, bracketed, expanded, in URLs.
    ("2001:db9::dead", "[2001:db9::dead]", "deny-host"),
    ("[2001:DB9:0:0::DEAD]", "[2001:db9::dead]", "deny-host"),
    ("https://[2001:db9::dead]:8443/x", "[2001:db9::dead]", "deny-host"),
    ("//[2001:db9:0000:0000:0000:0000:0000:dead]", "[2001:db9::dead]", "deny-host"),
    # Subdomains under the glob `*.evil.example`.
    ("pay.evil.example", "pay.evil.example", "deny-subdomains"),
    ("PAY.EVIL.EXAMPLE.", "pay.evil.example", "deny-subdomains"),
    ("https://a.b.evil.example:8443/x", "a.b.evil.example", "deny-subdomains"),
    ("//pay.evil.example", "pay.evil.example", "deny-subdomains"),
    ("pay。evil。example", "pay.evil.example", "deny-subdomains"),
    ("good.example.evil.example", "good.example.evil.example", "deny-subdomains"),
    ("mailto:Bob@Pay.Evil.Example", "bob@pay.evil.example", "deny-subdomains"),
    # CIDR blocks, reached through every IPv4 notation and IPv6 spelling.
    ("127.0.0.1", "127.0.0.1", "deny-networks"),
    ("127.1", "127.0.0.1", "deny-networks"),
    ("0x7f.1", "127.0.0.1", "deny-networks"),
    ("0177.1", "127.0.0.1", "deny-networks"),
    ("http://127.1/", "127.0.0.1", "deny-networks"),
    ("http://0x7f.1/", "127.0.0.1", "deny-networks"),
    ("http://0177.0.0.1/", "127.0.0.1", "deny-networks"),
    ("http://2130706433/", "127.0.0.1", "deny-networks"),
    ("http://0x7f000001/", "127.0.0.1", "deny-networks"),
    ("https://017700000001/", "127.0.0.1", "deny-networks"),
    ("http://127.0.0.1./", "127.0.0.1", "deny-networks"),
    ("http://①②⑦.0.0.1/", "127.0.0.1", "deny-networks"),
    ("127.0.0.1:8443", "127.0.0.1", "deny-networks"),
    ("[::ffff:127.0.0.1]", "127.0.0.1", "deny-networks"),
    ("::ffff:7f00:1", "127.0.0.1", "deny-networks"),
    ("http://[::ffff:7f00:1]:8080/", "127.0.0.1", "deny-networks"),
    ("http://[0:0:0:0:0:ffff:127.0.0.1]/", "127.0.0.1", "deny-networks"),
    ("2001:db8::1", "[2001:db8::1]", "deny-networks"),
    ("[2001:DB8::1]", "[2001:db8::1]", "deny-networks"),
    ("2001:0db8:0000::0001", "[2001:db8::1]", "deny-networks"),
    ("https://[2001:db8:0:0:0:0:0:1]:8443/x", "[2001:db8::1]", "deny-networks"),
    ("http://192.168.1.1/", "192.168.1.1", "deny-networks"),  # a mapped CIDR in the policy
    ("[::ffff:c0a8:101]", "192.168.1.1", "deny-networks"),
    # Case-sensitive ids: deny rules compare them ignoring case; EVM addresses in one case.
    ("acct_1EvilAcct", "acct_1EvilAcct", "deny-ids"),
    ("acct_1evilacct", "acct_1evilacct", "deny-ids"),
    ("ACCT_1EVILACCT", "ACCT_1EVILACCT", "deny-ids"),
    ("EVIL-VENDOR", "EVIL-VENDOR", "deny-ids"),
    (CHECKSUMMED.lower(), CHECKSUMMED.lower(), "deny-ids"),
    ("0x" + CHECKSUMMED[2:].upper(), CHECKSUMMED.lower(), "deny-ids"),
    ("0X" + CHECKSUMMED[2:].lower(), CHECKSUMMED.lower(), "deny-ids"),
]

# Texts that name good.example somewhere, but whose host (what a client reaches) is another.
LOOKALIKES = [
    "https://evil.example\\@good.example",
    "https://evil.example#.good.example",
    "https://evil.example?.good.example",
    "https://evil.example/.good.example",
    "evil.example/good.example",
    "good.example.evil.example",
    "https://good.example.evil.example:443/",
    "goodexample.example",
    "https://good%2eexample.evil.example/",
    "xgood.example",
    "acct_1abc",
    "ACCT_1ABC",
]
USERINFO = [
    "https://good.example@evil.example",
    "https://good.example:pw@evil.example/",
    "http://user:pass@evil.example:8080/",
    "user:pass@evil.example",
    "good.example:443@evil.example",
    "//good.example@evil.example",
]
MALFORMED = [
    "https://evil.example:99999/",
    "https://evil.example:-1/",
    "https://[::1/",
    "https://[::g]/",
    "https://exa mple.com/",
    "evil..example",
    ".evil.example",
    "https://xn--/",
    "https://xn--zz-.example/",
    "https:///",
    "https://:443/",
    "ftp://evil.example/",
    "ws://evil.example/",
    "file:///etc/passwd",
    "https://" + "a" * 64 + ".example/",
    "https://" + ".".join(["abcdefghi"] * 30) + "/",
    "https://evil.example%2f.good.example/",
    "https://evil.example%00/",
    "https://[fe80::1%25eth0]/",
    "bob@[127.0.0.1]",
    "bob@127.0.0.1",
    "0x52908400098527886e0F7030069857D2E4169EE7",  # mixed case, wrong EIP-55 checksum
    "bc1QAR0SRRR7XFKVY5L643LYDNW9RE59GTZZWF5MDQ",
    "evil.example\u200b",
    "\u202eelpmaxe.live",
    "",
    "   ",
]


def _warden(database: Path, rail: RecordingRail, policy: str = POLICY) -> Warden:
    """Not the `open_warden` fixture: the module-scoped `setup` opens one for every test."""
    return Warden.open(
        policy, database=database, clock=FrozenClock(START), rails={"sandbox": rail}, sleep=no_sleep
    )


def _intent(recipient: str | Payee, amount: str = "10.00", **changes: Any) -> PaymentIntent:
    return example_intent(amount, recipient=recipient, **changes)


@dataclass
class Setup:
    warden: Warden
    rail: RecordingRail
    database: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    database = tmp_path_factory.mktemp("payee") / "ledger.db"
    rail = RecordingRail()
    with _warden(database, rail) as warden:
        yield Setup(warden, rail, database)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with open_gateway(tmp_path_factory.mktemp("payee-rest"), POLICY) as opened:
        yield opened


# Every spelling of a denied payee is that payee, and is denied --------------------------------


@pytest.mark.parametrize(("spelling", "identity", "rule_id"), DENIED, ids=repr)
def test_every_spelling_of_a_denied_payee_is_denied_and_never_paid(
    setup: Setup, spelling: str, identity: str, rule_id: str
) -> None:
    payee = parse_payee(spelling)
    assert payee.identity == identity
    assert parse_payee(payee.text) == payee
    paid_before = len(setup.rail.paid)
    outcome = setup.warden.pay(_intent(spelling))
    decision = outcome.decision
    assert (decision.outcome, decision.reason_code) == ("deny", "denied_by_rule")
    assert rule_id in decision.rule_ids and "allow-good" not in decision.rule_ids
    assert outcome.payment is None and decision.hold_id is None
    assert len(setup.rail.paid) == paid_before
    (recorded,) = [
        body["intent"]
        for body in bodies(setup.database, "decision")
        if body["decision"]["decision_id"] == decision.decision_id
    ]
    assert recorded["payee"]["identity"] == identity
    assert recorded["recipient"] == payee.text


def test_texts_that_only_mention_an_allowed_host_are_not_allowed(database: Path) -> None:
    """With no deny rule at all, an allow rule on good.example must still not pay a text whose
    host is another: the allow list sees the same host the client would reach."""
    allow_only = """
currency: USD
rules:
  - {id: allow-good, effect: allow, recipients: ["good.example", "*.good.example", acct_1AbC]}
"""
    rail = RecordingRail()
    with _warden(database, rail, allow_only) as warden:
        for text in LOOKALIKES:
            payee = parse_payee(text)
            assert payee.host != "good.example" and not (payee.host or "").endswith(
                ".good.example"
            ), text
            decision = warden.pay(_intent(text)).decision
            assert (decision.outcome, decision.reason_code) == ("deny", "no_rule_matched"), text
        assert warden.pay(_intent("GOOD.example.")).decision.outcome == "allow"
    assert [payee.identity for payee in rail.paid] == ["good.example"]


ALLOWED = [
    ("good.example", "good.example"),
    ("GOOD.EXAMPLE.", "good.example"),
    ("ｇｏｏｄ。ｅｘａｍｐｌｅ", "good.example"),
    ("good.example:8443/pay", "https://good.example:8443/pay"),
    ("//good.example", "https://good.example/"),
    ("http:good.example/a/../b?q=1#f", "http://good.example/b"),
    ("https://%67ood.example:443/", "https://good.example/"),
    ("https://shop.good.example/checkout", "https://shop.good.example/checkout"),
    ("Billing@Shop.Good.Example", "billing@shop.good.example"),
    ("acct_1AbC", "acct_1AbC"),
]


@pytest.mark.parametrize(("spelling", "canonical"), ALLOWED, ids=repr)
def test_the_rail_pays_exactly_the_canonical_payee_the_decision_and_audit_show(
    setup: Setup, spelling: str, canonical: str
) -> None:
    outcome = setup.warden.pay(_intent(spelling))
    assert outcome.decision.outcome == "allow" and outcome.state == "settled"
    paid = setup.rail.paid[-1]
    assert paid == parse_payee(spelling) and paid.text == canonical
    assert outcome.payment is not None
    stored = json.loads(outcome.payment.intent)
    assert stored["recipient"] == canonical
    (audited,) = [
        body["intent"]
        for body in bodies(setup.database, "decision")
        if body["decision"]["decision_id"] == outcome.decision.decision_id
    ]
    assert audited["recipient"] == canonical
    assert audited["payee"]["identity"] == paid.identity
    assert audited.get("recipient_original", canonical) == spelling.strip()


def test_a_backslash_before_at_names_the_host_before_it_for_every_parser() -> None:
    """`https://good.example\\@evil.example`: WHATWG reads `\\` as a path separator, so the
    host is good.example (not refused as userinfo). Safe only because the rail gets the
    canonical text, where an RFC 3986 parser reads the same host; check both parsers."""
    for text, host in [
        ("https://good.example\\@evil.example", "good.example"),
        ("https://evil.example\\@good.example", "evil.example"),
    ]:
        payee = parse_payee(text)
        assert payee.host == host and "@" not in (urllib.parse.urlsplit(payee.text).netloc)
        assert urllib.parse.urlsplit(payee.text).hostname == host


# Per-recipient counters are shared by every spelling -------------------------------------------


def test_spellings_of_one_payee_share_its_budget_and_velocity(database: Path) -> None:
    policy = """
currency: USD
rules:
  - {id: pay, effect: allow, actions: ["payments.*"]}
budgets:
  - {id: per-payee, limit: 100, window: day, scope: recipient, actions: [payments.transfer]}
velocity:
  - {id: per-payee-rate, max_count: 4, window: 1h, scope: recipient}
"""
    rail = RecordingRail()
    with _warden(database, rail, policy) as warden:
        spend = ["vendor.example", "https://VENDOR.example:8443/a", "//vendor.example."]
        for text in spend:
            assert warden.pay(_intent(text, "30.00")).decision.outcome == "allow"
        over = warden.pay(_intent("ｖｅｎｄｏｒ。example/x", "10.01")).decision
        assert (over.outcome, over.reason_code) == ("deny", "budget_exceeded")
        assert warden.pay(_intent("http:vendor.example", "10.00")).decision.outcome == "allow"
        # Four payments counted for the payee under four spellings; a fifth (not under the
        # budget: another action) meets the velocity limit whatever its spelling.
        tip = _intent("https://%76endor.example/", "0.01", action="payments.tip")
        rate = warden.pay(tip).decision
        assert (rate.outcome, rate.reason_code) == ("deny", "rate_limit_exceeded")
        # Another payee has its own counters: the scope is the payee, not global.
        assert warden.pay(_intent("other.example", "90.00")).decision.outcome == "allow"
        keys = sorted(
            (row.scope_key, row.spent_minor)
            for row in warden.budgets()
            if row.budget_id == "per-payee"
        )
    assert keys == [("other.example", 9000), ("vendor.example", 10000)]
    assert {payee.identity for payee in rail.paid} == {"vendor.example", "other.example"}


def test_ip_spellings_share_one_counter(database: Path) -> None:
    policy = """
currency: USD
rules:
  - {id: pay, effect: allow}
velocity:
  - {id: once, max_count: 1, window: 1h, scope: recipient}
"""
    with _warden(database, RecordingRail(), policy) as warden:
        assert warden.authorize(_intent("http://0x7f.1/")).outcome == "allow"
        for text in ("127.0.0.1", "[::ffff:127.0.0.1]", "https://2130706433:8443/x", "0177.1"):
            decision = warden.authorize(_intent(text))
            assert decision.reason_code == "rate_limit_exceeded", text


# Case-sensitive ids: an approval, grant or allow rule for acct_1AbC never pays acct_1aBc -------

CASE_POLICY = """
currency: USD
rules:
  - {id: review, effect: require_approval, actions: ["payments.*"], amount: {gt: 100}}
  - {id: allow-abc, effect: allow, actions: ["payments.*"], recipients: [acct_1AbC, acct_1XyZ]}
"""


def test_an_approval_for_one_account_id_never_pays_its_case_variant(database: Path) -> None:
    rail = RecordingRail()
    with _warden(database, rail, CASE_POLICY) as warden:
        warden.add_operator("alice", name="Alice")
        pending = warden.authorize(_intent("acct_1AbC", "500.00"))
        assert pending.outcome == "require_approval" and pending.approval_id
        warden.approve(pending.approval_id, operator="alice", reason="known vendor")
        for variant in ("acct_1aBc", "ACCT_1ABC", "acct_1abc", "acct_1ABC"):
            decision = warden.pay(_intent(variant, "500.00")).decision
            assert decision.reason_code != "approved", variant
            assert decision.approval_id != pending.approval_id
        assert warden.approval(pending.approval_id).status == "approved"  # still unused
        used = warden.pay(_intent("acct_1AbC", "500.00"))
        assert (used.decision.reason_code, used.state) == ("approved", "settled")
    assert [payee.identity for payee in rail.paid] == ["acct_1AbC"]


def test_a_grant_or_allow_rule_for_one_account_id_never_covers_its_case_variant(
    database: Path,
) -> None:
    rail = RecordingRail()
    with _warden(database, rail, CASE_POLICY) as warden:
        warden.add_operator("alice", name="Alice")
        grant = grant_request("1000", "5000", recipients=("acct_1XyZ",))
        warden.grant(grant, operator="alice")
        for variant in ("acct_1xYz", "ACCT_1XYZ", "acct_1xyz"):
            decision = warden.pay(_intent(variant, "500.00")).decision
            assert decision.outcome != "allow", variant
        assert warden.pay(_intent("acct_1XyZ", "500.00")).decision.reason_code == (
            "allowed_by_grant"
        )
        for variant in ("acct_1aBc", "acct_1abc", "ACCT_1ABC"):
            decision = warden.pay(_intent(variant)).decision
            assert (decision.outcome, decision.reason_code) == ("deny", "no_rule_matched")
        assert warden.pay(_intent("acct_1AbC")).decision.outcome == "allow"
    assert [payee.identity for payee in rail.paid] == ["acct_1XyZ", "acct_1AbC"]


def test_evm_addresses_have_one_identity_and_a_wrong_checksum_is_refused() -> None:
    digits = CHECKSUMMED[2:]
    assert eip55(digits) == digits
    spellings = [CHECKSUMMED, CHECKSUMMED.lower(), "0x" + digits.upper(), "0X" + digits]
    assert {parse_payee(text).identity for text in spellings} == {CHECKSUMMED.lower()}
    caip = parse_payee("eip155:1:" + CHECKSUMMED)
    assert caip.identity == "eip155:1:" + CHECKSUMMED.lower()
    letters = [index for index, char in enumerate(digits) if char.isalpha()]
    for index in letters:  # flip the case of any one letter: the checksum no longer holds
        flipped = digits[:index] + digits[index].swapcase() + digits[index + 1 :]
        with pytest.raises(InvalidRecipientError, match="EIP-55"):
            parse_payee("0x" + flipped)
        with pytest.raises(InvalidRecipientError, match="EIP-55"):
            parse_payee("eip155:1:0x" + flipped)


def test_an_ipv6_literal_in_a_rule_denies_every_spelling_of_it(database: Path) -> None:
    """An IPv6 host's canonical form is bracketed; the brackets are not a glob class (this was
    a bypass while this module was written: a deny on `2001:db8::dead` never matched)."""
    policy = """
currency: USD
rules:
  - {id: deny-v6, effect: deny, recipients: ["2001:db8::dead", "[::1]"]}
  - {id: pay, effect: allow}
"""
    rail = RecordingRail()
    with _warden(database, rail, policy) as warden:
        spellings = ["2001:db8::dead", "[2001:DB8::DEAD]", "https://[2001:db8:0::dead]:8443/"]
        for text in [*spellings, "::1", "[0:0:0:0:0:0:0:1]", "http://[::1]:8080/x"]:
            decision = warden.pay(_intent(text)).decision
            assert (decision.outcome, decision.rule_ids) == ("deny", ("deny-v6",)), text
        assert warden.pay(_intent("2001:db8::beef")).decision.outcome == "allow"
    assert [payee.identity for payee in rail.paid] == ["[2001:db8::beef]"]


def test_a_leading_slash_never_makes_a_domain_that_does_not_reparse() -> None:
    with pytest.raises(InvalidRecipientError, match="not a valid host name"):
        parse_payee("/c/#x.y")  # a path and a fragment are no host: refused, not guessed


# Userinfo and malformed hosts: a clean refusal on every surface, never a 500 -------------------


@pytest.mark.parametrize("text", USERINFO, ids=repr)
def test_userinfo_is_refused(text: str) -> None:
    with pytest.raises(InvalidRecipientError):
        parse_payee(text)


@pytest.mark.parametrize("text", MALFORMED + USERINFO, ids=repr)
def test_a_malformed_payee_is_a_422_with_an_audited_decision_on_rest(
    gateway: Gateway, text: str
) -> None:
    before = audit_count(gateway.warden)
    answer = gateway.client.post(
        "/v1/authorizations", json=intent_body(recipient=text), headers=gateway.auth("agent-a")
    )
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["code"] in ("invalid_recipient", "invalid_input", "invalid_intent")
    (entry,) = new_entries(gateway.warden, before)
    assert (entry.kind, entry.ref_id) == ("decision.refused", problem["decision_id"])


def test_malformed_payees_are_clean_tool_errors_on_mcp(database: Path) -> None:
    with _warden(database, RecordingRail()) as warden:
        secret, _ = warden.create_key(role="agent", agent="agent-a", actor="test")
        for text in MALFORMED[:12] + USERINFO[:3]:
            before = audit_count(warden)
            result = mcp_call(warden, secret, "request_payment", intent_body(recipient=text))
            assert result.is_error, text
            assert re.match(
                r"(invalid_recipient|invalid_input|invalid_intent): ", tool_text(result)
            )
            assert [entry.kind for entry in new_entries(warden, before)] == ["decision.refused"]
        assert warden.payments() == []


@given(
    st.text(
        alphabet=st.sampled_from(list("evil.xamp:/\\@?#[]%0123456789fX-_ ")),
        min_size=1,
        max_size=40,
    )
)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_recipient_text_makes_rest_fail_with_a_500(gateway: Gateway, text: str) -> None:
    before = audit_count(gateway.warden)
    answer = gateway.client.post(
        "/v1/authorizations", json=intent_body(recipient=text), headers=gateway.auth("agent-a")
    )
    assert answer.status_code in (200, 422), answer.text
    (entry,) = new_entries(gateway.warden, before)
    if answer.status_code == 422:
        assert (entry.kind, entry.ref_id) == ("decision.refused", answer.json()["decision_id"])
    else:
        assert (entry.kind, entry.ref_id) == ("decision", answer.json()["decision_id"])


# Properties over generated spellings ------------------------------------------------------------

_LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
_FULLWIDTH = {chr(code): chr(code + 0xFEE0) for code in range(0x21, 0x7F)}
_DOTS = [".", "\u3002", "\uff0e", "\uff61"]
_WRAPPERS = [
    "{h}",
    "{h}/",
    "{h}/pay?x=1#f",
    "{h}:443",
    "{h}:8443/x",
    "//{h}",
    "//{h}:8443/",
    "\\\\{h}\\x",
    "http:{h}",
    "https:/{h}",
    "https:\\\\{h}",
    "HTTPS://{h}:443/",
    "http://{h}:80/a/../b",
    "https://{h}#@good.example",
    "https://{h}\\@good.example",
    "https://{h}?@good.example",
]


@st.composite
def spellings(draw: st.DrawFn) -> tuple[str, str]:
    """(a spelling, the host it names): random case, full-width letters, ideographic dots,
    a trailing dot, percent-encoding, inside one of many URL and scheme-less forms."""
    labels = draw(st.lists(_LABEL, min_size=1, max_size=3))
    host = ".".join([*labels, "example"])
    chars = []
    for char in host:
        if char == ".":
            chars.append(draw(st.sampled_from(_DOTS)))
        elif draw(st.booleans()):
            chars.append(char.upper())
        else:
            chars.append(char)
    spelled = "".join(chars)
    wrapper = draw(st.sampled_from(_WRAPPERS))
    if "/" in wrapper and draw(st.booleans()):  # percent-encode one letter of the host
        index = draw(st.integers(0, len(spelled) - 1))
        if spelled[index].isalnum():
            spelled = spelled[:index] + f"%{ord(spelled[index]):02X}" + spelled[index + 1 :]
    if draw(st.booleans()):
        spelled = "".join(_FULLWIDTH.get(char, char) for char in spelled)
    if draw(st.booleans()):
        spelled += "."
    return wrapper.format(h=spelled), host


@given(spellings())
@HOSTILE_SETTINGS
def test_property_every_spelling_names_the_same_host_for_rules(case: tuple[str, str]) -> None:
    text, host = case
    payee = parse_payee(text)
    assert (payee.identity, payee.host) == (host, host)
    assert parse_payee(payee.text) == payee
    assert compile_patterns([host]).matches(payee)
    assert compile_patterns(["*.example"]).matches(payee)
    parent = host.split(".", 1)[1]
    assert compile_patterns(["*." + parent]).matches(payee)
    assert not compile_patterns(["x" + host, "*.x" + host]).matches(payee)


@st.composite
def ipv4_spellings(draw: st.DrawFn) -> tuple[str, int]:
    """An IPv4 address written in any inet_aton notation (1 to 4 parts, each decimal, octal or
    hex), or as an IPv4-mapped IPv6 address, in a URL or a dotted bare form."""
    number = draw(st.integers(0, 2**32 - 1))
    parts = draw(st.integers(1, 4))
    if parts == 4:
        values = [(number >> shift) & 0xFF for shift in (24, 16, 8, 0)]
    elif parts == 3:
        values = [number >> 24, (number >> 16) & 0xFF, number & 0xFFFF]
    elif parts == 2:
        values = [number >> 24, number & 0xFFFFFF]
    else:
        values = [number]
    rendered = []
    for value in values:
        style = draw(st.sampled_from(["dec", "hex", "HEX", "oct"]))
        rendered.append(
            {"dec": f"{value}", "hex": f"0x{value:x}", "HEX": f"0X{value:X}", "oct": f"0{value:o}"}[
                style
            ]
        )
    dotted = ".".join(rendered)
    mapped = f"::ffff:{number >> 16:x}:{number & 0xFFFF:x}"
    forms = [f"http://{dotted}/", f"https://{dotted}:8443/x", f"//{dotted}", f"[{mapped}]"]
    forms.append(f"http://[{mapped}]/")
    if parts > 1:
        forms += [dotted, f"{dotted}/pay"]
    return draw(st.sampled_from(forms)), number


@given(ipv4_spellings(), st.integers(8, 32))
@HOSTILE_SETTINGS
def test_property_every_ipv4_notation_is_caught_by_cidr_and_exact_rules(
    case: tuple[str, int], prefix: int
) -> None:
    text, number = case
    address = str(ipaddress.IPv4Address(number))
    payee = parse_payee(text)
    assert payee.identity == address == payee.host
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    assert compile_patterns([str(network)]).matches(payee)
    assert compile_patterns([address]).matches(payee)
    mapped = ipaddress.ip_network(f"::ffff:{network.network_address}/{96 + prefix}")
    assert compile_patterns([str(mapped)]).matches(payee)


_HOSTILE_ALPHABET = st.sampled_from(
    [*"abcEVIL.:/\\@?#%0123456789xX-_ ~!$&'()*+,;=", "。", "．", "ｅ", "ß", "ü", "\u034f"]
    + ["xn--", "http", "https:", "//", "0x", "ffff", "%2e", "%41", "acct_", "mailto:", "[", "]"]
)
RECIPIENT_TEXTS = st.lists(_HOSTILE_ALPHABET, min_size=1, max_size=14).map("".join) | st.text(
    max_size=30
)


_CIDR_LIKE = re.compile(r"\A\[?[0-9A-Fa-f:.]+\]?/[0-9]{1,3}\Z")  # read as a CIDR block


def _nameable(payee: Payee) -> bool:
    """Whether a rule can name this payee by its canonical text. Not: one-label "domains"
    (pinned by `test_a_leading_slash_never_makes_a_domain_that_does_not_reparse`),
    ids with glob characters (a pattern with them is a glob; no attacker gains by choosing
    one), ids that read as CIDR blocks."""
    if payee.kind == "ip" or (payee.host or "").startswith("["):
        return True  # IPv6 brackets are literal in patterns, not a glob class
    if payee.kind == "domain" and "." not in payee.identity:
        return False
    return not any(char in payee.text for char in GLOB_CHARS) and not _CIDR_LIKE.match(payee.text)


@given(RECIPIENT_TEXTS)
@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
def test_property_a_payee_parses_cleanly_again_and_a_rule_on_its_canonical_form_matches(
    text: str,
) -> None:
    try:
        payee = parse_payee(text)
    except InvalidRecipientError:
        return
    assume(not (payee.kind == "domain" and "." not in payee.identity))
    assert parse_payee(payee.text) == payee
    if _nameable(payee):
        assert compile_patterns([payee.text]).matches(payee)
        assert compile_patterns([payee.text]).matches(payee, ignore_id_case=True)
        if payee.host is not None:
            assert compile_patterns([payee.host]).matches(payee)
    if payee.kind == "url":
        # The canonical text the rail receives names the same host for an RFC 3986 parser.
        parts = urllib.parse.urlsplit(payee.text)
        assert parts.hostname == (payee.host or "").strip("[]").lower()
        assert "@" not in parts.netloc


# Real bypasses found: pinned, strict -------------------------------------------------------------


def test_a_url_glob_for_subdomains_never_pays_another_host(database: Path) -> None:
    policy = """
currency: USD
rules:
  - {id: data-apis, effect: allow, recipients: ["https://*.data.example/*"]}
"""
    rail = RecordingRail()
    with _warden(database, rail, policy) as warden:
        assert warden.pay(_intent("https://api.data.example/v1")).decision.outcome == "allow"
        for text in ("https://evil.example/.data.example/x", "evil.example/x.data.example/"):
            decision = warden.pay(_intent(text)).decision
            assert decision.outcome == "deny", (text, decision.reason)
    assert [payee.host for payee in rail.paid] == ["api.data.example"]
