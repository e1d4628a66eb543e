"""The fast paths stay fast by construction, and a missing extra is one line naming it.

Each probe runs a fresh interpreter (as `paywarden` does) and reports which modules it loaded,
so these tests see what a user's process loads; none of them times anything (the figures are
in docs/benchmarks.md, from bench/cli_startup.py). A missing extra is simulated by a meta path
finder that answers `ModuleNotFoundError` for the blocked packages, as Python does for a package
that is not installed.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import paywarden
from paywarden import extras
from paywarden.entrypoints.cli.main import COMMANDS, cli, require_extra

REPO = Path(__file__).resolve().parents[2]
FINTECH = REPO / "src" / "paywarden" / "examples" / "fintech_policy.yaml"
# Packages no fast path may load: the extras' SDKs, and CEL (only `when:` needs it).
HEAVY = {"fastapi", "starlette", "uvicorn", "mcp", "mcp_types", "pydantic", "anyio"}
HEAVY |= {"stripe", "requests", "cel", "prompt_toolkit", "typer", "rich"}
CEL_LOADS = {"prompt_toolkit", "typer", "rich", "pydantic"}  # the `cel` package's own CLI
# Every extra's packages: what a base install (`pip install paywarden`) does not have.
NO_EXTRAS = tuple(sorted(set().union(*extras.MODULES_OF_EXTRA.values())))

# argv[1]: comma-separated packages to block ("" for none); argv[2]: file for the loaded
# modules; argv[3]: "import" (just `import paywarden`), "exec" (run the code in argv[4]) or
# "cli" (run `paywarden` with the remaining arguments).
PROBE = """
import json, sys

class Blocker:
    def __init__(self, names):
        self.names = names

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None

blocked = {name for name in sys.argv[1].split(",") if name}
assert not [m for m in sys.modules if m.partition(".")[0] in blocked]
sys.meta_path.insert(0, Blocker(blocked))
out, mode = sys.argv[2], sys.argv[3]
sys.argv = ["paywarden", *sys.argv[4:]]
status = 0
try:
    if mode == "import":
        import paywarden
    elif mode == "exec":
        exec(sys.argv[1])
    else:
        from paywarden.entrypoints.cli.main import main
        main()
except SystemExit as exit:
    status = exit.code
with open(out, "w") as file:
    json.dump(sorted(sys.modules), file)
sys.exit(status)
"""


def _probe(
    tmp_path: Path, *args: str | Path, mode: str = "cli", blocked: tuple[str, ...] = ()
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    out = tmp_path / "modules.json"
    command = [sys.executable, "-c", PROBE, ",".join(blocked), str(out), mode]
    result = subprocess.run(
        [*command, *map(str, args)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    modules: list[str] = json.loads(out.read_text()) if out.exists() else []
    return result, modules


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if m.partition(".")[0] in HEAVY]


def _check_args(policy: Path) -> tuple[str | Path, ...]:
    return (
        "check",
        "--policy",
        policy,
        "--agent",
        "a",
        "--action",
        "payments.transfer",
        "--amount",
        "10",
        "--currency",
        "USD",
        "--recipient",
        "vendor.example.com",
    )


# The fast paths --------------------------------------------------------------------------------


def test_import_paywarden_loads_no_library_module(tmp_path: Path) -> None:
    result, modules = _probe(tmp_path, mode="import")
    assert result.returncode == 0, result.stderr
    assert _heavy(modules) == []
    assert [m for m in modules if m.startswith("paywarden")] == ["paywarden"]


def test_version_loads_neither_the_library_nor_an_extra(tmp_path: Path) -> None:
    result, modules = _probe(tmp_path, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"paywarden, version {paywarden.__version__}\n"
    assert _heavy(modules) == []
    library = [m for m in modules if m.startswith("paywarden.") and ".cli" not in m]
    assert library == ["paywarden.entrypoints", "paywarden.errors", "paywarden.extras"]


def test_check_without_when_decides_without_cel_or_any_extra(tmp_path: Path) -> None:
    assert "when:" not in FINTECH.read_text(encoding="utf-8")
    result, modules = _probe(tmp_path, *_check_args(FINTECH))
    assert result.returncode == 0, result.stderr
    assert "outcome:     allow" in result.stdout
    assert _heavy(modules) == []
    for unused in ("serve_cli", "audit_cli", "operator_cli", "keys_cli", "workflow_cli"):
        assert f"paywarden.entrypoints.cli.{unused}" not in modules


@pytest.mark.parametrize(
    ("when", "loads_cel"),
    [("amount_minor > 500", False), ("size(recipient) > 0 && amount_minor > 500", True)],
)
def test_check_with_when_decides_by_it_and_loads_cel_only_outside_the_compiled_subset(
    tmp_path: Path, when: str, loads_cel: bool
) -> None:
    policy = tmp_path / "when.yaml"
    policy.write_text(
        "currency: USD\nrules:\n"
        f"  - {{id: big, effect: deny, when: '{when}'}}\n"
        "  - {id: rest, effect: allow, actions: [payments.transfer]}\n",
        encoding="utf-8",
    )
    result, modules = _probe(tmp_path, *_check_args(policy))  # 10 USD = 1000 minor: denied
    assert result.returncode == 0, result.stderr
    assert "outcome:     deny" in result.stdout and "big" in result.stdout
    assert ("cel" in modules) is loads_cel
    loaded = {m.partition(".")[0] for m in _heavy(modules)}
    assert loaded <= {"cel", *CEL_LOADS}  # CEL, and no extra's package


# Missing extras --------------------------------------------------------------------------------

SERVE_ERROR = "error: paywarden serve needs the server extra: pip install 'paywarden[server]'\n"
MCP_ERROR = "error: paywarden mcp needs the mcp extra: pip install 'paywarden[mcp]'\n"


@pytest.mark.parametrize("blocked", ["fastapi", "uvicorn", "mcp", "starlette", "pydantic"])
def test_serve_without_the_server_extra_is_one_line_and_starts_nothing(
    tmp_path: Path, blocked: str, database: Path
) -> None:
    result, modules = _probe(
        tmp_path, "serve", "--database", database, "--port", "1", blocked=(blocked,)
    )
    assert (result.returncode, result.stdout, result.stderr) == (2, "", SERVE_ERROR)
    assert not database.exists()
    assert blocked not in modules


def test_serve_with_a_bad_setting_still_reports_the_extra_first(tmp_path: Path) -> None:
    result, _ = _probe(tmp_path, "serve", "--workers", "0", blocked=("fastapi",))
    assert (result.returncode, result.stderr) == (2, SERVE_ERROR)


@pytest.mark.parametrize("blocked", ["mcp", "anyio", "pydantic"])
def test_mcp_without_the_mcp_extra_is_one_line(tmp_path: Path, blocked: str) -> None:
    result, _ = _probe(
        tmp_path, "mcp", "--policy", FINTECH, "--key", "pw_live_x", blocked=(blocked,)
    )
    assert (result.returncode, result.stdout, result.stderr) == (2, "", MCP_ERROR)


def test_help_works_without_any_extra(tmp_path: Path) -> None:
    blocked = NO_EXTRAS
    result, _ = _probe(tmp_path, "--help", blocked=blocked)
    assert result.returncode == 0, result.stderr
    listed = re.findall(r"^  ([a-z][a-z-]*) ", result.stdout, flags=re.MULTILINE)
    assert listed == sorted(COMMANDS)
    for command in ("serve", "mcp"):
        result, _ = _probe(tmp_path, command, "--help", blocked=blocked)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"Usage: paywarden {command} ")


def test_the_base_install_runs_the_library_commands(tmp_path: Path, database: Path) -> None:
    steps: list[tuple[str | Path, ...]] = [
        (*_check_args(FINTECH), "--database", database),
        ("budgets", "--policy", FINTECH, "--database", database),
        ("audit", "verify", "--database", database),
        ("payments", "list", "--database", database),
        ("keys", "create", "--database", database, "--role", "agent", "--agent", "a"),
        ("approvals", "list", "--database", database),
        ("policy", "explain", FINTECH),
        ("demo",),
    ]
    outputs = []
    for step in steps:
        result, modules = _probe(tmp_path, *step, blocked=NO_EXTRAS)
        assert result.returncode == 0, (step, result.stderr)
        assert not [m for m in modules if m.partition(".")[0] in NO_EXTRAS]
        outputs.append(result.stdout)
    assert "outcome:     allow" in outputs[0]
    assert re.match(r"ok: [1-9]\d* entries verified", outputs[2])  # the decision was audited
    assert outputs[5] == "(no approval requests)\n"


def test_stripe_rail_without_the_stripe_extra_names_it(tmp_path: Path) -> None:
    code = (
        "from paywarden.errors import InvalidInputError\n"
        "from paywarden.rails import load_rail\n"
        "try:\n    load_rail('stripe')\n"
        "except InvalidInputError as error:\n    print(type(error).__name__, error)\n"
    )
    for blocked in ("stripe", "requests"):
        result, modules = _probe(tmp_path, code, mode="exec", blocked=(blocked,))
        assert result.returncode == 0, result.stderr
        assert result.stdout == (
            "InvalidInputError rail `stripe` needs the stripe extra: "
            "pip install 'paywarden[stripe]'\n"
        )
        assert blocked not in modules


def test_a_bug_is_not_reported_as_a_missing_extra() -> None:
    with pytest.raises(ModuleNotFoundError) as raised:
        require_extra("paywarden serve", "server", ("paywarden.no_such_module",))
    assert raised.value.name == "paywarden.no_such_module"
    bug = ImportError("cannot import name 'x' from 'paywarden.ports'", name="paywarden.ports")
    assert not any(extras.missing_extra(bug, extra) for extra in extras.MODULES_OF_EXTRA)


# The tables stay in step -----------------------------------------------------------------------


def test_every_lazy_command_loads_under_its_name() -> None:
    assert list(cli.commands) == sorted(COMMANDS)
    for name, command in cli.commands.items():
        assert command.name == name
        assert cli.commands[name] is command  # loaded once


def test_lazy_public_names_are_the_defining_modules_objects() -> None:
    table = paywarden._MODULE_OF
    assert set(table) == set(paywarden.__all__) - {"__version__"}
    for name, module in table.items():
        assert getattr(paywarden, name) is getattr(importlib.import_module(module), name)
    assert set(paywarden.__all__) <= set(dir(paywarden))
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = paywarden.no_such_name  # type: ignore[attr-defined]


# Distribution name in pyproject.toml -> the module it installs, for what paywarden imports.
_MODULE_OF_DISTRIBUTION = {"common-expression-language": "cel", "pyyaml": "yaml"}


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in requirements}


def test_pyproject_extras_match_the_extras_table() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    optional: dict[str, list[str]] = project["optional-dependencies"]
    base = _requirement_names(project["dependencies"])
    for extra, modules in extras.MODULES_OF_EXTRA.items():
        declared = _requirement_names(optional[extra]) - {"paywarden"}
        assert {_MODULE_OF_DISTRIBUTION.get(d, d) for d in declared} <= modules, extra
        assert not {d.replace("-", "_") for d in base} & modules, extra  # not in the base
    assert "paywarden[mcp]" in optional["server"]  # the gateway serves MCP at /mcp
    (everything,) = optional["all"]
    assert set(everything.removeprefix("paywarden[").removesuffix("]").split(",")) == set(
        extras.MODULES_OF_EXTRA
    )
    assert "paywarden[all]" in optional["dev"]
