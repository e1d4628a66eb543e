"""One generated Python function per policy that matches every rule in a single call.

Evaluating twenty rules as twenty composed closures costs a function call per condition. Here
the compiler emits one function whose body reads the intent's fields once into locals and
returns the list of per-rule results, with the simplest conditions (exact lists, amounts in
the rule's own currency) written inline and every other condition called as its closure.

Safety: the generated source is built only from fixed templates and generated identifiers
(`_k0`, `_f3`, ...). No text from the policy or the intent ever becomes source code; every
policy value reaches the function as an object in its namespace. A CEL expression in the simple
subset is translated from its parsed tree into such a template (`paywarden.policy.cel_compile`);
its literals are constants like any other policy value. Any other CEL expression is evaluated by
the CEL library, never by Python.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from paywarden.policy.facts import Facts

Check = Callable[[Facts], bool]
MatchAll = Callable[[Facts], list[bool]]

# The local names the generated function defines, and how each is read.
_LOCALS = (
    "i = f.intent",
    "a = i.amount",
    "action = i.action",
    "agent = i.agent",
    "environment = i.environment",
    "category = i.category",
    "rail = i.rail",
    "currency = a.currency",
    "amount_minor = a.amount_minor",
)
INLINE_FIELDS = frozenset({"action", "agent", "environment", "category", "rail", "currency"})


@dataclass(frozen=True, slots=True)
class Inline:
    """How to write one check inline: a template over `{name}` constants and fixed locals."""

    template: str
    constants: dict[str, object]


_ATTRIBUTE = "paywarden_inline"


def inline(check: Check, template: str, **constants: object) -> Check:
    """Record on `check` how it may be written inline; returns `check` itself."""
    vars(check)[_ATTRIBUTE] = Inline(template, constants)
    return check


def compile_check(template: str, constants: Mapping[str, object]) -> Check:
    """One check generated from an inline template, over the same locals as `generate`.

    The function carries the template, so `generate` writes it inline; called on its own (the
    evaluator's rule-by-rule fallback) it computes the same value. `constants` keys must be
    identifiers: they are generated names, never policy text.
    """
    namespace: dict[str, object] = {}
    names = {}
    for key, value in constants.items():
        if not (key.isascii() and key.isidentifier()):
            raise ValueError(f"constant name `{key}` is not an identifier")
        names[key] = f"_k_{key}"
        namespace[names[key]] = value
    body = "\n".join(f"    {line}" for line in _LOCALS)
    source = f"def _check(f):\n{body}\n    return ({template.format(**names)})\n"
    exec(compile(source, "<paywarden policy check>", "exec"), namespace)
    function: Check = namespace["_check"]  # type: ignore[assignment]
    return inline(function, template, **constants)


def generate(rules_checks: Sequence[Sequence[Check]]) -> MatchAll:
    """Compile `[[checks of rule 0], [checks of rule 1], ...]` into one function."""
    namespace: dict[str, object] = {}
    expressions = []
    for checks in rules_checks:
        parts = [_expression(check, namespace) for check in checks]
        expressions.append("(" + " and ".join(parts) + ")" if parts else "True")
    body = "\n".join(f"    {line}" for line in _LOCALS)
    results = "".join(f"        {expression},\n" for expression in expressions)
    source = f"def _match_all(f):\n{body}\n    return [\n{results}    ]\n"
    exec(compile(source, "<paywarden policy matcher>", "exec"), namespace)
    function: MatchAll = namespace["_match_all"]  # type: ignore[assignment]
    return function


def _expression(check: Check, namespace: dict[str, object]) -> str:
    spec = vars(check).get(_ATTRIBUTE) if hasattr(check, "__dict__") else None
    if not isinstance(spec, Inline):
        spec = None
    index = len(namespace)
    if spec is None:
        name = f"_f{index}"
        namespace[name] = check
        return f"{name}(f)"
    names = {}
    for key, value in spec.constants.items():
        name = f"_k{index}_{key}"
        namespace[name] = value
        names[key] = name
    return "(" + spec.template.format(**names) + ")"
