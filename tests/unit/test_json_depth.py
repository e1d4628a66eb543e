"""Nesting depth is read without parsing, so hostile `[[[[...` is refused the same way whatever
recursion limit the process runs with (libraries raise it)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from paywarden.agents.proposal import ProposalError, parse_proposal
from paywarden.json_depth import nests_deeper_than


@pytest.fixture
def high_recursion_limit() -> Iterator[None]:
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    yield
    sys.setrecursionlimit(before)


@pytest.mark.parametrize(
    ("text", "depth_max", "deeper"),
    [
        ("{}", 0, True),
        ("{}", 1, False),
        ('{"a": [1, {"b": []}]}', 4, False),
        ('{"a": [1, {"b": []}]}', 3, True),
        ('{"a": "[[[[[[[[[[[["}', 1, False),  # brackets in a string do not nest
        ('{"a": "\\"[[[["}', 1, False),  # nor after an escaped quote
        (b"[[[]]]", 2, True),
        ("", 0, False),
    ],
)
def test_depth_is_counted_outside_strings(text: str | bytes, depth_max: int, deeper: bool) -> None:
    assert nests_deeper_than(text, depth_max) is deeper


def test_a_deep_proposal_is_refused_even_with_a_raised_recursion_limit(
    high_recursion_limit: None,
) -> None:
    with pytest.raises(ProposalError, match="nested too deeply"):
        parse_proposal("[" * 4000 + "]" * 4000)
