"""Style rules checked by a tool, not by reviewers: short functions and the dependency rule.

Functions stay at or under 70 lines (TigerStyle's limit: most of the value of a limit is in
stopping functions that started small from growing).

The dependency rule (docs/architecture.md), lowest layer first; a module imports only from its
own layer or the layers below it:

1. the core: values and pure logic (money, payee, intent, policy, ledger, audit, ports, ...);
2. `runtime.py`: what every use case needs;
3. `actions/`: the use cases, which never import each other in a cycle (every call goes down);
4. `warden.py`: the facade, which reaches `bootstrap` only inside `Warden.open`;
5. `bootstrap.py`: composition, the one module outside the entry points that picks adapters;
6. `adapters/`: import the core (and its ports), never a use case, the facade or composition;
7. `entrypoints/`: anything.

`x402/` (the x402 client guard) is an integration edge like the entry points: it may import the
facade and the SDK, and no layer imports it. So is `ap2/` (the AP2 mandate verifier).
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "paywarden"
FUNCTION_LINES_MAX = 70
# What each part of the package must never import at module level.
UPPER_LAYERS = {
    "core": (
        "paywarden.runtime",
        "paywarden.actions",
        "paywarden.warden",
        "paywarden.bootstrap",
        "paywarden.adapters",
        "paywarden.entrypoints",
        "paywarden.x402",
        "paywarden.ap2",
    ),
    "runtime": (
        "paywarden.actions",
        "paywarden.warden",
        "paywarden.bootstrap",
        "paywarden.adapters",
        "paywarden.entrypoints",
        "paywarden.x402",
        "paywarden.ap2",
    ),
    "actions": (
        "paywarden.warden",
        "paywarden.bootstrap",
        "paywarden.adapters",
        "paywarden.entrypoints",
        "paywarden.x402",
        "paywarden.ap2",
    ),
    "warden": (
        "paywarden.bootstrap",
        "paywarden.adapters",
        "paywarden.entrypoints",
        "paywarden.x402",
        "paywarden.ap2",
    ),
    "bootstrap": (
        "paywarden.warden",
        "paywarden.entrypoints",
        "paywarden.x402",
        "paywarden.ap2",
    ),
    "adapters": (
        "paywarden.runtime",
        "paywarden.actions",
        "paywarden.warden",
        "paywarden.bootstrap",
        "paywarden.entrypoints",
        "paywarden.x402",
        "paywarden.ap2",
    ),
}
# The public package: it re-exports names lazily and may name any module.
OUTSIDE_THE_RULE = ("__init__.py", "testing.py")
FORBIDDEN_FOR_CORE = UPPER_LAYERS["core"]


def _layer(path: Path) -> str | None:
    relative = path.relative_to(SOURCE)
    top = relative.parts[0]
    if top in OUTSIDE_THE_RULE or top in ("entrypoints", "x402", "ap2"):
        return None
    if top in ("runtime.py", "warden.py", "bootstrap.py"):
        return top.removesuffix(".py")
    if top in ("actions", "adapters"):
        return top
    return "core"


def _imports(path: Path, *, module_level_only: bool) -> list[str]:
    """The modules `path` imports: at module level (outside functions), or anywhere."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found: list[str] = []
    for node in _module_level(nodes) if module_level_only else nodes:
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
            found.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _module_level(nodes: list[ast.stmt]) -> list[ast.stmt]:
    """Statements that run on import (function and class bodies excluded; `if` and `try`
    blocks included, `if TYPE_CHECKING:` too: a type-only import is still a dependency)."""
    result: list[ast.stmt] = []
    for node in nodes:
        result.append(node)
        if isinstance(node, ast.If | ast.Try):
            result.extend(_module_level(node.body))
            result.extend(_module_level(node.orelse))
    return result


def _modules() -> list[Path]:
    return sorted(SOURCE.rglob("*.py"))


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


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SOURCE)))
def test_every_module_imports_only_its_own_layer_or_lower_ones(path: Path) -> None:
    layer = _layer(path)
    if layer is None:
        return
    imported = _imports(path, module_level_only=True)
    bad = [name for name in imported if name.startswith(UPPER_LAYERS[layer])]
    assert not bad, f"{path.relative_to(SOURCE)} ({layer}) imports {sorted(set(bad))}"


def test_only_composition_and_entry_points_import_adapters_even_inside_functions() -> None:
    importers = {
        str(path.relative_to(SOURCE))
        for path in _modules()
        if _layer(path) not in (None, "adapters", "bootstrap")
        and any(
            name.startswith("paywarden.adapters")
            for name in _imports(path, module_level_only=False)
        )
    }
    assert importers == set()


def test_use_cases_call_down_never_back_up() -> None:
    """The import graph of `actions/` has no cycle, even through imports inside functions."""
    graph: dict[str, set[str]] = {}
    for path in sorted((SOURCE / "actions").glob("*.py")):
        name = f"paywarden.actions.{path.stem}"
        graph[name] = {
            imported.rsplit(".", 1)[0] if imported.count(".") > 2 else imported
            for imported in _imports(path, module_level_only=False)
            if imported.startswith("paywarden.actions.")
        } - {name}
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as error:
        pytest.fail(f"use cases import each other in a cycle: {error.args[1]}")
    assert set(order) >= set(graph)


def test_warden_has_no_base_classes_and_delegates() -> None:
    tree = ast.parse((SOURCE / "warden.py").read_text(encoding="utf-8"))
    (warden,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Warden"]
    assert warden.bases == []
    long = [
        node.name
        for node in warden.body
        if isinstance(node, ast.FunctionDef)
        and node.end_lineno is not None
        and node.name != "open"
        and node.end_lineno - node.lineno + 1 > 20
    ]
    assert long == [], f"facade methods should delegate in a few lines: {long}"


def test_the_tidy_checks_can_fail() -> None:
    """A 71-line function and a core import of an adapter are both caught."""
    body = "\n".join(f"    x{i} = {i}" for i in range(70))
    tree = ast.parse(f"def too_long():\n{body}\n")
    function = tree.body[0]
    assert isinstance(function, ast.FunctionDef) and function.end_lineno is not None
    assert function.end_lineno - function.lineno + 1 > FUNCTION_LINES_MAX
    assert "paywarden.adapters.storage.sqlite".startswith(FORBIDDEN_FOR_CORE)
    cyclic = {"a": {"b"}, "b": {"a"}}
    with pytest.raises(CycleError):
        list(TopologicalSorter(cyclic).static_order())
