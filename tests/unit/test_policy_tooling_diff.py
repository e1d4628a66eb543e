"""`policy diff`: every known widening is flagged, a policy never flips against itself, and
the decisions compared are the evaluator's own."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paywarden.policy import evaluate
from paywarden.policy.compiler import compile_policy
from paywarden.policy.tooling.diff import (
    EXIT_SAME,
    EXIT_UNDECIDED,
    EXIT_WIDENING,
    DiffReport,
    diff_policies,
)
from paywarden.policy.tooling.space import Point
from paywarden.testing import example_intent

DATA = Path(__file__).resolve().parents[1] / "data" / "policy_tooling"
KNOWN = yaml.safe_load((DATA / "widenings.yaml").read_text(encoding="utf-8"))
EXIT_FOR = {"widening": EXIT_WIDENING, "undecided": EXIT_UNDECIDED, "same": EXIT_SAME}


def _diff(old: str, new: str, samples: list[tuple[str, Point]] | None = None) -> DiffReport:
    return diff_policies(old, compile_policy(old), new, compile_policy(new), samples or [])


@pytest.mark.parametrize("change", KNOWN, ids=[change["name"] for change in KNOWN])
def test_each_known_change_gets_its_verdict(change: dict[str, Any]) -> None:
    report = _diff(change["old"], change["new"])
    assert report.exit_status == EXIT_FOR[change["expect"]], report.lines()


def test_the_suite_covers_every_dimension_and_verdict() -> None:
    assert len(KNOWN) >= 20
    assert {change["expect"] for change in KNOWN} == set(EXIT_FOR)


def test_a_widening_flip_names_the_boundary_intent_and_both_decisions() -> None:
    report = _diff(
        "currency: USD\nrules:\n  - {id: a, effect: allow, amount: {lte: 500}}\n",
        "currency: USD\nrules:\n  - {id: a, effect: allow, amount: {lte: '500.01'}}\n",
    )
    (flip,) = [f for f in report.flips if f.point.phase is None]
    assert flip.widening and flip.kind == "deny -> allow"
    assert flip.point.intent.amount_minor == 50001  # exactly the one cent that changed
    assert (flip.old.reason_code, flip.new.rule_ids) == ("no_rule_matched", ("a",))
    assert report.lines()[-1].startswith("WIDENING")


def test_every_flip_agrees_with_the_evaluator() -> None:
    change = next(c for c in KNOWN if c["name"] == "business-hours-extended-by-a-minute")
    old, new = compile_policy(change["old"]), compile_policy(change["new"])
    report = diff_policies(change["old"], old, change["new"], new)
    assert report.flips
    for flip in report.flips:
        point = flip.point
        assert evaluate(old, point.intent, now=point.now).outcome == flip.old.outcome
        assert evaluate(new, point.intent, now=point.now).outcome == flip.new.outcome
        local = point.now.astimezone(old.timezone)
        assert (local.hour, local.minute) == (8, 59)


def test_sample_intents_are_compared_too() -> None:
    old = "currency: USD\nrules:\n  - {id: a, effect: allow, recipients: [a.example.com]}\n"
    new = "currency: USD\nrules:\n  - {id: a, effect: allow, recipients: ['*.example.com']}\n"
    sample = Point(
        example_intent("1.00", recipient="shop.example.com"),
        None,
        datetime(2026, 1, 7, tzinfo=UTC),
        (),
    )
    report = _diff(old, new, [("shop", sample)])
    shop = [flip for flip in report.flips if flip.sample == "shop"]
    assert shop and shop[0].widening
    assert report.undecided  # a recipient glob: the partition alone cannot decide it
    assert report.exit_status == EXIT_WIDENING  # a concrete widening outranks undecided


# Property: a policy diffed against itself never flips. -----------------------------------------

ACTIONS = ["payments.transfer", "payments.refund", "payments.*"]
EFFECTS = ["deny", "require_approval", "allow"]


@st.composite
def _rule(draw: st.DrawFn, index: int) -> str:
    parts = [f"id: r{index}", f"effect: {draw(st.sampled_from(EFFECTS))}"]
    if draw(st.booleans()):
        parts.append(f"actions: [{draw(st.sampled_from(ACTIONS))!r}]")
    if draw(st.booleans()):
        op = draw(st.sampled_from(["gt", "gte", "lt", "lte"]))
        parts.append(
            f"amount: {{{op}: '{draw(st.integers(0, 2000))}.{draw(st.integers(0, 99)):02d}'}}"
        )
    if draw(st.booleans()):
        parts.append(f"currencies: [{draw(st.sampled_from(['USD', 'EUR', 'JPY']))}]")
    if draw(st.booleans()):
        start, end = sorted(draw(st.lists(st.integers(0, 23), min_size=2, max_size=2, unique=True)))
        parts.append(f"during: {{hours: '{start:02d}:00-{end:02d}:00'}}")
    if draw(st.booleans()):
        parts.append("environments_not: [staging]")
    return "  - {" + ", ".join(parts) + "}\n"


@st.composite
def _policy(draw: st.DrawFn) -> str:
    count = draw(st.integers(1, 4))
    text = "currency: USD\ntimezone: America/New_York\n"
    text += 'fx: {as_of: "2026-11-01", rates: {"EUR/USD": "1.08"}}\nrules:\n'
    text += "".join(draw(_rule(i)) for i in range(count))
    if draw(st.booleans()):
        text += "budgets:\n  - {id: daily, limit: 1000, window: day, gates: {restrict: 0.8}}\n"
    return text


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_policy())
def test_a_policy_diffed_against_itself_has_no_flips(text: str) -> None:
    report = _diff(text, text)
    assert report.flips == []
    assert report.exit_status in (EXIT_SAME, EXIT_UNDECIDED)
    assert report.cells > 0
