"""The user documentation stays complete and true.

Every reason code, policy key, CEL variable and CLI command or option must be documented; every
policy example in docs/policy.md must compile; every Python example in docs/python.md and
README.md must run as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import click
import pytest

from paywarden.entrypoints.cli.main import cli
from paywarden.policy import REASON_CODES, check_policy
from paywarden.policy.compiler import FLAT_AMOUNT, LIST_CONDITIONS, RULE_KEYS, TOP_LEVEL_KEYS
from paywarden.policy.facts import CEL_VARIABLES

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
POLICY_MD = DOCS / "policy.md"
REASON_CODES_MD = DOCS / "reason-codes.md"
CLI_MD = DOCS / "cli.md"
PYTHON_MD = DOCS / "python.md"
APPROVALS_MD = DOCS / "approvals.md"
README = ROOT / "README.md"

# A ```yaml block in docs/policy.md starts with one of these comment lines: examples must
# compile, fragments are skipped.
EXAMPLE_MARKER = "# example"
FRAGMENT_MARKER = "# fragment"

_FENCE = re.compile(r"^```(?P<lang>[A-Za-z0-9_-]*)\n(?P<body>.*?)^```[ \t]*$", re.S | re.M)


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _blocks(path: Path, lang: str) -> list[tuple[int, str]]:
    """(line number, body) of each fenced block in `lang`."""
    text = _text(path)
    return [
        (text.count("\n", 0, match.start()) + 1, match.group("body"))
        for match in _FENCE.finditer(text)
        if match.group("lang") == lang
    ]


def _missing(names: Iterable[object], text: str) -> list[str]:
    """Names that do not appear in backticks in `text` (`name`, `name: ...`, `name(...)`)."""
    return sorted(
        name for name in names if not re.search(rf"`{re.escape(str(name))}(?:[`:\s(\[])", text)
    )


# Reason codes -------------------------------------------------------------------------------


def test_every_reason_code_is_documented_in_order() -> None:
    text = _text(REASON_CODES_MD)
    headings = re.findall(r"^## `([a-z_]+)`$", text, re.M)
    assert headings == list(REASON_CODES), (
        "docs/reason-codes.md must have one `## `code`` section per code in REASON_CODES, "
        "in the same order"
    )


# Policy format ------------------------------------------------------------------------------


def test_every_policy_key_is_documented() -> None:
    text = _text(POLICY_MD)
    keys = set(TOP_LEVEL_KEYS) | set(RULE_KEYS) | set(LIST_CONDITIONS) | set(FLAT_AMOUNT)
    assert _missing(keys, text) == []


def test_every_cel_variable_is_documented() -> None:
    assert _missing(set(CEL_VARIABLES), _text(POLICY_MD)) == []


def _policy_examples() -> list[tuple[int, str]]:
    return [
        (line, body) for line, body in _blocks(POLICY_MD, "yaml") if body.startswith(EXAMPLE_MARKER)
    ]


def test_every_yaml_block_is_an_example_or_a_fragment() -> None:
    unmarked = [
        line
        for line, body in _blocks(POLICY_MD, "yaml")
        if not body.startswith((EXAMPLE_MARKER, FRAGMENT_MARKER))
    ]
    assert unmarked == [], f"yaml blocks at these lines need `{EXAMPLE_MARKER}: NAME` first"
    assert len(_policy_examples()) >= 10


@pytest.mark.parametrize(
    ("line", "body"), _policy_examples(), ids=lambda value: str(value).split("\n")[0]
)
def test_policy_example_compiles(line: int, body: str) -> None:
    policy, report = check_policy(body, f"docs/policy.md:{line}")
    assert policy is not None, "\n".join(report.lines())
    assert report.ok


# Command line -------------------------------------------------------------------------------


def _walk(
    command: click.Command, name: str, parent: click.Context | None = None
) -> Iterator[tuple[str, click.Command, click.Context]]:
    ctx = click.Context(command, info_name=name, parent=parent)
    yield ctx.command_path, command, ctx
    if isinstance(command, click.Group):
        for sub_name, sub in sorted(command.commands.items()):
            yield from _walk(sub, sub_name, ctx)


def test_every_cli_command_and_option_is_documented() -> None:
    text = _text(CLI_MD)
    missing: list[str] = []
    for path, command, ctx in _walk(cli, "paywarden"):
        if f"`{path}" not in text:
            missing.append(path)
        for param in command.get_params(ctx):
            if isinstance(param, click.Option):
                names = [*param.opts, *param.secondary_opts]
            else:
                names = [param.human_readable_name]
            missing.extend(f"{path} {n}" for n in names if not re.search(rf"`{n}\b", text))
    assert missing == []


# Runnable examples --------------------------------------------------------------------------


def _python_examples() -> list[tuple[str, int, str]]:
    return [
        (path.relative_to(ROOT).as_posix(), line, body)
        for path in (PYTHON_MD, README)
        for line, body in _blocks(path, "python")
    ]


def test_python_examples_exist() -> None:
    files = {name for name, _, _ in _python_examples()}
    assert files == {"docs/python.md", "README.md"}


@pytest.mark.parametrize(
    ("name", "line", "body"),
    _python_examples(),
    ids=[f"{name}:{line}" for name, line, _ in _python_examples()],
)
def test_python_example_runs(
    name: str, line: int, body: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # an example that writes files writes them here
    code = compile(body, f"{name}:{line}", "exec")
    exec(code, {"__name__": "__docs_example__"})


# Links --------------------------------------------------------------------------------------


def _anchors(path: Path) -> set[str]:
    """GitHub-style anchors of the headings in a markdown file."""
    text = _FENCE.sub("", _text(path))
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_links_between_docs_resolve() -> None:
    broken = []
    for source in (*sorted(DOCS.glob("*.md")), README):
        text = _FENCE.sub("", _text(source))
        for target, anchor in re.findall(r"\]\(([\w./-]*\.md)?(?:#([\w-]+))?\)", text):
            path = (source.parent / target) if target else source
            if not path.is_file():
                broken.append(f"{source.name} -> {target}")
            elif anchor and anchor not in _anchors(path):
                broken.append(f"{source.name} -> {target}#{anchor}")
    assert broken == []


# Architecture -------------------------------------------------------------------------------

ARCHITECTURE_MD = DOCS / "architecture.md"
SOURCE = ROOT / "src" / "paywarden"


def test_architecture_names_only_modules_that_exist() -> None:
    named = set(re.findall(r"`((?:[a-z_]+/)*[a-z_]+\.py)`", _text(ARCHITECTURE_MD)))
    assert named, "architecture.md names no module"
    sources = {name for name in named if not name.startswith("tests/")}
    missing = sorted(name for name in sources if not (SOURCE / name).is_file())
    assert missing == []


def test_architecture_names_every_use_case_module() -> None:
    text = _text(ARCHITECTURE_MD)
    modules = sorted(
        f"actions/{path.name}"
        for path in (SOURCE / "actions").glob("*.py")
        if path.name != "__init__.py"
    )
    unnamed = [module for module in modules if f"`{module}`" not in text]
    assert unnamed == []
