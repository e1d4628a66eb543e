"""The simple CEL subset compiled into the generated policy matcher, with CEL's own semantics.

`compile_cel` parses a `when:` expression (`paywarden.policy.cel_parse`) and, when it is in the
subset, translates the tree into an inline template over the matcher's locals
(`paywarden.policy.matcher`). Each expression is exactly what the CEL library computes on the
same facts, measured case by case against it (tests/unit/test_cel_compile.py):

- `==`, `!=` and `in [...]` never fail: values of different types are unequal (`1 == "1"` and
  `1 == true` are false, `category == "x"` is false when there is no category), except an int
  and a double, which compare as doubles (the int converted to the nearest double, as the
  library does).
- `<`, `<=`, `>`, `>=` compare two strings (by code point), two bools, or two numbers (an int
  with a double as doubles); anything else fails, including null and NaN.
- `startsWith`, `endsWith`, `contains` fail on anything but a string (null included).
- `metadata.key` and `metadata["key"]` fail when the key is absent; `has(metadata.key)` and
  `"key" in metadata` do not.
- `!` fails on anything but a bool. `&&` is false when any operand is false, even if another
  fails; otherwise it fails if any operand fails or is not a bool. `||` likewise with true.

A failure raises `RuleEvaluationError`, so the rule errors and the decision fails closed. Where
the types are known when the policy compiles, the template is plain Python (`rail == "crypto"`
reads `(rail == _k_c0)`); elsewhere it calls the helpers below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from paywarden.policy.cel_parse import (
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
from paywarden.policy.facts import ANOMALY_GETTERS, CEL_GETTERS, Facts, RuleEvaluationError
from paywarden.policy.matcher import compile_check

Check = Callable[[Facts], bool]

# Static kinds of a compiled value: what it can be at run time, known when compiling.
STRING, OPTIONAL_STRING, INT, DOUBLE, BOOL, NULL, ANY = (
    "string", "string?", "int", "double", "bool", "null", "any"
)  # fmt: skip
_TEXT = frozenset({STRING, OPTIONAL_STRING, NULL})  # Python `==` is CEL `==` among these

# Variables read straight from the matcher's locals (see matcher._LOCALS) or the facts.
_DIRECT: Mapping[str, tuple[str, str]] = {
    "agent": ("agent", STRING),
    "action": ("action", STRING),
    "amount_minor": ("amount_minor", INT),  # 0..10**15: exact as a double too
    "currency": ("currency", STRING),
    "recipient": ("i.recipient", STRING),
    "payee_kind": ("i.payee.kind", STRING),
    "payee_identity": ("i.payee.identity", STRING),
    "payee_host": ("i.payee.host", OPTIONAL_STRING),
    "environment": ("environment", OPTIONAL_STRING),
    "category": ("category", OPTIONAL_STRING),
    "purpose": ("i.purpose", OPTIONAL_STRING),
    "recipient_name": ("i.recipient_name", OPTIONAL_STRING),
    "rail": ("rail", OPTIONAL_STRING),
    "session_id": ("i.session_id", OPTIONAL_STRING),
    "phase": ("f.state.phase", OPTIONAL_STRING),
}
# Variables read through their CEL getter (paywarden.policy.facts.CEL_GETTERS).
_GETTERS: Mapping[str, str] = {
    "local_hour": INT,
    "local_minute": INT,
    "local_weekday": STRING,
    "budget_ratio": DOUBLE,
    "x402_pay_to": OPTIONAL_STRING,
    "x402_network": OPTIONAL_STRING,
    "x402_scheme": OPTIONAL_STRING,
    "x402_resource": OPTIONAL_STRING,
}
# The anomaly facts (`anomaly.amount_score` ...), each read through its own getter.
_ANOMALY: Mapping[str, str] = {
    "anomaly.amount_score": DOUBLE,
    "anomaly.new_recipient": BOOL,
    "anomaly.rate_spike": BOOL,
}
# `budgets` is not in the subset: expressions on it go to the library.
VARIABLES = frozenset({*_DIRECT, *_GETTERS, "metadata", "anomaly"})


def compile_cel(expression: str) -> Check | None:
    """The compiled check of `expression`, or None when it is outside the subset."""
    tree = parse(expression, VARIABLES)
    if tree is None:
        return None
    translator = _Translator()
    code = translator.node(tree)
    template = code.source if code.kind == BOOL else translator.call(result, code.source)
    return compile_check(template, translator.constants)


# Run-time semantics -----------------------------------------------------------------------

_TYPE_NAMES: Mapping[type, str] = {
    type(None): "null",
    bool: "bool",
    int: "int",
    float: "double",
    str: "string",
}
_NUMBERS = frozenset({"int", "double"})
_ORDERED = frozenset({"string", "int", "bool"})


def cel_type(value: object) -> str:
    """The CEL type name of a Python value as the CEL library converts it."""
    name = _TYPE_NAMES.get(type(value))
    if name is not None:
        return name
    for kind, kind_name in (
        (bool, "bool"), (int, "int"), (float, "double"), (str, "string"), (Mapping, "map")
    ):  # fmt: skip
        if isinstance(value, kind):
            return kind_name
    return "other"


def _fail(message: str) -> RuleEvaluationError:
    return RuleEvaluationError(f"`when` failed: {message}")


def equal(left: object, right: object) -> bool:
    left_type, right_type = cel_type(left), cel_type(right)
    if left_type == right_type:
        return bool(left == right)
    if left_type in _NUMBERS and right_type in _NUMBERS:
        return float(left) == float(right)  # type: ignore[arg-type]
    return False


def not_equal(left: object, right: object) -> bool:
    return not equal(left, right)


def _ordered(left: object, right: object, op: str) -> tuple[Any, Any]:
    """The two operands as Python compares them for CEL ordering, or the failure."""
    left_type, right_type = cel_type(left), cel_type(right)
    if left_type == right_type and left_type in _ORDERED:
        return left, right
    if left_type in _NUMBERS and right_type in _NUMBERS:
        a, b = float(left), float(right)  # type: ignore[arg-type]
        if a == a and b == b:  # NaN has no order
            return a, b
    raise _fail(f"no such overload: {left_type} {op} {right_type}")


def less(left: object, right: object) -> bool:
    a, b = _ordered(left, right, "<")
    return bool(a < b)


def less_equal(left: object, right: object) -> bool:
    a, b = _ordered(left, right, "<=")
    return bool(a <= b)


def greater(left: object, right: object) -> bool:
    a, b = _ordered(left, right, ">")
    return bool(a > b)


def greater_equal(left: object, right: object) -> bool:
    a, b = _ordered(left, right, ">=")
    return bool(a >= b)


def in_list(value: object, values: tuple[Value, ...]) -> bool:
    return any(equal(value, item) for item in values)


def _string(value: object, method: str) -> str:
    if isinstance(value, str):
        return value
    raise _fail(f"no such overload: {cel_type(value)}.{method}(string)")


def starts_with(value: object, prefix: str) -> bool:
    return _string(value, "startsWith").startswith(prefix)


def ends_with(value: object, suffix: str) -> bool:
    return _string(value, "endsWith").endswith(suffix)


def contains(value: object, part: str) -> bool:
    return part in _string(value, "contains")


def metadata_value(metadata: Mapping[str, object], key: str) -> object:
    try:
        return metadata[key]
    except KeyError:
        raise _fail(f"no such key `{key}` in metadata") from None


def negate(value: object) -> bool:
    if value is True or value is False:
        return not value
    raise _fail(f"no such overload: !{cel_type(value)}")


def logical_operand(value: object, op: str) -> bool:
    """An operand of `&&` or `||`: a bool, or the failure."""
    if value is True or value is False:
        return value
    raise _fail(f"no such overload: {cel_type(value)} {op} ...")


def result(value: object) -> bool:
    """The value of the whole expression: a bool, or the failure."""
    if value is True or value is False:
        return value
    raise RuleEvaluationError(f"`when` returned {type(value).__name__}, not a bool")


def _logical(facts: Facts, parts: tuple[Callable[[Facts], object], ...], decisive: bool) -> bool:
    """`&&` (decisive False) or `||` (decisive True) over operands that may fail."""
    op = "||" if decisive else "&&"
    failure: RuleEvaluationError | None = None
    for part in parts:
        try:
            value = part(facts)
        except RuleEvaluationError as error:
            failure = failure or error
            continue
        if value is decisive:
            return decisive
        if value is not (not decisive):
            failure = failure or _fail(f"no such overload: {cel_type(value)} {op} ...")
    if failure is not None:
        raise failure
    return not decisive


def all_of(facts: Facts, parts: tuple[Callable[[Facts], object], ...]) -> bool:
    return _logical(facts, parts, False)


def any_of(facts: Facts, parts: tuple[Callable[[Facts], object], ...]) -> bool:
    return _logical(facts, parts, True)


# Translation ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Code:
    """A Python expression (an inline template) and what is known about its value."""

    source: str
    kind: str
    safe: bool  # never raises


_ORDER_HELPERS: Mapping[str, Callable[[object, object], bool]] = {
    "<": less, "<=": less_equal, ">": greater, ">=": greater_equal
}  # fmt: skip
_METHODS: Mapping[str, tuple[str, Callable[[object, str], bool]]] = {
    "startsWith": ("({receiver}.startswith({argument}))", starts_with),
    "endsWith": ("({receiver}.endswith({argument}))", ends_with),
    "contains": ("({argument} in {receiver})", contains),
}
_LITERAL_SOURCES: Mapping[object, str] = {True: "True", False: "False", None: "None"}


class _Translator:
    """Builds the template text only from fixed fragments and generated `{cN}` names."""

    def __init__(self) -> None:
        self.constants: dict[str, object] = {}

    def constant(self, value: object) -> str:
        name = f"c{len(self.constants)}"
        self.constants[name] = value
        return "{" + name + "}"

    def call(self, function: object, *arguments: str) -> str:
        return f"{self.constant(function)}({', '.join(arguments)})"

    def node(self, node: Node) -> Code:
        if isinstance(node, Literal):
            return self.literal(node.value)
        if isinstance(node, Variable):
            return self.variable(node.name)
        if isinstance(node, Field):
            source = self.call(metadata_value, "i.metadata", self.constant(node.key))
            return Code(source, ANY, False)
        if isinstance(node, HasKey):
            return Code(f"({self.constant(node.key)} in i.metadata)", BOOL, True)
        if isinstance(node, Method):
            return self.method(node)
        if isinstance(node, Not):
            operand = self.node(node.operand)
            if operand.kind == BOOL:
                return Code(f"(not {operand.source})", BOOL, operand.safe)
            return Code(self.call(negate, operand.source), BOOL, False)
        if isinstance(node, Logical):
            return self.logical(node)
        if isinstance(node, Compare):
            return self.compare(node)
        return self.in_list(node)

    def literal(self, value: Value) -> Code:
        if value is None or isinstance(value, bool):
            return Code(_LITERAL_SOURCES[value], NULL if value is None else BOOL, True)
        kind = STRING if isinstance(value, str) else INT if isinstance(value, int) else DOUBLE
        return Code(self.constant(value), kind, True)

    def variable(self, name: str) -> Code:
        if name in _DIRECT:
            source, kind = _DIRECT[name]
            return Code(source, kind, True)
        if name in _ANOMALY:
            return Code(self.call(ANOMALY_GETTERS[name], "f"), _ANOMALY[name], True)
        return Code(self.call(CEL_GETTERS[name], "f"), _GETTERS[name], True)

    def method(self, node: Method) -> Code:
        receiver = self.node(node.receiver)
        argument = self.constant(node.argument)
        template, helper = _METHODS[node.name]
        if receiver.kind == STRING:
            source = template.format(receiver=receiver.source, argument=argument)
            return Code(source, BOOL, receiver.safe)
        return Code(self.call(helper, receiver.source, argument), BOOL, False)

    def logical(self, node: Logical) -> Code:
        codes = [self.node(operand) for operand in node.operands]
        word = " and " if node.op == "&&" else " or "
        plain = [code.source for code in codes if code.safe and code.kind == BOOL]
        risky = [code for code in codes if not (code.safe and code.kind == BOOL)]
        if len(risky) == 1:
            (code,) = risky
            last = code.source
            if code.kind != BOOL:
                last = self.call(logical_operand, code.source, self.constant(node.op))
            plain.append(last)
        elif risky:
            constants = dict(self.constants)
            parts = tuple(compile_check(code.source, constants) for code in risky)
            helper = all_of if node.op == "&&" else any_of
            plain.append(self.call(helper, "f", self.constant(parts)))
        return Code("(" + word.join(plain) + ")", BOOL, not risky)

    def compare(self, node: Compare) -> Code:
        left, right = self.node(node.left), self.node(node.right)
        safe = left.safe and right.safe
        kinds = {left.kind, right.kind}
        op = node.op
        if op in ("==", "!="):
            if kinds <= _TEXT or len(kinds) == 1 and ANY not in kinds:
                return Code(f"({left.source} {op} {right.source})", BOOL, safe)
            if kinds == {INT, DOUBLE}:
                return Code(f"(float({left.source}) {op} float({right.source}))", BOOL, safe)
            if ANY not in kinds and safe:  # two types that are never equal
                return Code("False" if op == "==" else "True", BOOL, True)
            helper = equal if op == "==" else not_equal
            return Code(self.call(helper, left.source, right.source), BOOL, False)
        if len(kinds) == 1 and kinds <= {STRING, INT, BOOL}:
            return Code(f"({left.source} {op} {right.source})", BOOL, safe)
        return Code(self.call(_ORDER_HELPERS[op], left.source, right.source), BOOL, False)

    def in_list(self, node: InList) -> Code:
        operand = self.node(node.operand)
        members = _members(operand.kind, node.values)
        if members is None:
            return Code(self.call(in_list, operand.source, self.constant(node.values)), BOOL, False)
        if not members and operand.safe:
            return Code("False", BOOL, True)
        return Code(f"({operand.source} in {self.constant(members)})", BOOL, operand.safe)


def _members(kind: str, values: tuple[Value, ...]) -> frozenset[Value] | None:
    """The values a `kind` operand can equal, as a set Python's `in` gets right, or None.

    Only values of the operand's own type go in (so no `True` beside `1`, which Python
    would count as equal); a double beside an int operand needs CEL's conversion: None.
    """
    if kind in (STRING, OPTIONAL_STRING):
        allowed: tuple[type, ...] = (str, type(None)) if kind == OPTIONAL_STRING else (str,)
    elif kind == BOOL:
        allowed = (bool,)
    elif kind == INT and not any(type(value) is float for value in values):
        allowed = (int,)
    else:
        return None
    return frozenset(value for value in values if type(value) in allowed)
