"""Mandates reach the decision: `Warden.authorize(intent, mandate=...)` on a real SQLite file.

Refusals deny with their reason code, are audited, and leave nothing held or claimed; a nonce
is claimed once (also by a second Warden on the same file, in another process); mandate budgets
and use counts are reserved in the ledger; `requires_mandate` and the `mandate` CEL facts.
"""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

from ap2_helpers import AUDIENCE, MERCHANT, NOW, Chain, closed_mandate, new_key, usd_range

from paywarden import FrozenClock, PaymentIntent, Warden
from paywarden.ap2 import MandateVerifier
from paywarden.mandates import Mandate, MandateRefusal, Presented
from support.wardens import OpenWarden

POLICY = """
currency: USD
mandates:
  requires_mandate:
    - {id: shop-purchases, actions: [purchase]}
    - {id: large, amount_gt: 500}
rules:
  - id: no-mandate-no-big-spend
    effect: deny
    amount_gt: 100
    when: "!mandate.present"
  - id: mandate-ceiling
    effect: deny
    when: "has(mandate.budget_remaining_minor) && mandate.budget_remaining_minor < amount_minor"
  - id: shop
    effect: allow
    actions: [purchase, pay]
"""
# Without the CEL ceiling: the ledger's conditional UPDATE is what refuses.
PLAIN = POLICY.replace(
    """  - id: mandate-ceiling
    effect: deny
    when: "has(mandate.budget_remaining_minor) && mandate.budget_remaining_minor < amount_minor"
""",
    "",
)


def verifier(chain: Chain) -> MandateVerifier:
    keys = {"user-1": chain.user_key.export_public(as_dict=True)}
    return MandateVerifier(audience=AUDIENCE, trusted_keys=keys, clock=lambda: NOW)


def intent(amount: str = "19.99", currency: str = "USD", **fields: Any) -> PaymentIntent:
    values: dict[str, Any] = {
        "agent": "agent-a",
        "action": "purchase",
        "recipient": "https://shop.example.com",
    }
    values.update(fields)
    return PaymentIntent(amount=amount, currency=currency, **values)


def claims(database: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with sqlite3.connect(database) as db:
        nonces = db.execute("SELECT audience, nonce FROM mandate_nonces").fetchall()
        usage = db.execute("SELECT mandate_id, spent_minor, uses FROM mandate_usage").fetchall()
    return nonces, usage


def audited_mandate(warden: Warden, decision_id: str | None) -> dict[str, Any]:
    (entry,) = [e for e in warden.audit_trail(str(decision_id)) if e.kind == "decision"]
    body = json.loads(entry.body) if isinstance(entry.body, str) else entry.body
    found: dict[str, Any] = body["mandate"]
    return found


def test_a_valid_mandate_allows_and_is_audited(open_warden: OpenWarden, database: Path) -> None:
    warden = open_warden(POLICY)
    chain = Chain()
    mandate = verifier(chain).verify(chain.present())
    assert isinstance(mandate, Mandate)
    decision = warden.authorize(intent(), mandate=mandate)
    assert (decision.outcome, decision.reason_code) == ("allow", "allowed")
    recorded = audited_mandate(warden, decision.decision_id)
    assert recorded["digest"] == mandate.digest and recorded["nonce"] == "nonce-1"
    assert claims(database) == ([(AUDIENCE, "nonce-1")], [(mandate.mandate_id, 1999, 1)])


def test_a_replayed_nonce_is_denied_and_holds_nothing(open_warden: OpenWarden) -> None:
    warden = open_warden(POLICY)
    chain = Chain()
    presentation = chain.present()
    first = warden.authorize(intent(), mandate=verifier(chain).verify(presentation))
    assert first.outcome == "allow"
    again = warden.authorize(intent(), mandate=verifier(chain).verify(presentation))
    assert (again.outcome, again.reason_code) == ("deny", "mandate_replayed")
    assert again.hold_id is None
    assert audited_mandate(warden, again.decision_id)["nonce"] == "nonce-1"


def test_refusals_deny_with_their_code_and_leave_nothing(
    open_warden: OpenWarden, database: Path
) -> None:
    warden = open_warden(POLICY)
    cases: list[tuple[Chain, PaymentIntent, str]] = [
        (Chain(aud="https://other.example"), intent(), "mandate_wrong_audience"),
        (Chain(open_extra={"exp": NOW - 1000}), intent(), "mandate_expired"),
        (Chain(signer=new_key()), intent(), "mandate_invalid"),
        (Chain(closed=closed_mandate(amount=6000)), intent("60.00"), "mandate_constraint"),
        (Chain(), intent("20.00"), "mandate_mismatch"),
        (Chain(), intent(recipient="https://evil.example"), "mandate_mismatch"),
        (
            Chain(
                constraints=[
                    {"type": "payment.allowed_payees", "allowed": [{"id": "b", "name": "B"}]}
                ]
            ),
            intent(),
            "mandate_constraint",
        ),
    ]
    for number, (chain, asked, code) in enumerate(cases):
        chain.nonce = f"nonce-{number}"
        decision = warden.authorize(asked, mandate=verifier(chain).verify(chain.present()))
        assert (decision.outcome, decision.reason_code) == ("deny", code), decision.reason
        assert decision.hold_id is None
        assert audited_mandate(warden, decision.decision_id)["digest"]
    assert claims(database) == ([], [])


def test_a_denial_after_the_claim_releases_it(open_warden: OpenWarden, database: Path) -> None:
    # the approval queue is checked after the mandate is claimed: its denial must undo the claim
    warden = open_warden(
        PLAIN.replace("rules:", "approvals: {pending_amount_max_per_agent: 10}\nrules:", 1)
        + "  - {id: review, effect: require_approval, actions: [purchase]}\n"
    )
    chain = Chain()
    denied = warden.authorize(intent(), mandate=verifier(chain).verify(chain.present()))
    assert (denied.outcome, denied.reason_code) == ("deny", "approval_queue_full")
    assert claims(database) == ([], [])
    pending = Chain(closed=closed_mandate(amount=999))
    waiting = warden.authorize(intent("9.99"), mandate=verifier(pending).verify(pending.present()))
    assert waiting.outcome == "require_approval"  # claimed while it waits
    assert claims(database)[0] == [(AUDIENCE, "nonce-1")]


def test_requires_mandate_for_an_action_or_above_an_amount(open_warden: OpenWarden) -> None:
    warden = open_warden(POLICY)
    needed = warden.authorize(intent("5.00"))
    assert (needed.outcome, needed.reason_code) == ("deny", "mandate_required")
    assert "shop-purchases" in needed.reason
    large = warden.authorize(intent("600.00", action="pay"))
    assert (large.reason_code, "large" in large.reason) == ("mandate_required", True)
    # below both: the CEL fact `mandate.present` still guards amounts above 100
    assert warden.authorize(intent("50.00", action="pay")).outcome == "allow"
    assert warden.authorize(intent("150.00", action="pay")).reason_code == "denied_by_rule"


def test_budget_and_uses_are_reserved_exactly_in_jpy_and_usdc(open_warden: OpenWarden) -> None:
    warden = open_warden(PLAIN.replace("currency: USD", "currency: JPY", 1))
    jpy = [
        usd_range(5000, currency="JPY"),
        {"type": "payment.budget", "max": 9000, "currency": "JPY"},
    ]
    user, agent = new_key("user-1"), new_key()
    root = Chain(user_key=user, agent_key=agent, constraints=jpy).root()

    def pay(amount: int, nonce: str) -> str:
        chain = Chain(user_key=user, agent_key=agent, nonce=nonce)
        chain.closed = closed_mandate(amount=amount, currency="JPY")
        mandate = verifier(chain).verify(chain.present(root))
        return warden.authorize(intent(str(amount), "JPY"), mandate=mandate).reason_code

    assert pay(4500, "n1") == "allowed"
    assert pay(4500, "n2") == "allowed"  # exactly 9000 JPY: the budget is 9000, not 900000
    assert pay(1, "n3") == "mandate_budget_exceeded"
    # with the CEL facts, a rule can see the same thing first
    warden = open_warden(POLICY.replace("currency: USD", "currency: JPY", 1), database=":memory:")
    assert pay(4500, "m1") == "allowed"
    assert pay(4501, "m2") == "denied_by_rule"

    usdc = [{"type": "payment.budget", "max": 0.5, "currency": "USDC"}]
    usdc.append(
        {"type": "payment.agent_recurrence", "frequency": "ON_DEMAND", "max_occurrences": 2}
    )
    root = Chain(user_key=user, agent_key=agent, constraints=usdc).root()
    warden = open_warden(PLAIN.replace("currency: USD", "currency: USDC", 1), database=":memory:")

    def pay_usdc(amount_minor: int, text: str, nonce: str) -> str:
        chain = Chain(user_key=user, agent_key=agent, nonce=nonce)
        chain.closed = closed_mandate(amount=amount_minor, currency="USDC")
        mandate = verifier(chain).verify(chain.present(root))
        return warden.authorize(intent(text, "USDC"), mandate=mandate).reason_code

    assert pay_usdc(300_000, "0.30", "u1") == "allowed"
    assert pay_usdc(300_000, "0.30", "u2") == "mandate_budget_exceeded"  # 0.60 > 0.50 USDC
    assert pay_usdc(200_000, "0.20", "u3") == "allowed"  # exactly 0.50 USDC
    assert pay_usdc(1, "0.000001", "u4") == "mandate_budget_exceeded"  # a third use


def test_a_refusal_from_the_verifier_is_a_recorded_denial(open_warden: OpenWarden) -> None:
    warden = open_warden(POLICY)
    refusal = MandateRefusal("mandate_invalid", "no AP2 verifier is configured")
    decision = warden.authorize(intent(), mandate=refusal)
    assert (decision.outcome, decision.reason_code) == ("deny", "mandate_invalid")
    assert audited_mandate(warden, decision.decision_id) == {
        "refused": "mandate_invalid",
        "digest": None,
    }


def _authorize_in_child(database: str, presentation: str, key: dict[str, Any], out: Any) -> None:
    keys = {"user-1": key}
    check = MandateVerifier(audience=AUDIENCE, trusted_keys=keys, clock=lambda: NOW)
    mandate: Presented = check.verify(presentation)
    with Warden.open(
        POLICY, database=database, clock=FrozenClock("2026-01-05T12:00:00+00:00")
    ) as w:
        out.put(w.authorize(intent(), mandate=mandate).reason_code)


def test_a_nonce_is_claimed_once_across_processes(open_warden: OpenWarden, database: Path) -> None:
    warden = open_warden(POLICY)
    chain = Chain()
    presentation = chain.present()
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(
        target=_authorize_in_child,
        args=(str(database), presentation, chain.user_key.export_public(as_dict=True), results),
    )
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert results.get(timeout=5) == "allowed"
    replay = warden.authorize(intent(), mandate=verifier(chain).verify(presentation))
    assert replay.reason_code == "mandate_replayed"
    assert MERCHANT["id"] == "shop.example.com"
