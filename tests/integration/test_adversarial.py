"""Adversarial tests, classes 4 and 5 of issue 12: refusals leave a bounded trace; volume and
policy reloads cannot blur what decided.

The attacker probes: it sends requests that cannot become an intent on every surface (library,
REST, MCP), with control, bidi and invisible characters, lone surrogates, megabyte bodies and
the largest fields allowed, hoping to leave no trace, to smuggle characters into the log, or to
grow the append-only log without bound. An operator's 2,000-rule policy must not turn one
decision into a huge record, and a policy reload recorded by one process must govern the very
next decision of every other process on the same ledger.

Method: real Wardens on SQLite files (two on one file for reloads), the REST app through
TestClient, the MCP server through the SDK client; sizes are measured on the stored entries.
The other classes are in test_adversarial_payee.py, _secrets.py and _context.py.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from adversarial_support import REFUSED, table_state
from rest_support import Gateway, open_gateway

from paywarden import FrozenClock, PaymentIntent, Warden
from paywarden.errors import InvalidIntentError, InvalidRecipientError
from support.audit import audit_count, entries, new_entries
from support.intents import intent_body, intent_builder
from support.mcp import mcp_call
from support.policies import policy_text
from support.wardens import OpenWarden, no_sleep

START = "2026-01-05T12:00:00+00:00"
POLICY = policy_text("pay_100000_a_day")
# The design's bound on one stored entry: every agent-supplied field is bounded in UTF-8 bytes
# (purpose 1 KiB, name 256 B, metadata 4 KiB, recipient 512 B and its canonical form 1 KiB,
# ids 128-255 B), JSON escaping at most doubles them, and a trace lists at most 64 rules.
ENTRY_BYTES_MAX = 16 * 1024
STRIPE = "sk_" + "live_" + "4eC39HqLyjWDarjtT1zdp7dc"


_intent = intent_builder("10.00")


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    with open_gateway(tmp_path, POLICY) as opened:
        yield opened


def _post(gateway: Gateway, body: Any, path: str = "/v1/authorizations") -> Any:
    headers = gateway.auth("agent-a")
    if isinstance(body, bytes):
        headers["Content-Type"] = "application/json"
        return gateway.client.post(path, content=body, headers=headers)
    return gateway.client.post(path, json=body, headers=headers)


# Every refusal leaves exactly one entry, on every surface ----------------------------------------


def test_every_refused_request_on_every_surface_leaves_exactly_one_entry(
    gateway: Gateway,
) -> None:
    warden, key = gateway.warden, gateway.keys["agent-a"]
    library: list[tuple[str, Any]] = [
        ("secret session", lambda: warden.authorize(_intent(session_id=STRIPE))),
        ("secret payee", lambda: warden.authorize(_intent(recipient="pw_" + "x" * 20))),
        ("other environment", lambda: warden.authorize(_intent(environment="staging"))),
        ("unknown rail", lambda: warden.pay(_intent(rail="nonesuch"))),
    ]
    rest: list[Any] = [
        intent_body(amount="1e2"),
        {**intent_body(), "amount": 1.5},
        intent_body(agent="agent-b"),
        intent_body(environment="development"),
        intent_body(recipient="https://u:p@evil.example/"),
        intent_body(purpose="pay\u202eevil"),
        intent_body(metadata={"note": "a\u0000b"}),
        intent_body(metadata={"n": {"x": 1}}),
        b'{"action":',
        b"[1, 2]",
        b"null",
        b'{"action":"payments.transfer","amount":"1","currency":"USD",'
        b'"recipient":"v.example","purpose":"a\\ud800b"}',
    ]
    mcp: list[dict[str, Any]] = [
        intent_body(True),
        intent_body(1.0),
        intent_body("1e2"),
        intent_body(agent="agent-b"),
        intent_body(recipient="evil..example"),
        intent_body(metadata={"f": 1.5}),
        intent_body(purpose="x\u200by"),
    ]
    seen: list[str] = []
    for name, attempt in library:
        before = audit_count(warden)
        with contextlib.suppress(InvalidIntentError, InvalidRecipientError):
            attempt()
        kinds = [entry.kind for entry in new_entries(warden, before)]
        assert kinds in ([REFUSED], ["decision"]), name
        seen += kinds
    for body in rest:
        before = audit_count(warden)
        answer = _post(gateway, body)
        assert answer.status_code == 422, (body, answer.text)
        (entry,) = new_entries(warden, before)
        assert (entry.kind, entry.ref_id) == (REFUSED, answer.json()["decision_id"])
        assert warden.decision(entry.ref_id).reason_code == "invalid_input"
        seen.append(entry.kind)
    for arguments in mcp:
        before = audit_count(warden)
        result = mcp_call(warden, key, "request_payment", arguments)
        assert result.is_error, arguments
        assert [entry.kind for entry in new_entries(warden, before)] == [REFUSED], arguments
        seen.append(REFUSED)
    assert seen.count(REFUSED) == len(seen) - 2  # environment and rail refusals are decisions
    assert warden.verify_audit().ok
    assert gateway.rail.calls == []


def test_an_internal_error_is_denied_and_audited_without_the_secret_it_quotes(
    monkeypatch: pytest.MonkeyPatch, open_warden: OpenWarden, database: Path
) -> None:
    from paywarden.actions import decide

    def broken(*args: object) -> object:
        raise RuntimeError(f"boom while reading {STRIPE}")

    with open_warden(POLICY, sleep=no_sleep) as warden:
        state = table_state(database)
        monkeypatch.setattr(decide, "decide", broken)
        before = audit_count(warden)
        decision = warden.authorize(_intent())
        assert (decision.outcome, decision.reason_code) == ("deny", "internal_error")
        (entry,) = new_entries(warden, before)
        assert (entry.kind, entry.ref_id) == (REFUSED, decision.decision_id)
        assert json.loads(entry.body)["error"] == "internal_error"
        assert STRIPE not in entry.body
        assert table_state(database) == state
        assert warden.verify_audit().ok


# What a refusal stores: escaped, bounded, and small --------------------------------------------


def test_control_bidi_and_invisible_characters_are_stored_escaped(gateway: Gateway) -> None:
    body = intent_body(
        purpose="pay\u202eelpmaxe.live\u200b",
        recipient_name="Bob\u2066",
        metadata={"note": "a\u0000b", "tag": "\ufeffx"},
        recipient="evil.example\u200d",
    )
    answer = _post(gateway, body)
    assert answer.status_code == 422
    (entry,) = [e for e in entries(gateway.database) if e.ref_id == answer.json()["decision_id"]]
    stored = json.loads(entry.body)["intent"]
    assert stored["purpose"] == "pay\\u{202E}elpmaxe.live\\u{200B}"
    assert stored["recipient_name"] == "Bob\\u{2066}"
    assert stored["metadata"] == {"note": "a\\u{0000}b", "tag": "\\u{FEFF}x"}
    assert stored["recipient"] == "evil.example\\u{200D}"
    for char in "\u202e\u200b\u2066\u0000\ufeff\u200d":
        assert char not in entry.body
    surrogate = _post(
        gateway,
        b'{"action":"payments.transfer","amount":"1","currency":"USD",'
        b'"recipient":"v.example","purpose":"a\\ud800b"}',
    )
    assert surrogate.status_code == 422
    (entry,) = [e for e in entries(gateway.database) if e.ref_id == surrogate.json()["decision_id"]]
    assert json.loads(entry.body)["intent"]["purpose"] == "a\\u{D800}b"
    entry.body.encode("utf-8")  # strict: no lone surrogate reached the log


def test_a_megabyte_body_is_refused_and_grows_the_log_by_at_most_one_small_entry(
    gateway: Gateway,
) -> None:
    before = audit_count(gateway.warden)
    for path in ("/v1/authorizations", "/v1/payments"):
        answer = gateway.client.post(
            path,
            json=intent_body(purpose="x" * 1_000_000),
            headers=gateway.auth("agent-a", **{"Idempotency-Key": "big-1"}),
        )
        assert answer.status_code in (413, 422), answer.text
    added = new_entries(gateway.warden, before)
    assert len(added) <= 2
    assert all(len(entry.body.encode("utf-8")) <= ENTRY_BYTES_MAX for entry in added)


def _largest_allowed_intent() -> PaymentIntent:
    """Every field at its byte limit, in the characters that cost most once stored as JSON."""
    metadata = {f"k{index:02d}" + "a" * 17: '"' * 108 for index in range(32)}  # 4,096 bytes
    return PaymentIntent(
        agent="a" * 128,
        action="payments." + "x" * 119,
        amount="1",
        currency="USD",
        recipient="https://v.example/" + "ü" * 160,
        purpose='"' * 1024,
        recipient_name="\\" * 256,
        category="c" * 128,
        session_id="s" * 128,
        idempotency_key='"' * 255,
        metadata=metadata,
    )


def test_the_largest_allowed_decision_stays_within_the_design_bound(
    open_warden: OpenWarden, database: Path
) -> None:
    with open_warden(POLICY, sleep=no_sleep) as warden:
        decision = warden.authorize(_largest_allowed_intent())
        assert decision.outcome == "allow"
        largest = _largest_allowed_intent()
        other = largest.replace(environment="staging", idempotency_key="\\" * 255)
        refused = warden.authorize(other)
        assert refused.reason_code == "environment_mismatch"
    sizes = [len(e.body.encode("utf-8")) for e in entries(database) if e.kind == "decision"]
    assert len(sizes) == 2
    assert max(sizes) > 12_000  # the fields really were at their limits (13.8 KB measured)
    assert max(sizes) <= ENTRY_BYTES_MAX


def test_a_refused_request_with_many_large_fields_stays_within_the_bound(gateway: Gateway) -> None:
    quote = '"' * 520
    body: dict[str, Any] = {f"k{index:02d}" + "x" * 58: quote for index in range(23)}
    body["metadata"] = {f"m{index:02d}" + "y" * 60: quote for index in range(24)}
    raw = json.dumps(body).encode()
    assert len(raw) < 65_536  # under the body limit: it is read and refused, not a 413
    answer = _post(gateway, raw, "/v1/payments")
    assert answer.status_code == 422
    (entry,) = [e for e in entries(gateway.database) if e.ref_id == answer.json()["decision_id"]]
    assert len(entry.body.encode("utf-8")) <= ENTRY_BYTES_MAX


# A 2,000-rule policy ------------------------------------------------------------------------------

RULES_MAX = 2000


@pytest.fixture(scope="module")
def big_policy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Warden, Path]]:
    """1,999 review rules for vendor.example.com (each also names its own blocked host) and one
    allow rule: a payment elsewhere matches one rule, a payment to the vendor matches all."""
    rules = [
        f"  - {{id: r{index:04d}, effect: require_approval, actions: ['payments.*'], "
        f"recipients: [vendor.example.com, 'blocked-{index}.example']}}"
        for index in range(RULES_MAX - 1)
    ]
    rules.append("  - {id: pay, effect: allow, actions: ['payments.*']}")
    policy = "currency: USD\nrules:\n" + "\n".join(rules) + "\n"
    database = tmp_path_factory.mktemp("big-policy") / "ledger.db"
    with Warden.open(policy, database=database, clock=FrozenClock(START), sleep=no_sleep) as warden:
        assert warden.policy is not None and len(warden.policy.rules) == RULES_MAX
        yield warden, database


def test_a_decision_under_2000_rules_records_only_what_matched(
    big_policy: tuple[Warden, Path],
) -> None:
    warden, database = big_policy
    decision = warden.authorize(_intent(recipient="other.example"))
    assert (decision.outcome, decision.rule_ids) == ("allow", ("pay",))
    listed = [rule for rule in decision.trace.rules if rule.matched]
    assert [rule.rule_id for rule in listed] == ["pay"]
    (entry,) = [e for e in entries(database) if e.ref_id == decision.decision_id]
    assert len(entry.body.encode("utf-8")) <= ENTRY_BYTES_MAX
    blocked = warden.authorize(_intent(recipient="blocked-1234.example"))
    assert blocked.rule_ids == ("r1234",)


def test_a_decision_matching_2000_rules_stays_within_the_bound(
    big_policy: tuple[Warden, Path],
) -> None:
    warden, database = big_policy
    decision = warden.authorize(_intent(recipient="vendor.example.com"))
    assert decision.outcome == "require_approval"
    (entry,) = [e for e in entries(database) if e.ref_id == decision.decision_id]
    assert len(entry.body.encode("utf-8")) <= ENTRY_BYTES_MAX


# Reloads: the version recorded last decides, in every process ----------------------------------

ALLOW_VENDOR = POLICY
DENY_VENDOR = POLICY.replace(
    "rules:\n", "rules:\n  - {id: freeze, effect: deny, recipients: [vendor.example.com]}\n"
)


def test_a_reload_by_one_warden_governs_the_next_decision_of_another(
    open_warden: OpenWarden,
) -> None:
    with (  # on the system clock
        open_warden(ALLOW_VENDOR, clock=None, sleep=no_sleep) as first,
        open_warden(ALLOW_VENDOR, clock=None, sleep=no_sleep) as second,
    ):
        old = second.authorize(_intent())
        assert old.outcome == "allow"
        loaded = first.reload_policy(DENY_VENDOR, actor="admin")
        assert loaded.policy is not None and loaded.policy.version != old.policy_version
        new = second.authorize(_intent())
        assert (new.outcome, new.policy_version) == ("deny", loaded.policy.version)
        assert new.rule_ids == ("freeze",)
        paid = second.pay(_intent())
        assert paid.payment is None and paid.decision.policy_version == loaded.policy.version


def test_no_decision_committed_after_a_reload_uses_the_old_policy(
    open_warden: OpenWarden, database: Path
) -> None:
    stop = threading.Event()
    failures: list[BaseException] = []
    with (  # on the system clock
        open_warden(ALLOW_VENDOR, clock=None, sleep=no_sleep) as reloader,
        open_warden(ALLOW_VENDOR, clock=None, sleep=no_sleep) as decider,
    ):

        def decide() -> None:
            try:
                while not stop.is_set():
                    decider.authorize(_intent("0.01"))
            except BaseException as error:  # reported by the main thread
                failures.append(error)

        workers = [threading.Thread(target=decide) for _ in range(2)]
        for worker in workers:
            worker.start()
        try:
            for round_ in range(6):
                reloader.reload_policy(DENY_VENDOR if round_ % 2 == 0 else ALLOW_VENDOR, actor="a")
                reloader.authorize(_intent("0.01"))  # the reloader decides too
        finally:
            stop.set()
            for worker in workers:
                worker.join()
    assert failures == []
    current, decisions, reloads = None, 0, 0
    for entry in entries(database):
        body = json.loads(entry.body)
        if entry.kind == "policy.loaded":
            current, reloads = body["policy_version"], reloads + 1
        elif entry.kind == "decision":
            decisions += 1
            assert body["decision"]["policy_version"] == current, entry.seq
            frozen = "freeze" in body["decision"]["rule_ids"]
            assert frozen == (body["decision"]["outcome"] == "deny"), entry.seq
    assert reloads == 7 and decisions > 6


# HTTP layer: one smoke test (tests/integration/test_http_hardening.py covers it) ---------------


def test_smoke_the_gateway_never_redirects_to_a_host_taken_from_the_request(
    gateway: Gateway,
) -> None:
    for path in ("/v1/payments/", "/v1/authorizations/", "/v1//payments"):
        answer = gateway.client.get(
            path, headers=gateway.auth("agent-a", Host="evil.example"), follow_redirects=False
        )
        assert not 300 <= answer.status_code < 400, (path, answer.status_code)
        assert "evil.example" not in answer.headers.get("location", "")
