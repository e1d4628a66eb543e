"""Style rules checked by a tool, not by reviewers: short functions and the dependency rule.

Functions stay at or under 70 lines (TigerStyle's limit: most of the value of a limit is in
stopping functions that started small from growing). The pure core (money, intent, policy,
ledger, audit, limits, clock, errors, ports) never imports adapters, entry points or the
Warden, so installing and testing the core needs none of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "paywarden"
FUNCTION_LINES_MAX = 70
CORE = (
    "money.py",
    "intent.py",
    "limits.py",
    "clock.py",
    "errors.py",
    "ports.py",
    "policy",
    "ledger",
    "audit",
)
FORBIDDEN_FOR_CORE = (
    "paywarden.adapters",
    "paywarden.entrypoints",
    "paywarden.warden",
    "paywarden.bootstrap",
)


def _modules() -> list[Path]:
    return sorted(SOURCE.rglob("*.py"))


def _core_modules() -> list[Path]:
    result = []
    for name in CORE:
        path = SOURCE / name
        result.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return result


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SOURCE)))
def test_functions_are_at_most_70_lines(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > FUNCTION_LINES_MAX
    ]
    assert not long, f"functions over {FUNCTION_LINES_MAX} lines: {long}"


@pytest.mark.parametrize("path", _core_modules(), ids=lambda p: str(p.relative_to(SOURCE)))
def test_the_core_imports_no_adapter_entry_point_or_service(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [node.names[0]])
    ]
    bad = [name for name in imported if name and name.startswith(FORBIDDEN_FOR_CORE)]
    assert not bad, f"{path.name} imports {bad}"


def test_the_tidy_checks_can_fail() -> None:
    """A 71-line function and a core import of an adapter are both caught."""
    body = "\n".join(f"    x{i} = {i}" for i in range(70))
    tree = ast.parse(f"def too_long():\n{body}\n")
    function = tree.body[0]
    assert isinstance(function, ast.FunctionDef) and function.end_lineno is not None
    assert function.end_lineno - function.lineno + 1 > FUNCTION_LINES_MAX
    assert "paywarden.adapters.storage.sqlite".startswith(FORBIDDEN_FOR_CORE)
