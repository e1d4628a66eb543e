"""Compiled CEL (`paywarden.policy.cel_compile`) and the CEL library always agree.

Method: Hypothesis generates expression trees in the simple subset, prints them as CEL text
(random quotes, escapes, hex and negative literals, whitespace, optional parentheses), and
random facts (intents with and without optional fields, metadata with and without keys and of
every allowed type, budgets, phases, instants and time zones). The compiled check, the same
check written inline in a generated matcher, and the library (`cel_library_check`, the path
every other expression takes) must give the same bool, or all fail with RuleEvaluationError.
Tables pin the corners (null, missing keys, mixed types, error absorption) to CEL's answer.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import cel
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from paywarden import PaymentIntent
from paywarden.errors import InvalidIntentError
from paywarden.money import DEFAULT_CURRENCIES
from paywarden.policy import compile_policy, evaluate
from paywarden.policy.cel_compile import VARIABLES, compile_cel
from paywarden.policy.cel_parse import (
    _SIMPLE_ESCAPES,
    METHODS,
    RELATIONS,
    RESERVED,
    Compare,
    Field,
    HasKey,
    InList,
    Literal,
    Logical,
    Method,
    Node,
    Not,
    Value,
    Variable,
    parse,
)
from paywarden.policy.decision import AnomalyFacts, BudgetTrace
from paywarden.policy.document import Mark
from paywarden.policy.facts import Facts, RuleEvaluationError, StateSnapshot
from paywarden.policy.fx import EMPTY_FX
from paywarden.policy.matcher import generate
from paywarden.policy.report import CompileReport
from paywarden.policy.rules import Check, RuleContext, cel_check, cel_library_check

NAMES = sorted(
    (VARIABLES - {"metadata", "anomaly"})
    | {"anomaly.amount_score", "anomaly.new_recipient", "anomaly.rate_spike"}
)
KEYS = ["ticket", "n", "flag", "note", "a.b", "x-y", "as", "in"]
STRINGS = [
    "", "a", "b", "z", "Z", "é", "😀", "FIN-", "FIN-7", "OPS-1", "crypto", "stripe", "USD",
    "usd", "x402.pay", "payments.transfer", "research-01", "agent-b", "acct_", "acct_1AbC",
    "vendor.example.com", ".example.com", "example", "https://", "https://pay.evil.example/x",
    "url", "domain", "account", "id", "COMMIT", "EXPLORE", "production", "staging", "travel",
    "mon", "tue", "sat", "sess-1", "Bob", "[redacted]", '"', "'", "\\", "\n", "\t", "a\x00b",
]  # fmt: skip
INTS = st.one_of(
    st.sampled_from(
        [0, 1, -1, 5, 9, 12, 17, 23, 59, 100, 1250, 25000, 100000, 10**15, 2**53, 2**53 + 1,
         -(2**53), 2**63 - 1, -(2**63)]
    ),
    st.integers(-(2**63), 2**63 - 1),
)  # fmt: skip
DOUBLES = st.one_of(
    st.sampled_from([0.0, -0.0, 0.5, 0.8, 1.0, 1.5, 12.0, 2.0**53, 1e300, 5e-324]),
    st.floats(allow_nan=False, allow_infinity=False),
)
LITERALS: st.SearchStrategy[Value] = st.one_of(
    st.sampled_from(STRINGS), st.text(max_size=4), INTS, DOUBLES, st.booleans(), st.none()
)
NOW = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)

# Trees ------------------------------------------------------------------------------------

_KIND_LITERALS: dict[str, st.SearchStrategy[Value]] = {
    "amount_minor": INTS,
    "local_hour": st.integers(-1, 24),
    "local_minute": st.integers(-1, 60),
    "budget_ratio": st.one_of(DOUBLES, st.integers(0, 3)),
    "anomaly.amount_score": st.one_of(DOUBLES, st.integers(-3, 40)),
    "anomaly.new_recipient": st.booleans(),
    "anomaly.rate_spike": st.booleans(),
}
# Comparisons between a variable and a literal of its own type, so results are not all
# `false` or errors.
TYPED_COMPARISONS = st.sampled_from(NAMES).flatmap(
    lambda name: st.builds(
        Compare,
        st.sampled_from(sorted(RELATIONS)),
        st.just(Variable(name)),
        st.builds(Literal, _KIND_LITERALS.get(name, st.sampled_from([*STRINGS, None]))),
    )
)
# Typed comparisons and `has` weigh more, or most trees would only meet type errors.
LEAVES: st.SearchStrategy[Node] = st.one_of(
    st.builds(Literal, LITERALS),
    st.builds(Variable, st.sampled_from(NAMES)),
    st.builds(Field, st.sampled_from(KEYS)),
    st.builds(HasKey, st.sampled_from(KEYS)),
    TYPED_COMPARISONS,
    TYPED_COMPARISONS,
    TYPED_COMPARISONS,
    st.builds(HasKey, st.sampled_from(KEYS)),
)


def _extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.one_of(
        st.builds(
            Method,
            children,
            st.sampled_from(sorted(METHODS)),
            st.one_of(st.sampled_from(STRINGS), st.text(max_size=3)),
        ),
        st.builds(Not, children),
        st.builds(
            Logical,
            st.sampled_from(["&&", "||"]),
            st.lists(children, min_size=2, max_size=4).map(tuple),
        ),
        st.builds(Compare, st.sampled_from(sorted(RELATIONS)), children, children),
        st.builds(InList, children, st.lists(LITERALS, max_size=4).map(tuple)),
    )


TREES = st.recursive(LEAVES, _extend, max_leaves=8)

# Printing trees as CEL text ---------------------------------------------------------------

_OR, _AND, _RELATION, _UNARY, _MEMBER = 1, 2, 3, 4, 5
_ESCAPE_LETTERS = {value: letter for letter, value in _SIMPLE_ESCAPES.items()}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class Printer:
    """CEL text for a tree, written a little differently each time (seeded by Hypothesis)."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd

    def space(self) -> str:
        return self.rnd.choice(["", "", " ", " ", "\n", "\t", "  "])

    def gap(self) -> str:
        return self.rnd.choice([" ", " ", "\n", "\t "])

    def show(self, node: Node, at_least: int = _OR) -> str:
        text, level = self.text(node)
        if level < at_least or self.rnd.random() < 0.1:
            return f"({self.space()}{text}{self.space()})"
        return text

    def text(self, node: Node) -> tuple[str, int]:
        s = self.space
        if isinstance(node, Literal):
            return self.literal(node.value)
        if isinstance(node, Variable):
            return node.name, _MEMBER
        if isinstance(node, Field):
            if self.plain_key(node.key) and self.rnd.random() < 0.6:
                return f"metadata{s()}.{s()}{node.key}", _MEMBER
            return f"metadata{s()}[{s()}{self.string(node.key)}{s()}]", _MEMBER
        if isinstance(node, HasKey):
            if self.plain_key(node.key) and self.rnd.random() < 0.6:
                return f"has{s()}({s()}metadata{s()}.{s()}{node.key}{s()})", _MEMBER
            return f"{self.string(node.key)}{self.gap()}in{self.gap()}metadata", _RELATION
        if isinstance(node, Method):
            receiver = self.show(node.receiver, _MEMBER)
            argument = self.string(node.argument)
            return f"{receiver}{s()}.{s()}{node.name}{s()}({s()}{argument}{s()})", _MEMBER
        if isinstance(node, Not):
            return f"!{s()}{self.show(node.operand, _MEMBER)}", _UNARY
        if isinstance(node, Logical):
            level = _AND if node.op == "&&" else _OR
            joined = f"{s()}{node.op}{s()}".join(self.show(o, level + 1) for o in node.operands)
            return joined, level
        if isinstance(node, Compare):
            left, right = self.show(node.left, _RELATION), self.show(node.right, _UNARY)
            return f"{left}{s()}{node.op}{s()}{right}", _RELATION
        values = f",{s()}".join(self.literal(value)[0] for value in node.values)
        operand = self.show(node.operand, _RELATION)
        return f"{operand}{self.gap()}in{self.gap()}[{s()}{values}{s()}]", _RELATION

    @staticmethod
    def plain_key(key: str) -> bool:
        return bool(_IDENTIFIER.match(key)) and key not in RESERVED

    def literal(self, value: Value) -> tuple[str, int]:
        if value is None or isinstance(value, bool):
            return {None: "null", True: "true", False: "false"}[value], _MEMBER
        if isinstance(value, str):
            return self.string(value), _MEMBER
        sign = "-" + self.space() if str(value).startswith("-") else ""
        if isinstance(value, int):
            size = abs(value)
            digits = self.rnd.choice([str(size), f"0x{size:x}", f"0x{size:X}"])
        else:
            digits = self.rnd.choice([repr(abs(value)), f"{abs(value):.17e}"])
        return sign + digits, _UNARY  # a receiver or `!` operand needs parentheses

    def string(self, value: str) -> str:
        quote = self.rnd.choice("\"'")
        return quote + "".join(self.char(char, quote) for char in value) + quote

    def char(self, char: str, quote: str) -> str:
        if char not in (quote, "\\", "\n", "\r") and self.rnd.random() < 0.7:
            return char
        code = ord(char)
        options = [f"\\U{code:08x}"]
        if char in _ESCAPE_LETTERS:
            options.append("\\" + _ESCAPE_LETTERS[char])
        if code < 0x100:
            options += [f"\\x{code:02x}", f"\\X{code:02X}", f"\\{code:03o}"]
        if code < 0x10000:
            options.append(f"\\u{code:04X}")
        return self.rnd.choice(options)


# Facts ------------------------------------------------------------------------------------

METADATA_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.sampled_from([0, 1, 5, 2**53]),
    st.sampled_from([s for s in STRINGS if s.isprintable()]),
    st.text(st.characters(categories=("L", "N", "P", "S")), max_size=4),
)
RECIPIENTS = [
    "https://pay.evil.example/x", "vendor.example.com", "10.0.0.7", "bob@acme.com", "acct_1AbC",
    "acct_", "some-id", "0x52908400098527886E0F7030069857D2E4169EE7",
]  # fmt: skip


def _optional(*values: str) -> st.SearchStrategy[str | None]:
    return st.sampled_from([None, *values])


@st.composite
def facts(draw: st.DrawFn) -> Facts:
    currency = draw(st.sampled_from(["USD", "JPY"]))
    minor = draw(st.one_of(st.integers(1, 300_000), st.sampled_from([25000, 100000, 10**15])))
    try:
        intent = PaymentIntent(
            agent=draw(st.sampled_from(["research-01", "agent-b", "a"])),
            action=draw(st.sampled_from(["x402.pay", "payments.transfer"])),
            amount=str(minor) if currency == "JPY" else f"{minor // 100}.{minor % 100:02d}",
            currency=currency,
            recipient=draw(st.sampled_from(RECIPIENTS)),
            environment=draw(_optional("production", "staging")),
            category=draw(_optional("travel", "crypto")),
            purpose=draw(_optional("FIN-7 invoice", "", "é")),
            recipient_name=draw(_optional("Bob", "a")),
            rail=draw(_optional("crypto", "stripe")),
            session_id=draw(_optional("sess-1")),
            metadata=draw(st.dictionaries(st.sampled_from(KEYS), METADATA_VALUES, max_size=4)),
        )
    except InvalidIntentError:
        reject()
    limit = draw(st.sampled_from([0, 1, 100, 1000]))
    budgets = tuple(
        BudgetTrace(f"b{index}", "USD", limit, spent, 0, 0, "none")
        for index, spent in enumerate(
            draw(st.lists(st.sampled_from([0, 50, 80, 100, 2**53]), max_size=2))
        )
    )
    anomaly = draw(
        st.one_of(
            st.none(),
            st.builds(
                AnomalyFacts,
                st.sampled_from([0.0, -2.5, 3.5, 3.4999, 31.06, 465.9]),
                st.booleans(),
                st.booleans(),
                st.just(10),
                st.just(1),
                st.just(1),
            ),
        )
    )
    state = StateSnapshot(
        phase=draw(_optional("commit", "EXPLORE")), budgets=budgets, anomaly=anomaly
    )
    now = NOW + timedelta(minutes=draw(st.integers(-(10**6), 10**6)))
    zone = ZoneInfo(draw(st.sampled_from(["UTC", "America/New_York", "Asia/Kolkata"])))
    return Facts(intent, state, now, zone)


# Helpers ----------------------------------------------------------------------------------


def library(expression: str) -> Check:
    context = RuleContext(CompileReport(), "r", DEFAULT_CURRENCIES, "USD", EMPTY_FX)
    check = cel_library_check(expression, context, Mark(1, 1))
    assert check is not None and context.report.ok, context.report.errors
    return check


def outcome(check: Check, one: Facts) -> bool | str:
    try:
        value = check(one)
    except RuleEvaluationError:
        return "error"
    assert type(value) is bool
    return value


def inline_outcome(check: Check, one: Facts) -> bool | str:
    """The same check as written inline in a generated matcher."""
    try:
        (value,) = generate([[check]])(one)
    except RuleEvaluationError:
        return "error"
    assert type(value) is bool
    return value


def assert_agree(expression: str, cases: list[Facts]) -> None:
    compiled = compile_cel(expression)
    assert compiled is not None, expression
    reference = library(expression)
    for one in cases:
        expected = outcome(reference, one)
        assert outcome(compiled, one) == expected, (expression, one.cel_variables())
        assert inline_outcome(compiled, one) == expected, (expression, one.cel_variables())


# Properties -------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=TREES, rnd=st.randoms(use_true_random=False), cases=st.lists(facts(), min_size=3))
def test_compiled_cel_and_the_library_agree(
    tree: Node, rnd: random.Random, cases: list[Facts]
) -> None:
    expression = Printer(rnd).show(tree)
    if parse(expression, VARIABLES) is None:  # only deeper than the subset's limit
        reject()
    assert_agree(expression, cases)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tree=TREES,
    rnd=st.randoms(use_true_random=False),
    edits=st.lists(
        st.tuples(
            st.integers(0, 10_000),
            st.sampled_from(
                [
                    "",
                    "!",
                    "-",
                    ".",
                    "(",
                    ")",
                    "[",
                    "]",
                    '"',
                    "\\",
                    "u",
                    "0",
                    "1",
                    "e",
                    "x",
                    " ",
                    "&",
                    "|",
                    "=",
                    "<",
                    ",",
                    "/",
                    "?",
                    "in",
                    "_",
                ]
            ),
            st.integers(0, 2),
        ),
        min_size=1,
        max_size=3,
    ),  # fmt: skip
    cases=st.lists(facts(), min_size=2, max_size=2),
)
def test_text_near_the_subset_is_compiled_only_when_the_library_reads_it_the_same(
    tree: Node,
    rnd: random.Random,
    edits: list[tuple[int, str, int]],
    cases: list[Facts],
) -> None:
    """Valid expressions, one to three characters changed: when the parser still accepts the
    text, the library must accept it too and agree on every result."""
    text = Printer(rnd).show(tree)
    for position, insert, delete in edits:
        at = position % (len(text) + 1)
        text = text[:at] + insert + text[at + delete :]
    if compile_cel(text) is None:
        return
    cel.compile(text)  # raises if the library would reject what the parser accepted
    assert_agree(text, cases)


# Tables -----------------------------------------------------------------------------------


def _facts(
    phase: str | None = None, ratio: tuple[int, int] | None = None, **fields: object
) -> Facts:
    values: dict[str, object] = {
        "agent": "research-01",
        "action": "x402.pay",
        "amount": "250.00",
        "currency": "USD",
        "recipient": "acct_1AbC",
        **fields,
    }
    budgets = () if ratio is None else (BudgetTrace("b", "USD", ratio[1], ratio[0], 0, 0, "none"),)
    intent = PaymentIntent(**values)  # type: ignore[arg-type]
    return Facts(intent, StateSnapshot(phase, budgets), NOW, ZoneInfo("America/New_York"))


M = {"s": "x", "n": 1, "t": True, "f": False, "z": None, "big": 2**53, "dot.key": "v"}
EDGE_CASES: list[tuple[str, Facts, bool | str]] = [
    # null fields
    ('category == "x"', _facts(), False),
    ('category != "x"', _facts(), True),
    ("category == null", _facts(), True),
    ("category != null", _facts(category="travel"), True),
    ('category < "x"', _facts(), "error"),
    ('category in ["travel", null]', _facts(), True),
    ('purpose.contains("x")', _facts(), "error"),
    ('purpose != null && purpose.contains("x")', _facts(), False),
    ("phase == null", _facts(), True),
    ('phase == "COMMIT"', _facts(phase="commit"), True),
    ("null == null", _facts(), True),
    ("null < null", _facts(), "error"),
    # metadata keys
    ("has(metadata.s)", _facts(metadata=M), True),
    ("has(metadata.x)", _facts(metadata=M), False),
    ("has(metadata.z)", _facts(metadata=M), True),
    ('"dot.key" in metadata', _facts(metadata=M), True),
    ('"x" in metadata', _facts(metadata=M), False),
    ("metadata.x == 1", _facts(metadata=M), "error"),
    ("metadata.x != 1", _facts(metadata=M), "error"),
    ('metadata["x"] == null', _facts(metadata=M), "error"),
    ("metadata.z == null", _facts(metadata=M), True),
    ('metadata["dot.key"] == "v"', _facts(metadata=M), True),
    ("metadata.t", _facts(metadata=M), True),
    ("metadata.s", _facts(metadata=M), "error"),  # not a bool
    ("amount_minor", _facts(), "error"),
    # types: equality never fails, ordering does
    ('amount_minor == "25000"', _facts(), False),
    ('amount_minor != "25000"', _facts(), True),
    ('amount_minor < "25000"', _facts(), "error"),
    ("metadata.n == true", _facts(metadata=M), False),
    ("metadata.t == 1", _facts(metadata=M), False),
    ("metadata.t in [1]", _facts(metadata=M), False),
    ("metadata.n in [true]", _facts(metadata=M), False),
    ("metadata.n in [1.0]", _facts(metadata=M), True),
    ("metadata.n < true", _facts(metadata=M), "error"),
    ("metadata.f < metadata.t", _facts(metadata=M), True),
    ('metadata.n.startsWith("1")', _facts(metadata=M), "error"),
    ('metadata.s.endsWith("")', _facts(metadata=M), True),
    ("agent in []", _facts(), False),
    # numbers: int and double compare as doubles, with the int rounded as the library does
    ("budget_ratio == 1", _facts(ratio=(100, 100)), True),
    ("budget_ratio > 0.5", _facts(ratio=(80, 100)), True),
    ("budget_ratio == 0", _facts(), True),
    ("budget_ratio < 9007199254740993", _facts(ratio=(2**53, 1)), False),
    ("budget_ratio == 9007199254740993", _facts(ratio=(2**53, 1)), True),
    ("metadata.big == 9007199254740993", _facts(metadata=M), False),
    ("metadata.n < 1.5", _facts(metadata=M), True),
    ("-0.0 == 0", _facts(), True),
    ("amount_minor > -9223372036854775808", _facts(), True),
    ("amount_minor == 0x61a8", _facts(), True),
    # strings order by code point
    ('"é" < "z"', _facts(), False),
    ('"Z" < "a"', _facts(), True),
    ('recipient_name < "b"', _facts(), "error"),
    ('recipient_name < "b"', _facts(recipient_name="a"), True),
    ('agent == "\\x72esearch-01"', _facts(), True),
    ("agent == 'research\\u002D01'", _facts(), True),
    # && and ||: a decisive operand absorbs an error on the other side
    ("false && metadata.x", _facts(metadata=M), False),
    ("metadata.x && false", _facts(metadata=M), False),
    ("true && metadata.x", _facts(metadata=M), "error"),
    ("metadata.x || true", _facts(metadata=M), True),
    ("metadata.x || false", _facts(metadata=M), "error"),
    ("metadata.s && false", _facts(metadata=M), False),
    ("metadata.s && true", _facts(metadata=M), "error"),
    ("metadata.x && metadata.f", _facts(metadata=M), False),
    ("metadata.x || metadata.t", _facts(metadata=M), True),
    ("metadata.x || metadata.y", _facts(metadata=M), "error"),
    ("metadata.x && metadata.y && false", _facts(metadata=M), False),
    ("!metadata.s", _facts(metadata=M), "error"),
    ("!metadata.f", _facts(metadata=M), True),
    ("!(metadata.f || metadata.x)", _facts(metadata=M), "error"),
    # relations chain to the left
    ("1 < 2 < true", _facts(), False),
    ("true == (1 == 1)", _facts(), True),
    ("1 == 1 == true", _facts(), True),
    # time, in the policy zone (15:30 UTC is 11:30 on a Tuesday in New York)
    ('local_weekday == "tue" && local_hour == 11 && local_minute >= 30', _facts(), True),
    ("local_hour >= 12", _facts(), False),
    # payee
    ('payee_kind == "account" && payee_host == null', _facts(), True),
    ('payee_host.endsWith(".example")', _facts(recipient="https://pay.evil.example/x"), True),
]


@pytest.mark.parametrize(("expression", "one", "expected"), EDGE_CASES)
def test_edge_cases_give_the_library_answer(
    expression: str, one: Facts, expected: bool | str
) -> None:
    compiled = compile_cel(expression)
    assert compiled is not None, "outside the subset"
    assert outcome(library(expression), one) == expected
    assert outcome(compiled, one) == expected
    assert inline_outcome(compiled, one) == expected


NOT_COMPILED = [
    "budgets.b.remaining_minor < 100",  # budgets are left to the library
    "size(agent) > 3",
    'purpose.matches("^FIN")',
    "amount_minor + 1 > 5",
    "amount_minor > 5 ? true : false",
    "!!metadata.t",  # CEL drops the pair without checking the type
    "amount_minor == 1u",
    "amount_minor == 007",
    'agent == r"a"',
    'agent == """a"""',
    "amount_minor > 5 // a comment",
    "agent in ['a',]",
    "has(metadata.x.y)",
    'has(metadata["x"])',
    "metadata == {}",
    "metadata.as == 1",  # a reserved word after a dot
    "-amount_minor < 0",
    "- -1 == amount_minor",
    "amount_minor > 9223372036854775808",
    "amount_minor > 1e999",
    "agent.startsWith(1)",
    "[1].exists(x, x > 0)",
    "nope > 1",
    "amount_minor >",
    "1 == 1 == 1 == 1 == 1 == 1 == 1 == 1 == 1 == 1 == 1 == 1 == 1 == 1 == 1 == 1 == 1 == 1"
    " == 1 == 1 == 1 == 1 == 1 == 1 == 1 == 1",  # deeper than DEPTH_MAX
    "(" * 30 + "true" + ")" * 30,
]


@pytest.mark.parametrize("expression", NOT_COMPILED)
def test_expressions_outside_the_subset_go_to_the_library(expression: str) -> None:
    assert compile_cel(expression) is None


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("amount_minor >", "`when` is not valid CEL"),
        ("amont_minor > 5", "`when` uses unknown variable `amont_minor`"),
        ("[1].exists(x, y > 0)", "`when` uses unknown variable `y`"),
    ],
)
def test_invalid_expressions_are_still_reported(expression: str, message: str) -> None:
    context = RuleContext(CompileReport(), "r", DEFAULT_CURRENCIES, "USD", EMPTY_FX)
    assert cel_check(expression, context, Mark(1, 1)) is None
    assert [p.message for p in context.report.errors][0].startswith(message)


def test_literals_never_become_generated_source() -> None:
    """Strings and keys from the policy reach the matcher as constants, not as code."""
    marker = 'zq"+__import__("os")+"'
    expression = (
        f"has(metadata.zqkey) && metadata['zq{chr(92)}'key'] == {marker!r} "
        f'|| agent.startsWith("zq") || category in ["zq", null]'
    )
    check = compile_cel(expression)
    assert check is not None
    template = vars(check)["paywarden_inline"].template
    assert "zq" not in template and "import" not in template
    assert outcome(check, _facts(agent="zq-1")) is True


def test_a_policy_with_only_compiled_cel_never_imports_the_library() -> None:
    script = (
        "import sys\n"
        "from paywarden.policy import compile_policy\n"
        "text = 'currency: USD\\nrules:\\n  - {id: r, effect: deny, when: %r}\\n'\n"
        "compile_policy(text % sys.argv[1])\n"
        "print('cel' in sys.modules)\n"
    )
    compiled = 'rail == "crypto" && amount_minor > 100000'
    for expression, imported in ((compiled, "False"), ("size(agent) > 3", "True")):
        run = subprocess.run(
            [sys.executable, "-c", script, expression], capture_output=True, text=True, check=True
        )
        assert run.stdout.strip() == imported, (expression, run.stderr)


def test_documented_examples_are_compiled_and_decide_like_the_library() -> None:
    policy = compile_policy(
        "currency: USD\nrules:\n"
        "  - id: big\n    effect: require_approval\n"
        '    when: \'amount_minor > 50000 && currency == "USD" && '
        '!recipient.endsWith(".partners.example")\'\n'
        "  - id: ticketed\n    effect: allow\n"
        "    when: 'has(metadata.ticket) && metadata.ticket.startsWith(\"FIN-\")'\n"
    )
    for rule in policy.rules:
        (check,) = rule.checks
        assert "paywarden_inline" in vars(check), rule.rule_id
    intent = _facts(amount="600.00", metadata={"ticket": "FIN-7"}).intent
    decision = evaluate(policy, intent, now=NOW)
    assert (decision.outcome, decision.rule_ids) == ("require_approval", ("big",))
