"""Policy evaluation benchmark: paywarden vs cedarpy vs CapFence on one 20-rule policy.

The same payment policy is written three times:

* paywarden native YAML (20 rules, two of them with a CEL `when:`), plus a variant where
  the two CEL conditions are rewritten with native conditions (same outcomes, no CEL);
* Cedar (20 policies; `forbid` for deny rules, `permit` for allow rules, and `permit`
  annotated `@effect("require_approval")` for approval rules: a decision is
  `require_approval` when Cedar allows and one of the satisfied permits is an approval one);
* CapFence 0.9.0's format, which can only express a subset (13 rules: no agent lists, no
  recipient lists, no categories, no negation, no CEL, one environment per rule). The same
  CapFence file is also run through paywarden, which reads that format, for a like-for-like.

Every engine is first checked against the expected outcome of every intent (and, for
paywarden vs Cedar, the exact set of deciding rules); any mismatch prints a table and stops
the run. Then each engine is timed per call with `time.perf_counter_ns`, intents rotated,
after a warm-up, with the garbage collector off. All inputs (intents, Cedar requests,
CapFence events) are built before timing; only the decision call is measured.

Run: `.venv/bin/python bench/run.py policy` (or `make bench`). Needs the `bench` extra:
`.venv/bin/pip install cedarpy==4.12.2 capfence==0.9.0`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from paywarden import PaymentIntent
from paywarden.policy import StateSnapshot, compile_policy, evaluate

NOW = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)  # a Tuesday, 11:30 in New York

# --------------------------------------------------------------------------------------------
# The policy, three ways
# --------------------------------------------------------------------------------------------

NATIVE_POLICY = """\
name: bench-treasury
version: "1"
currency: USD
timezone: America/New_York
rules:
  # --- deny (7) ---
  - id: deny-sanctioned-recipients
    effect: deny
    reason: recipient is on the sanctions list
    actions: [payments.*]
    recipients: [sanctioned-co.example, "*.blocked.example", evil-vendor]
  - id: deny-over-hard-cap
    effect: deny
    reason: above the 10,000 USD hard cap for automated payments
    actions: [payments.*]
    amount: {gt: 10000}
  - id: deny-nonprod-over-50
    effect: deny
    reason: non-production payments are capped at 50 USD
    environments: [staging, dev]
    amount: {gt: 50}
  - id: deny-unknown-agents
    effect: deny
    reason: agent is not registered
    agents_not: [a1, a2, a3, treasury-bot, procurement-bot, support-bot]
  - id: deny-restricted-categories
    effect: deny
    reason: restricted merchant category
    categories: [gambling, crypto-exchange]
  - id: deny-support-bot-transfers
    effect: deny
    reason: the support bot may only refund
    agents: [support-bot]
    actions: [payments.transfer, payments.payout]
  - id: deny-large-crypto
    effect: deny
    reason: crypto payouts above 1,000 USD are not automated
    when: 'rail == "crypto" && amount_minor > 100000'
  # --- require_approval (6) ---
  - id: approve-over-500
    effect: require_approval
    reason: transfers and payouts above 500 USD need a human
    actions: [payments.transfer, payments.payout]
    amount: {gt: 500}
  - id: approve-refund-over-100
    effect: require_approval
    reason: refunds above 100 USD need a human
    actions: [payments.refund]
    amount: {gt: 100}
  - id: approve-new-recipient
    effect: require_approval
    reason: transfer to a recipient outside the allow list
    actions: [payments.transfer]
    recipients_not: [vendor-1, vendor-2, payroll.example.com, "*.stripe.com"]
  - id: approve-procurement-software
    effect: require_approval
    reason: software purchases above 200 USD need a human
    agents: [procurement-bot]
    categories: [software, saas]
    amount: {gt: 200}
  - id: approve-travel
    effect: require_approval
    reason: travel above 300 USD needs a human
    categories: [travel]
    amount: {gt: 300}
  - id: approve-new-connected-account
    effect: require_approval
    reason: payments above 250 USD to connected accounts need a human
    when: 'recipient.startsWith("acct_") && amount_minor > 25000'
  # --- allow (7) ---
  - id: allow-treasury
    effect: allow
    reason: treasury transfers in production up to the hard cap
    agents: [treasury-bot, a1]
    actions: [payments.transfer, payments.payout]
    environments: [production]
    amount: {lte: 10000}
  - id: allow-small
    effect: allow
    reason: small payments
    actions: [payments.*]
    amount: {lte: 50}
  - id: allow-refunds
    effect: allow
    reason: support refunds
    agents: [support-bot, a2]
    actions: [payments.refund]
  - id: allow-procurement-software
    effect: allow
    reason: procurement buys software
    agents: [procurement-bot]
    categories: [software, saas, cloud]
    amount: {lte: 2000}
  - id: allow-reads
    effect: allow
    reason: read-only calls
    actions: [payments.read, payments.balance]
  - id: allow-nonprod
    effect: allow
    reason: anything in non-production (the 50 USD cap still applies)
    environments: [staging, dev]
  - id: allow-payroll
    effect: allow
    reason: payroll payouts
    agents: [a3, treasury-bot]
    actions: [payments.payout]
    recipients: [payroll.example.com]
"""

# The two CEL conditions and their native equivalents (same rule ids, same outcomes).
_CEL_REWRITES = (
    (
        """    when: 'rail == "crypto" && amount_minor > 100000'\n""",
        "    rails: [crypto]\n    amount: {gt: 1000}\n",
    ),
    (
        """    when: 'recipient.startsWith("acct_") && amount_minor > 25000'\n""",
        '    recipients: ["acct_*"]\n    amount: {gt: 250}\n',
    ),
)


def _without_cel(text: str) -> str:
    for old, new in _CEL_REWRITES:
        if old not in text:
            raise AssertionError(f"CEL condition not found in the policy: {old.strip()}")
        text = text.replace(old, new)
    if "when:" in text:
        raise AssertionError("the no-CEL variant still has a `when:`")
    return text


NATIVE_POLICY_NO_CEL = _without_cel(NATIVE_POLICY)

# Cedar: principal Agent::"<agent>", action Action::"<action>" (all children of the action
# group Action::"payments"), resource Recipient::"<recipient>"; context carries the amount in
# minor units (Long), environment, category, rail and the recipient text (for `like` globs).
# Rule order and @id match the native policy; deny -> forbid, allow -> permit, approval ->
# permit @effect("require_approval").
CEDAR_POLICIES = """\
@id("deny-sanctioned-recipients") @effect("deny")
forbid (principal, action in Action::"payments", resource)
when {
  resource in [Recipient::"sanctioned-co.example", Recipient::"evil-vendor"] ||
  context.recipient like "*.blocked.example"
};
@id("deny-over-hard-cap") @effect("deny")
forbid (principal, action in Action::"payments", resource)
when { context.amount > 1000000 };
@id("deny-nonprod-over-50") @effect("deny")
forbid (principal, action, resource)
when { ["staging", "dev"].contains(context.environment) && context.amount > 5000 };
@id("deny-unknown-agents") @effect("deny")
forbid (principal, action, resource)
unless { principal in Group::"known-agents" };
@id("deny-restricted-categories") @effect("deny")
forbid (principal, action, resource)
when { ["gambling", "crypto-exchange"].contains(context.category) };
@id("deny-support-bot-transfers") @effect("deny")
forbid (
  principal == Agent::"support-bot",
  action in [Action::"payments.transfer", Action::"payments.payout"],
  resource
);
@id("deny-large-crypto") @effect("deny")
forbid (principal, action, resource)
when { context.rail == "crypto" && context.amount > 100000 };
@id("approve-over-500") @effect("require_approval")
permit (principal, action in [Action::"payments.transfer", Action::"payments.payout"], resource)
when { context.amount > 50000 };
@id("approve-refund-over-100") @effect("require_approval")
permit (principal, action == Action::"payments.refund", resource)
when { context.amount > 10000 };
@id("approve-new-recipient") @effect("require_approval")
permit (principal, action == Action::"payments.transfer", resource)
unless {
  resource in [Recipient::"vendor-1", Recipient::"vendor-2", Recipient::"payroll.example.com"] ||
  context.recipient like "*.stripe.com"
};
@id("approve-procurement-software") @effect("require_approval")
permit (principal == Agent::"procurement-bot", action, resource)
when { ["software", "saas"].contains(context.category) && context.amount > 20000 };
@id("approve-travel") @effect("require_approval")
permit (principal, action, resource)
when { context.category == "travel" && context.amount > 30000 };
@id("approve-new-connected-account") @effect("require_approval")
permit (principal, action, resource)
when { context.recipient like "acct_*" && context.amount > 25000 };
@id("allow-treasury") @effect("allow")
permit (principal, action in [Action::"payments.transfer", Action::"payments.payout"], resource)
when {
  principal in [Agent::"treasury-bot", Agent::"a1"] &&
  context.environment == "production" && context.amount <= 1000000
};
@id("allow-small") @effect("allow")
permit (principal, action in Action::"payments", resource)
when { context.amount <= 5000 };
@id("allow-refunds") @effect("allow")
permit (principal, action == Action::"payments.refund", resource)
when { principal in [Agent::"support-bot", Agent::"a2"] };
@id("allow-procurement-software") @effect("allow")
permit (principal == Agent::"procurement-bot", action, resource)
when { ["software", "saas", "cloud"].contains(context.category) && context.amount <= 200000 };
@id("allow-reads") @effect("allow")
permit (principal, action in [Action::"payments.read", Action::"payments.balance"], resource);
@id("allow-nonprod") @effect("allow")
permit (principal, action, resource)
when { ["staging", "dev"].contains(context.environment) };
@id("allow-payroll") @effect("allow")
permit (
  principal,
  action == Action::"payments.payout",
  resource == Recipient::"payroll.example.com"
)
when { principal in [Agent::"a3", Agent::"treasury-bot"] };
"""

KNOWN_AGENTS = ("a1", "a2", "a3", "treasury-bot", "procurement-bot", "support-bot")
PAYMENT_ACTIONS = ("transfer", "payout", "refund", "purchase", "read", "balance")


def cedar_entities() -> list[dict[str, Any]]:
    """Agents belong to Group::"known-agents"; every payment action to Action::"payments"."""
    entities: list[dict[str, Any]] = [
        {"uid": {"type": "Group", "id": "known-agents"}, "attrs": {}, "parents": []},
        {"uid": {"type": "Action", "id": "payments"}, "attrs": {}, "parents": []},
    ]
    for agent in KNOWN_AGENTS:
        entities.append(
            {
                "uid": {"type": "Agent", "id": agent},
                "attrs": {},
                "parents": [{"type": "Group", "id": "known-agents"}],
            }
        )
    for action in PAYMENT_ACTIONS:
        entities.append(
            {
                "uid": {"type": "Action", "id": f"payments.{action}"},
                "attrs": {},
                "parents": [{"type": "Action", "id": "payments"}],
            }
        )
    return entities


# CapFence 0.9.0 can match: capability (resource.action with `*`), amount_gt/gte/lt/lte (read
# from the payload), and a single glob per context key for a few keys (environment, tenant,
# user_role, ...). Rules that need agent lists, recipient lists, categories, negation or CEL
# cannot be expressed; non-production becomes two rules (one environment each).
CAPFENCE_POLICY = """\
policy_name: bench-treasury-capfence-subset
version: "1"
deny:
  - capability: payments.*
    amount_gt: 10000
  - capability: payments.*
    environment: staging
    amount_gt: 50
  - capability: payments.*
    environment: dev
    amount_gt: 50
require_approval:
  - capability: payments.transfer
    amount_gt: 500
  - capability: payments.payout
    amount_gt: 500
  - capability: payments.refund
    amount_gt: 100
allow:
  - capability: payments.transfer
    environment: production
    amount_lte: 10000
  - capability: payments.payout
    environment: production
    amount_lte: 10000
  - capability: payments.*
    amount_lte: 50
  - capability: payments.refund
  - capability: payments.read
  - capability: payments.*
    environment: staging
  - capability: payments.*
    environment: dev
"""

# Native rules that the CapFence subset leaves out, for the report.
CAPFENCE_NOT_EXPRESSIBLE = (
    ("deny-sanctioned-recipients", "no recipient condition (match_regex scans all payload text)"),
    ("deny-unknown-agents", "no agent (actor) condition, no negation"),
    ("deny-restricted-categories", "no category condition"),
    ("deny-support-bot-transfers", "no agent (actor) condition"),
    ("deny-large-crypto", "no rail condition, no expressions"),
    ("approve-new-recipient", "no recipient condition, no negation"),
    ("approve-procurement-software", "no agent or category condition"),
    ("approve-travel", "no category condition"),
    ("approve-new-connected-account", "no recipient condition, no expressions"),
    ("allow-treasury", "agent list dropped: kept as allow-transfer/payout-production"),
    ("allow-refunds", "agent list dropped: kept as allow-refunds for everyone"),
    ("allow-procurement-software", "no agent or category condition"),
    ("allow-payroll", "no agent or recipient condition"),
)

# --------------------------------------------------------------------------------------------
# Intents and their expected outcomes
# --------------------------------------------------------------------------------------------

ALLOW, DENY, APPROVAL = "allow", "deny", "require_approval"


@dataclass(frozen=True)
class Case:
    name: str
    agent: str
    action: str
    amount: str
    recipient: str
    environment: str
    expected: str  # on the full 20-rule policy (native, native without CEL, Cedar)
    expected_capfence: str  # on the 13-rule CapFence subset (CapFence and paywarden)
    category: str | None = None
    rail: str | None = None

    def intent(self) -> PaymentIntent:
        return PaymentIntent(
            agent=self.agent,
            action=self.action,
            amount=self.amount,
            currency="USD",
            recipient=self.recipient,
            environment=self.environment,
            category=self.category,
            rail=self.rail,
        )


CASES = (
    Case("treasury-small", "a1", "payments.transfer", "120.00", "vendor-1", "production",
         ALLOW, ALLOW),
    Case("procurement-saas", "procurement-bot", "payments.purchase", "25.00", "shop.example.com",
         "production", ALLOW, ALLOW, category="software"),
    Case("transfer-over-500", "a1", "payments.transfer", "750.00", "vendor-2", "production",
         APPROVAL, APPROVAL),
    Case("refund-over-100", "a2", "payments.refund", "150.00", "customer-42", "production",
         APPROVAL, APPROVAL),
    Case("new-recipient", "treasury-bot", "payments.transfer", "200.00", "new-vendor.example.com",
         "production", APPROVAL, ALLOW),
    Case("connected-account", "treasury-bot", "payments.payout", "400.00", "acct_1234",
         "production", APPROVAL, ALLOW),
    Case("over-hard-cap", "a1", "payments.transfer", "20000.00", "vendor-1", "production",
         DENY, DENY),
    Case("staging-over-50", "a2", "payments.transfer", "80.00", "vendor-1", "staging", DENY, DENY),
    Case("unknown-agent", "rogue-agent", "payments.transfer", "10.00", "vendor-1", "production",
         DENY, ALLOW),
    Case("sanctioned", "a3", "payments.transfer", "30.00", "evil-vendor", "production",
         DENY, ALLOW),
    Case("crypto-payout", "treasury-bot", "payments.payout", "2000.00", "vendor-1", "production",
         DENY, APPROVAL, rail="crypto"),
    Case("no-allow-rule", "a2", "payments.transfer", "300.00", "vendor-1", "production",
         DENY, ALLOW),
)  # fmt: skip

# --------------------------------------------------------------------------------------------
# Engines: each gives a callable, its pre-built inputs, and how to read an outcome
# --------------------------------------------------------------------------------------------


@dataclass
class Engine:
    name: str
    fn: Callable[..., Any]
    inputs: list[tuple[Any, ...]]  # one per case, in CASES order; the call is fn(*inputs[i])
    outcome: Callable[[Any], str]
    expected: Sequence[str]
    rules: Callable[[Any], frozenset[str]] | None = None  # deciding rule ids, when comparable
    iterations_scale: float = 1.0  # slow engines run fewer iterations
    note: str = ""
    prepare: Callable[[Engine], None] | None = None  # before each timed run (fresh state)
    keep_gc: bool = False  # leave the garbage collector on while timing


def paywarden_engine(
    name: str, policy_text: str, expected: Sequence[str], note: str, *, same_rules: bool = True
) -> Engine:
    """`same_rules`: the policy has the reference's rule ids, so deciding rules are compared."""
    policy = compile_policy(policy_text)
    state = StateSnapshot()
    inputs = [(policy, case.intent(), state, NOW) for case in CASES]
    return Engine(
        name,
        evaluate,
        inputs,
        outcome=lambda decision: decision.outcome,
        expected=expected,
        rules=(lambda decision: frozenset(decision.rule_ids)) if same_rules else None,
        note=note,
    )


def paywarden_with_intent_engine(policy_text: str) -> Engine:
    """Informational: building (validating) the PaymentIntent inside the timed call."""
    policy = compile_policy(policy_text)
    state = StateSnapshot()

    def decide(case: Case) -> Any:
        return evaluate(policy, case.intent(), state, NOW)

    return Engine(
        "paywarden + PaymentIntent()",
        decide,
        [(case,) for case in CASES],
        outcome=lambda decision: decision.outcome,
        expected=[case.expected for case in CASES],
        note="native, no CEL; intent validation and normalisation inside the timed call",
    )


def cedar_engine() -> Engine:
    import cedarpy

    policies = cedarpy.PolicySet.from_str(CEDAR_POLICIES)  # parsed once, kept alive
    entities = cedarpy.Entities.from_json_str(json.dumps(cedar_entities()))  # parsed once
    # Cedar names policies policy0, policy1, ... in source order; map them to our rule ids.
    rule_ids = _cedar_rule_ids(CEDAR_POLICIES)
    if len(rule_ids) != len(policies) or len(rule_ids) != 20:
        raise AssertionError(f"expected 20 Cedar policies, parsed {len(policies)}")
    approval_ids = frozenset(
        f"policy{i}" for i, (_, effect) in enumerate(rule_ids) if effect == APPROVAL
    )
    is_authorized = cedarpy.is_authorized
    allow_decision = cedarpy.Decision.Allow

    def decide(request: dict[str, Any]) -> tuple[str, list[str]]:
        result = is_authorized(request, policies, entities)
        reasons = result.diagnostics.reasons
        if result.decision is not allow_decision:
            return DENY, reasons
        for reason in reasons:
            if reason in approval_ids:
                return APPROVAL, reasons
        return ALLOW, reasons

    def deciding_rules(result: tuple[str, list[str]]) -> frozenset[str]:
        outcome, reasons = result
        ids = {int(reason.removeprefix("policy")) for reason in reasons}
        return frozenset(
            rule_ids[i][0]
            for i in ids
            if outcome != APPROVAL or rule_ids[i][1] == APPROVAL  # paywarden lists only those
        )

    inputs = [(_cedar_request(case),) for case in CASES]
    return Engine(
        "cedarpy 4.12.2",
        decide,
        inputs,
        outcome=lambda result: result[0],
        expected=[case.expected for case in CASES],
        rules=deciding_rules,
        note="pre-parsed PolicySet + Entities; is_authorized + reading diagnostics.reasons",
    )


def _cedar_rule_ids(text: str) -> list[tuple[str, str]]:
    ids: list[tuple[str, str]] = []
    for line in text.splitlines():
        if line.startswith("@id("):
            rule_id = line.split('"')[1]
            effect = line.split('@effect("')[1].split('"')[0]
            ids.append((rule_id, effect))
    return ids


def _cedar_request(case: Case) -> dict[str, Any]:
    intent = case.intent()
    return {
        "principal": f'Agent::"{intent.agent}"',
        "action": f'Action::"{intent.action}"',
        "resource": f'Recipient::"{intent.recipient}"',
        "context": {
            "amount": intent.amount_minor,
            "currency": intent.currency,
            "environment": intent.environment or "",
            "category": intent.category or "",
            "rail": intent.rail or "",
            "recipient": intent.recipient,
        },
    }


@dataclass
class CapFenceSetup:
    tmpdir: tempfile.TemporaryDirectory[str]
    runtime: Any = None
    events: list[Any] = field(default_factory=list)
    generation: int = 0

    def new_runtime(self) -> Any:
        """A fresh ActionRuntime: its approval DB in a new file under the temp dir (CapFence
        reads `CAPFENCE_DB_PATH`; the default is ~/.capfence/approvals.db), its audit log in
        memory (CapFence's default). Each timed run starts from empty tables, because both
        grow by a row per call and the approval lookup scans its table."""
        from capfence import ActionRuntime

        self.generation += 1
        root = Path(self.tmpdir.name)
        policy_path = root / "policy.yaml"
        policy_path.write_text(CAPFENCE_POLICY, encoding="utf-8")
        previous = os.environ.get("CAPFENCE_DB_PATH")
        os.environ["CAPFENCE_DB_PATH"] = str(root / f"approvals-{self.generation}.db")
        try:
            self.runtime = ActionRuntime.from_policy(policy_path)
        finally:
            if previous is None:
                os.environ.pop("CAPFENCE_DB_PATH", None)
            else:
                os.environ["CAPFENCE_DB_PATH"] = previous
        return self.runtime


def capfence_setup() -> CapFenceSetup:
    from capfence import ActionEvent

    setup = CapFenceSetup(tempfile.TemporaryDirectory(prefix="paywarden-bench-capfence-"))
    setup.new_runtime()
    events = setup.events
    for case in CASES:
        resource, _, action = case.action.partition(".")
        payload: dict[str, Any] = {"amount": case.amount, "recipient": case.recipient}
        if case.category:
            payload["category"] = case.category
        if case.rail:
            payload["rail"] = case.rail
        events.append(
            ActionEvent.create(
                actor=case.agent,
                action=action,
                resource=resource,
                environment=case.environment,
                risk="high",
                payload=payload,
            )
        )
    return setup


def capfence_engines(setup: CapFenceSetup) -> list[Engine]:
    expected = [case.expected_capfence for case in CASES]
    runtime = setup.runtime
    execute = Engine(
        "CapFence 0.9.0 execute",
        runtime.execute,
        [(event,) for event in setup.events],
        outcome=lambda verdict: verdict.decision,
        expected=expected,
        iterations_scale=0.1,
        note="ActionRuntime.execute: policy, audit row (in-memory SQLite), approval request "
        "(SQLite file, a new connection per query); gc left on",
        prepare=lambda engine: setattr(engine, "fn", setup.new_runtime().execute),
        # CapFence opens a SQLite connection per approval-DB call and never closes it; only the
        # cycle collector frees them, so with gc off the process runs out of file descriptors.
        keep_gc=True,
    )
    capabilities = runtime.capability_system

    def policy_only(event: Any) -> str:
        cap = f"{event.resource}.{event.action}.{event.environment}"
        context = {
            "actor": event.actor,
            "action": event.action,
            "resource": event.resource,
            "environment": event.environment,
            "risk_level": "high",
        }
        verdict: str = capabilities.evaluate_capability(cap, context, event.metadata["payload"])
        return verdict

    policy = Engine(
        "CapFence 0.9.0 policy only",
        policy_only,
        [(event,) for event in setup.events],
        outcome=lambda verdict: "deny" if verdict == "default_deny" else verdict,
        expected=expected,
        note="CapabilitySystem.evaluate_capability: its rule matching, no audit, no approvals",
    )
    return [execute, policy]


# --------------------------------------------------------------------------------------------
# Verification and timing
# --------------------------------------------------------------------------------------------


def verify(engines: Sequence[Engine], reference: Engine) -> bool:
    """Every engine gives the expected outcome on every case; Cedar names the same rules."""
    rows: list[tuple[str, str, str, str, str]] = []
    for engine in engines:
        for i, case in enumerate(CASES):
            try:
                result = engine.fn(*engine.inputs[i])
                got = engine.outcome(result)
            except Exception as error:  # report, do not crash: the table is the point
                got, result = f"error: {error}", None
            if got != engine.expected[i]:
                rows.append((engine.name, case.name, engine.expected[i], got, "outcome"))
                continue
            if engine.rules is not None and reference.rules is not None and engine is not reference:
                ours = reference.rules(reference.fn(*reference.inputs[i]))
                theirs = engine.rules(result)
                if ours != theirs:
                    rows.append(
                        (engine.name, case.name, ",".join(sorted(ours)), ",".join(sorted(theirs)),
                         "deciding rules")
                    )  # fmt: skip
    if not rows:
        return True
    print("\nMISMATCHES (engine, case, expected, got, what):")
    widths = [max(len(r[k]) for r in rows) for k in range(5)]
    for row in rows:
        print("  " + "  ".join(value.ljust(widths[k]) for k, value in enumerate(row)))
    return False


def time_calls(engine: Engine, iterations: int, warmup: int) -> list[int]:
    """Nanoseconds per call, one sample per call, intents rotated."""
    fn, inputs = engine.fn, engine.inputs
    n = len(inputs)
    schedule = [inputs[i % n] for i in range(iterations)]
    for i in range(warmup):
        fn(*inputs[i % n])
    samples = [0] * iterations
    clock = time.perf_counter_ns
    gc.collect()
    if not engine.keep_gc:
        gc.disable()
    try:
        for i, args in enumerate(schedule):
            start = clock()
            fn(*args)
            samples[i] = clock() - start
    finally:
        gc.enable()
    return samples


def timer_overhead_ns(iterations: int = 200_000) -> int:
    """Median cost of an empty timed call: included in every sample, not subtracted."""
    engine = Engine("noop", lambda: None, [()], str, [""])
    return int(statistics.median(time_calls(engine, iterations, 1000)))


@dataclass
class Stats:
    median_us: float
    p99_us: float
    mean_us: float
    iterations: int


def summarize(samples: list[int]) -> Stats:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Stats(
        statistics.median(ordered) / 1000, p99 / 1000, statistics.fmean(ordered) / 1000,
        len(ordered),
    )  # fmt: skip


def per_case_medians(engine: Engine, iterations: int) -> list[float]:
    """Median per intent (us), for the breakdown table."""
    n = len(engine.inputs)
    samples = time_calls(engine, iterations, 1000)
    return [statistics.median(samples[i::n]) / 1000 for i in range(n)]


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def print_table(title: str, results: dict[str, Stats], base: str, no_cel: str) -> None:
    """`x` columns: engine time / paywarden time (above 1: paywarden is that many times faster)."""
    print(f"\n{title}")
    header = (
        f"  {'engine':<30} {'median us':>10} {'p99 us':>9} {'mean us':>9} "
        f"{'x median':>9} {'x p99':>7} {'x median':>9} {'iters':>8}"
    )
    print(f"  {'':<30} {'':>10} {'':>9} {'':>9} {'(vs paywarden, CEL)':>17} {'(no CEL)':>17}")
    print(header)
    print("  " + "-" * (len(header) - 2))
    ref, ref_no_cel = results[base], results[no_cel]
    for name, s in results.items():
        print(
            f"  {name:<30} {s.median_us:>10.2f} {s.p99_us:>9.2f} {s.mean_us:>9.2f} "
            f"{s.median_us / ref.median_us:>9.2f} {s.p99_us / ref.p99_us:>7.2f} "
            f"{s.median_us / ref_no_cel.median_us:>9.2f} {s.iterations:>8}"
        )


def print_goals(results: dict[str, Stats], base: str, no_cel: str, cedar: str | None) -> None:
    """Issue 2: paywarden median <= 5 us and at least 10x faster than cedarpy."""
    print("\ngoal (issue 2): paywarden median <= 5 us, at least 10x faster than cedarpy")
    for name in (base, no_cel):
        s = results[name]
        line = f"  {name:<30} median {s.median_us:6.2f} us: {_verdict(s.median_us <= 5.0)}"
        if cedar is not None:
            ratio = results[cedar].median_us / s.median_us
            line += f"; cedarpy/paywarden {ratio:5.1f}x: {_verdict(ratio >= 10.0)}"
        print(line)


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def median_of_runs(runs: list[dict[str, Stats]]) -> dict[str, Stats]:
    merged: dict[str, Stats] = {}
    for name in runs[0]:
        merged[name] = Stats(
            statistics.median(run[name].median_us for run in runs),
            statistics.median(run[name].p99_us for run in runs),
            statistics.median(run[name].mean_us for run in runs),
            sum(run[name].iterations for run in runs),
        )
    return merged


def environment_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{os.cpu_count()} CPUs, {cpu}, {platform.system()} {platform.release()}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200_000, help="timed calls per engine")
    parser.add_argument("--warmup", type=int, default=5_000, help="untimed calls first")
    parser.add_argument("--runs", type=int, default=3, help="repeat and report the median run")
    parser.add_argument("--skip-capfence", action="store_true", help="leave CapFence out")
    parser.add_argument("--skip-cedar", action="store_true", help="leave cedarpy out")
    args = parser.parse_args(argv)

    print("paywarden policy-evaluation benchmark")
    print(f"  {environment_line()}")
    print(f"  command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"  {len(CASES)} intents rotated, {args.iterations} timed calls per engine per run")
    print(f"  after {args.warmup} warm-up calls, gc disabled while timing, {args.runs} run(s)")

    base, no_cel = "paywarden (20 rules, 2 CEL)", "paywarden (20 rules, no CEL)"
    full = [case.expected for case in CASES]
    subset = [case.expected_capfence for case in CASES]
    engines = [
        paywarden_engine(base, NATIVE_POLICY, full, "native YAML, compiled once"),
        paywarden_engine(no_cel, NATIVE_POLICY_NO_CEL, full,
                         "the two CEL conditions rewritten natively"),
    ]  # fmt: skip
    if not args.skip_cedar:
        engines.append(cedar_engine())
    capfence: CapFenceSetup | None = None
    if not args.skip_capfence:
        capfence = capfence_setup()
        engines.append(
            paywarden_engine("paywarden (CapFence subset)", CAPFENCE_POLICY, subset,
                             "the 13-rule CapFence file, read by paywarden", same_rules=False)
        )  # fmt: skip
        engines.extend(capfence_engines(capfence))
    engines.append(paywarden_with_intent_engine(NATIVE_POLICY_NO_CEL))

    if not verify(engines, engines[0]):
        print("\nverification failed: not timing engines that disagree")
        return 1
    print(f"\n  verified: all {len(engines)} engines give the expected outcome on every intent")
    print("  (Cedar also names exactly the same deciding rules as paywarden)")

    overhead = timer_overhead_ns()
    print(f"  timer overhead (empty timed call, included in every sample): {overhead} ns")

    runs: list[dict[str, Stats]] = []
    for run in range(args.runs):
        results: dict[str, Stats] = {}
        for engine in engines:
            iterations = max(1_000, int(args.iterations * engine.iterations_scale))
            if engine.prepare is not None:
                engine.prepare(engine)
            results[engine.name] = summarize(time_calls(engine, iterations, args.warmup))
        runs.append(results)
        print_table(f"run {run + 1} of {args.runs}", results, base, no_cel)
    final = median_of_runs(runs) if len(runs) > 1 else runs[0]
    print_table(f"MEDIAN OF {len(runs)} RUNS (per engine: median of the run medians, of the run"
                " p99s, of the run means)", final, base, no_cel)  # fmt: skip
    print_goals(final, base, no_cel, None if args.skip_cedar else "cedarpy 4.12.2")

    print("\npaywarden per intent (median us, no-CEL / with CEL):")
    no_cel = per_case_medians(engines[1], min(args.iterations, 120_000))
    with_cel = per_case_medians(engines[0], min(args.iterations, 120_000))
    for case, a, b in zip(CASES, no_cel, with_cel, strict=True):
        print(f"  {case.name:<20} {case.expected:<17} {a:>7.2f} {b:>7.2f}")

    print("\nengine notes:")
    for engine in engines:
        print(f"  {engine.name:<30} {engine.note}")
    if capfence is not None:
        print("\nnative rules the CapFence subset cannot express:")
        for rule_id, why in CAPFENCE_NOT_EXPRESSIBLE:
            print(f"  {rule_id:<30} {why}")
        capfence.tmpdir.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
