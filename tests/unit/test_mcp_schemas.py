"""The flat output schemas accept exactly what the nested ones accept.

Method: for each output model of the MCP tools (and a few made-up models with every shape the
folding handles or must leave alone), build an instance that is valid by construction from the
schema, then every mutation of it that one field can make (null, each other JSON type, a value
outside an enum, the field removed, an extra field), at every depth; `jsonschema` must give the
same verdict under the nested schema pydantic writes and under `flat_schema` of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from pydantic import BaseModel, Field

from paywarden.entrypoints.mcp import models
from paywarden.entrypoints.mcp.schemas import flat_schema

OUTPUT_MODELS: list[type[BaseModel]] = [
    models.PaymentRequestResult,
    models.PaymentView,
    models.PaymentList,
    models.ApprovalStatusView,
    models.BudgetList,
    models.LimitsView,
    models.ToolFailure,
]


class Leaf(BaseModel):
    """A model: its description must not replace a field's."""

    name: str
    kind: Literal["a", "b"] | None
    count: int | None = None


class Shapes(BaseModel):
    required_leaf: Leaf = Field(description="the field's own description")
    optional_leaf: Leaf | None
    leaves: list[Leaf]
    maybe_leaves: list[Leaf] | None
    tag: Literal["x", "y"] | None
    either: str | int  # not nullable: stays an anyOf
    either_or_none: str | int | None  # three options: stays an anyOf
    fixed: Literal["only"] | None  # a const: stays an anyOf
    mapping: dict[str, int] | None


def _types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type")
    return kind if isinstance(kind, list) else [kind] if isinstance(kind, str) else []


def _example(schema: dict[str, Any]) -> Any:
    """A value valid under the flat `schema`, as full as the schema allows (no nulls)."""
    if "anyOf" in schema:
        return _example(next(o for o in schema["anyOf"] if o.get("type") != "null"))
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return next(value for value in schema["enum"] if value is not None)
    kind = next((t for t in _types(schema) if t != "null"), "string")
    if kind == "object":
        properties = schema.get("properties", {})
        value = {name: _example(sub) for name, sub in properties.items()}
        if not properties and isinstance(schema.get("additionalProperties"), dict):
            value = {"key": _example(schema["additionalProperties"])}
        return value
    if kind == "array":
        return [_example(schema.get("items", {}))]
    return {"string": "text", "integer": 7, "number": 1.5, "boolean": True}[kind]


REPLACEMENTS: list[Any] = [None, "text", 7, 1.5, True, [], {}, ["text"], {"extra": 1}]


def _mutations(value: Any) -> Iterator[Any]:
    """`value` changed in one place: each replacement at each position, each key removed,
    one key added."""
    yield from REPLACEMENTS
    if isinstance(value, dict):
        for key, item in value.items():
            yield {k: v for k, v in value.items() if k != key}
            for changed in _mutations(item):
                yield {**value, key: changed}
        yield {**value, "unexpected": 1}
    if isinstance(value, list) and value:
        for changed in _mutations(value[0]):
            yield [changed, *value[1:]]
        yield []


def _same_verdicts(nested: dict[str, Any], flat: dict[str, Any]) -> int:
    nested_validator, flat_validator = Draft202012Validator(nested), Draft202012Validator(flat)
    example = _example(flat)
    assert nested_validator.is_valid(example), example
    checked = 0
    for candidate in [example, *_mutations(example)]:
        verdict = nested_validator.is_valid(candidate)
        assert flat_validator.is_valid(candidate) == verdict, json.dumps(candidate)
        checked += 1
    return checked


@pytest.mark.parametrize("model", [*OUTPUT_MODELS, Shapes], ids=lambda m: m.__name__)
def test_the_flat_schema_accepts_exactly_what_the_nested_one_accepts(
    model: type[BaseModel],
) -> None:
    nested = model.model_json_schema()
    flat = flat_schema(nested)
    Draft202012Validator.check_schema(flat)
    assert _same_verdicts(nested, flat) > 20


@pytest.mark.parametrize("model", OUTPUT_MODELS, ids=lambda m: m.__name__)
def test_the_tools_output_schemas_have_no_references_and_no_nullable_any_of(
    model: type[BaseModel],
) -> None:
    text = json.dumps(flat_schema(model.model_json_schema()))
    assert "$ref" not in text and "$defs" not in text and "anyOf" not in text


def test_what_cannot_be_folded_exactly_is_left_as_it_is() -> None:
    flat = flat_schema(Shapes.model_json_schema())
    properties = flat["properties"]
    assert properties["required_leaf"]["description"] == "the field's own description"
    assert properties["required_leaf"]["properties"]["kind"] == {
        "enum": ["a", "b", None],
        "type": ["string", "null"],
        "title": "Kind",
    }
    assert properties["optional_leaf"]["type"] == ["object", "null"]
    assert properties["maybe_leaves"]["type"] == ["array", "null"]
    assert "anyOf" in properties["either"]
    assert "anyOf" in properties["either_or_none"]
    assert "anyOf" in properties["fixed"]  # a const is never widened


def test_an_unresolvable_or_recursive_reference_is_refused() -> None:
    with pytest.raises(ValueError, match="not defined"):
        flat_schema({"properties": {"a": {"$ref": "#/$defs/Missing"}}, "$defs": {}})
    with pytest.raises(ValueError, match="not defined"):
        flat_schema({"properties": {"a": {"$ref": "https://example.com/schema"}}})
    loop = {"properties": {"next": {"$ref": "#/$defs/Node"}}, "type": "object"}
    with pytest.raises(ValueError, match="inside itself"):
        flat_schema({"properties": {"a": {"$ref": "#/$defs/Node"}}, "$defs": {"Node": loop}})
    constrained = {"$ref": "#/$defs/Leaf", "type": "object"}
    with pytest.raises(ValueError, match="next to its"):
        flat_schema({"properties": {"a": constrained}, "$defs": {"Leaf": {"type": "object"}}})
