"""A strict parser for the simple CEL subset that paywarden compiles into Python.

The subset: comparisons (`==`, `!=`, `<`, `<=`, `>`, `>=`), `&&`, `||`, one `!`, parentheses,
`x in [literal, ...]`, `"key" in metadata`, `.startsWith`, `.endsWith` and `.contains` with a
string literal, `has(metadata.key)`, `metadata.key` and `metadata["key"]`, over the CEL
variables the compiler names and string, int, double, bool and null literals.

`parse` returns None for any text outside the subset, valid CEL or not: such an expression goes
to the CEL library, which decides whether it is valid and evaluates it. The grammar is kept
narrower than CEL wherever CEL has a corner (`!!x` drops both negations, leading zeros, `1u`,
raw and triple-quoted strings, comments, trailing commas): those are left to the library too.
`parse` never raises.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

# Nodes ------------------------------------------------------------------------------------

Value = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class Literal:
    value: Value


@dataclass(frozen=True, slots=True)
class Variable:
    name: str


@dataclass(frozen=True, slots=True)
class Field:
    """`metadata.key` or `metadata["key"]`: the value, or an error when the key is absent."""

    key: str


@dataclass(frozen=True, slots=True)
class HasKey:
    """`has(metadata.key)` or `"key" in metadata`."""

    key: str


@dataclass(frozen=True, slots=True)
class Method:
    receiver: Node
    name: str  # startsWith, endsWith or contains
    argument: str


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class Logical:
    """`a && b && ...` (`op` is `&&`) or `a || b || ...` (`op` is `||`), flattened."""

    op: str
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Compare:
    op: str  # == != < <= > >=
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class InList:
    operand: Node
    values: tuple[Value, ...]


Node = Literal | Variable | Field | HasKey | Method | Not | Logical | Compare | InList

METHODS = frozenset({"startsWith", "endsWith", "contains"})
RELATIONS = frozenset({"==", "!=", "<", "<=", ">", ">="})
# The members of the map variable `anomaly` (`anomaly.amount_score` ...), when it is a variable.
ANOMALY_MEMBERS = frozenset({"amount_score", "new_recipient", "rate_spike"})
# Words CEL treats as keywords or reserves; never accepted as a metadata key after a dot.
RESERVED = frozenset(
    {
        "as", "break", "const", "continue", "else", "false", "for", "function", "has", "if",
        "import", "in", "let", "loop", "namespace", "null", "package", "return", "true", "var",
        "void", "while",
    }
)  # fmt: skip
_INT_MAX = 2**63 - 1
# Deeper expressions are valid CEL but left to the library, so the generated Python stays
# far from the interpreter's nesting limits.
DEPTH_MAX = 24


class Unsupported(Exception):
    """The text is outside the subset (it may still be valid CEL)."""


# Lexer ------------------------------------------------------------------------------------

_WHITESPACE = re.compile(r"[ \t\r\n\f]*")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(
    r"(?P<hex>0x[0-9A-Fa-f]+)|(?P<double>[0-9]+(?:\.[0-9]+(?:[eE][+-]?[0-9]+)?|[eE][+-]?[0-9]+))"
    r"|(?P<int>0|[1-9][0-9]*)"
)
_AFTER_NUMBER = re.compile(r"[A-Za-z0-9_.]")
_PUNCT = ("&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "(", ")", "[", "]", ".", ",", "-")
_SIMPLE_ESCAPES = {
    "\\": "\\", '"': '"', "'": "'", "`": "`", "?": "?",
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
}  # fmt: skip
_HEX_ESCAPES = {"x": 2, "X": 2, "u": 4, "U": 8}


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # ident, int, double, string, punct, end
    text: str
    value: Value = None


def tokens(text: str) -> list[Token]:
    """The tokens of `text`; raises Unsupported on anything outside the subset's lexicon."""
    result: list[Token] = []
    position = _WHITESPACE.match(text, 0).end()  # type: ignore[union-attr]
    while position < len(text):
        token, position = _token(text, position)
        result.append(token)
        position = _WHITESPACE.match(text, position).end()  # type: ignore[union-attr]
    result.append(Token("end", ""))
    return result


def _token(text: str, position: int) -> tuple[Token, int]:
    char = text[position]
    if char in "\"'":
        value, end = _string(text, position)
        return Token("string", text[position:end], value), end
    ident = _IDENT.match(text, position)
    if ident:
        return Token("ident", ident.group()), ident.end()
    number = _NUMBER.match(text, position)
    if number:
        end = number.end()
        if end < len(text) and _AFTER_NUMBER.match(text, end):
            raise Unsupported("a number runs into other characters")
        if number.group("double") is not None:
            return Token("double", number.group(), _double(number.group())), end
        return Token("int", number.group(), int(number.group(), 0)), end
    for punct in _PUNCT:
        if text.startswith(punct, position):
            return Token("punct", punct), position + len(punct)
    raise Unsupported(f"character {char!r}")


def _double(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise Unsupported("double literal out of range")
    return value


def _string(text: str, start: int) -> tuple[str, int]:
    """A quoted string starting at `start` (one quote character, no prefix); its value and end."""
    quote = text[start]
    if text.startswith(quote * 3, start):
        raise Unsupported("triple-quoted string")
    out: list[str] = []
    position = start + 1
    while position < len(text):
        char = text[position]
        if char == quote:
            return "".join(out), position + 1
        if char in "\r\n" or "\ud800" <= char <= "\udfff":
            raise Unsupported("line break or lone surrogate in a string")
        if char != "\\":
            out.append(char)
            position += 1
            continue
        decoded, position = _escape(text, position + 1)
        out.append(decoded)
    raise Unsupported("unterminated string")


def _escape(text: str, position: int) -> tuple[str, int]:
    """The character of the escape whose letter is at `position`, and where it ends."""
    letter = text[position : position + 1]
    if letter in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[letter], position + 1
    if letter in _HEX_ESCAPES:
        digits = text[position + 1 : position + 1 + _HEX_ESCAPES[letter]]
        if len(digits) != _HEX_ESCAPES[letter] or not re.fullmatch(r"[0-9A-Fa-f]+", digits):
            raise Unsupported("bad hex escape")
        code = int(digits, 16)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise Unsupported("escape outside Unicode scalar values")
        return chr(code), position + 1 + len(digits)
    octal = text[position : position + 3]
    if re.fullmatch(r"[0-3][0-7][0-7]", octal):
        return chr(int(octal, 8)), position + 3
    raise Unsupported("unknown escape")


# Parser -----------------------------------------------------------------------------------


def parse(text: str, variables: frozenset[str]) -> Node | None:
    """The tree of `text` when it is in the subset over `variables`, else None."""
    try:
        parser = _Parser(tokens(text), variables)
        node = parser.expression()
        parser.expect("end")
        return node if depth(node) <= DEPTH_MAX else None
    except (Unsupported, RecursionError):  # a long chain such as `1 == 1 == ... == true`
        return None


def depth(node: Node) -> int:
    """How deeply `node` nests (a leaf is 1)."""
    if isinstance(node, Logical):
        return 1 + max(depth(operand) for operand in node.operands)
    if isinstance(node, Compare):
        return 1 + max(depth(node.left), depth(node.right))
    if isinstance(node, Method):
        return 1 + depth(node.receiver)
    if isinstance(node, Not):
        return 1 + depth(node.operand)
    if isinstance(node, InList):
        return 1 + depth(node.operand)
    return 1


class _Parser:
    def __init__(self, items: list[Token], variables: frozenset[str]) -> None:
        self.items = items
        self.index = 0
        self.variables = variables
        self.nesting = 0

    # token helpers

    def peek(self) -> Token:
        return self.items[self.index]

    def take(self) -> Token:
        token = self.items[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def at(self, text: str) -> bool:
        token = self.peek()
        return token.kind in ("punct", "ident") and token.text == text

    def expect(self, kind: str, text: str | None = None) -> Token:
        token = self.take()
        if token.kind != kind or (text is not None and token.text != text):
            raise Unsupported(f"expected {text or kind}")
        return token

    # grammar, loosest binding first

    def expression(self) -> Node:
        self.nesting += 1
        if self.nesting > DEPTH_MAX:
            raise Unsupported("nested too deeply")
        node = self.logical("||", self.conjunction)
        self.nesting -= 1
        return node

    def conjunction(self) -> Node:
        return self.logical("&&", self.relation)

    def logical(self, op: str, operand: Callable[[], Node]) -> Node:
        operands = [operand()]
        while self.at(op):
            self.take()
            operands.append(operand())
        if len(operands) == 1:
            return operands[0]
        flat: list[Node] = []
        for node in operands:
            flat.extend(node.operands if isinstance(node, Logical) and node.op == op else [node])
        return Logical(op, tuple(flat))

    def relation(self) -> Node:
        node = self.unary()
        while True:
            token = self.peek()
            if token.kind == "punct" and token.text in RELATIONS:
                self.take()
                node = Compare(token.text, node, self.unary())
            elif token.kind == "ident" and token.text == "in":
                self.take()
                node = self.membership(node)
            else:
                return node

    def membership(self, left: Node) -> Node:
        if self.at("metadata"):
            self.take()
            if not isinstance(left, Literal) or not isinstance(left.value, str):
                raise Unsupported("only a string literal `in metadata`")
            return HasKey(left.value)
        self.expect("punct", "[")
        values: list[Value] = []
        while not self.at("]"):
            if values:
                self.expect("punct", ",")
                if self.at("]"):
                    raise Unsupported("trailing comma")
            values.append(self.literal_value())
        self.take()
        return InList(left, tuple(values))

    def unary(self) -> Node:
        if self.at("!"):
            self.take()
            if self.at("!"):
                raise Unsupported("repeated `!`")  # CEL drops pairs of `!` without checking
            return Not(self.member())
        return self.member()

    def member(self) -> Node:
        negative = self.at("-")
        node = self.primary()
        if negative and (self.at(".") or self.at("[")):
            raise Unsupported("member of a negated literal")  # CEL reads `-(1 .x)`
        while self.at(".") or self.at("["):
            if self.take().text == "[":
                if node != Variable("metadata"):
                    raise Unsupported("indexing outside metadata")
                key = self.expect("string").value
                self.expect("punct", "]")
                node = Field(str(key))
                continue
            name = self.expect("ident").text
            if node == Variable("metadata"):
                node = Field(self.field_name(name))
            elif node == Variable("anomaly"):
                if name not in ANOMALY_MEMBERS or self.at("("):
                    raise Unsupported(f"member `{name}` of anomaly")
                node = Variable(f"anomaly.{name}")  # one fact, read as a variable of its own
            elif name in METHODS:
                self.expect("punct", "(")
                argument = self.expect("string").value
                self.expect("punct", ")")
                node = Method(node, name, str(argument))
            else:
                raise Unsupported(f"member `{name}`")
        if node == Variable("metadata"):
            raise Unsupported("metadata as a whole")
        if node == Variable("anomaly"):
            raise Unsupported("anomaly as a whole")
        return node

    def field_name(self, name: str) -> str:
        if name in RESERVED or self.at("("):
            raise Unsupported("reserved word or a call on metadata")
        return name

    def primary(self) -> Node:
        token = self.peek()
        if token.kind in ("int", "double", "string") or token.text in ("true", "false", "null"):
            return Literal(self.literal_value())
        if self.at("-"):
            return Literal(self.literal_value())
        if self.at("("):
            self.take()
            node = self.expression()
            self.expect("punct", ")")
            return node
        if token.kind != "ident":
            raise Unsupported("expected a value")
        self.take()
        if token.text == "has" and self.at("("):
            return self.has()
        if token.text not in self.variables or self.at("("):
            raise Unsupported(f"name `{token.text}`")
        return Variable(token.text)

    def has(self) -> Node:
        self.expect("punct", "(")
        self.expect("ident", "metadata")
        self.expect("punct", ".")
        key = self.field_name(self.expect("ident").text)
        self.expect("punct", ")")
        return HasKey(key)

    def literal_value(self) -> Value:
        negative = self.at("-")
        if negative:
            self.take()
        token = self.take()
        if token.kind in ("int", "double"):
            value = token.value
            assert isinstance(value, int | float)
            value = -value if negative else value
            if isinstance(value, int) and not -_INT_MAX - 1 <= value <= _INT_MAX:
                raise Unsupported("int literal out of range")
            return value
        if negative:
            raise Unsupported("`-` before something other than a number")
        if token.kind == "string":
            return token.value
        words: dict[str, Value] = {"true": True, "false": False, "null": None}
        if token.kind == "ident" and token.text in words:
            return words[token.text]
        raise Unsupported("expected a literal")
