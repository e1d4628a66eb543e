"""Policy YAML to plain values that remember where they came from.

PyYAML's own constructors would read `10000.0` as a float and silently keep the last of two
duplicate keys. Both are wrong for a payment policy, so this module walks PyYAML's node graph
itself: numbers with a dot become `Decimal` (from the exact source text), duplicate keys are
errors, and every mapping and list keeps the line and column of each of its entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import yaml

from paywarden import limits

Scalar = str | int | bool | Decimal | None


@dataclass(frozen=True, slots=True)
class Mark:
    """A 1-based position in the policy source."""

    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.line}:{self.column}"


class LocMap(dict[str, object]):
    """A mapping that knows the position of itself and of each key."""

    mark: Mark
    key_marks: dict[str, Mark]

    def __init__(self, mark: Mark) -> None:
        super().__init__()
        self.mark = mark
        self.key_marks = {}

    def mark_of(self, key: str) -> Mark:
        return self.key_marks.get(key, self.mark)


class LocList(list[object]):
    """A list that knows the position of itself and of each item."""

    mark: Mark
    item_marks: list[Mark]

    def __init__(self, mark: Mark) -> None:
        super().__init__()
        self.mark = mark
        self.item_marks = []

    def mark_of(self, index: int) -> Mark:
        return self.item_marks[index] if index < len(self.item_marks) else self.mark


class DocumentError(Exception):
    """The text is not a YAML document of the shape a policy needs."""

    def __init__(self, message: str, mark: Mark | None) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def load_document(text: str | bytes) -> object:
    """Parse one YAML document into LocMap / LocList / scalars, or raise DocumentError."""
    if isinstance(text, bytes):
        if len(text) > limits.policy_file_bytes_max:
            raise DocumentError(f"policy is larger than {limits.policy_file_bytes_max} bytes", None)
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DocumentError(f"policy is not valid UTF-8: {error.reason}", None) from None
    if len(text.encode("utf-8")) > limits.policy_file_bytes_max:
        raise DocumentError(f"policy is larger than {limits.policy_file_bytes_max} bytes", None)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = Mark(mark.line + 1, mark.column + 1) if mark is not None else None
        raise DocumentError(f"invalid YAML: {error.problem}", where) from None
    except yaml.YAMLError as error:
        raise DocumentError(f"invalid YAML: {error}", None) from None
    if node is None:
        return None
    return _convert(node, depth=0)


def _convert(node: yaml.Node, depth: int) -> object:
    if depth > 32:
        raise DocumentError("policy is nested more than 32 levels deep", _mark(node))
    if isinstance(node, yaml.MappingNode):
        return _convert_mapping(node, depth)
    if isinstance(node, yaml.SequenceNode):
        result = LocList(_mark(node))
        for item in node.value:
            result.append(_convert(item, depth + 1))
            result.item_marks.append(_mark(item))
        return result
    if isinstance(node, yaml.ScalarNode):
        return _convert_scalar(node)
    raise DocumentError("unsupported YAML node", _mark(node))


def _convert_mapping(node: yaml.MappingNode, depth: int) -> LocMap:
    result = LocMap(_mark(node))
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            raise DocumentError("mapping keys must be plain names", _mark(key_node))
        key = str(key_node.value)
        if key in result:
            first = result.key_marks[key]
            raise DocumentError(
                f"duplicate key `{key}` (first defined at line {first.line})", _mark(key_node)
            )
        result[key] = _convert(value_node, depth + 1)
        result.key_marks[key] = _mark(key_node)
    return result


def _convert_scalar(node: yaml.ScalarNode) -> Scalar:
    tag, text = node.tag, str(node.value)
    if tag == "tag:yaml.org,2002:null":
        return None
    if tag == "tag:yaml.org,2002:bool":
        return text.lower() in ("true", "yes", "on")
    if tag == "tag:yaml.org,2002:int":
        digits = text[1:] if text[:1] in "+-" else text
        if not digits.isdigit() or not digits.isascii() or (len(digits) > 1 and digits[0] == "0"):
            raise DocumentError(
                f"integer `{text}` must be plain decimal digits (no 0x, 0o, 0b, _ or leading 0)",
                _mark(node),
            )
        return int(text)
    if tag == "tag:yaml.org,2002:float":
        return _decimal_scalar(node, text)
    if tag in ("tag:yaml.org,2002:str", "tag:yaml.org,2002:timestamp"):
        return text
    raise DocumentError(f"unsupported YAML tag `{tag}`", _mark(node))


def _decimal_scalar(node: yaml.ScalarNode, text: str) -> Decimal:
    cleaned = text.replace("_", "")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise DocumentError(f"invalid number `{text}`", _mark(node)) from None
    if not value.is_finite():
        raise DocumentError(f"number `{text}` is not finite", _mark(node))
    return value
