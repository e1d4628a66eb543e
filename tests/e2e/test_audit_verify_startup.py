"""`paywarden audit verify` loads the verifier and little else: no signing library unless a
checkpoint is given, no policy compiler, no worker processes for a small log.

Method: run the command in a fresh interpreter, as a user does, on a real ledger file, and read
back the modules it loaded (nothing is timed here; bench/audit_verify.py measures the start-up).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from paywarden import Warden
from paywarden.testing import example_intent

POLICY = """
currency: USD
rules:
  - {id: allow, effect: allow, actions: ["payments.*"]}
"""
# Runs `paywarden` with argv[2:], then writes the loaded modules to argv[1].
PROBE = """
import json, sys
out = sys.argv[1]
sys.argv = ["paywarden", *sys.argv[2:]]
status = 0
try:
    from paywarden.entrypoints.cli.main import main
    main()
except SystemExit as exit:
    status = exit.code
with open(out, "w") as file:
    json.dump(sorted(sys.modules), file)
sys.exit(status)
"""
# What verifying a log does not need: signing, policies, proofs, worker processes.
NOT_FOR_VERIFY = (
    "cryptography",
    "yaml",
    "multiprocessing",
    "paywarden.audit.checkpoint",
    "paywarden.audit.proof",
    "paywarden.policy",
    "paywarden.warden",
    "paywarden.actions",
)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    database = tmp_path_factory.mktemp("verify") / "ledger.db"
    with Warden.open(POLICY, database=database) as warden:
        for _ in range(3):
            warden.authorize(example_intent("10"))
    return database


def _run(tmp_path: Path, *args: str | Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    out = tmp_path / "modules.json"
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *map(str, args)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result, set(json.loads(out.read_text()))


def _loaded(modules: set[str], name: str) -> bool:
    return any(module == name or module.startswith(f"{name}.") for module in modules)


def test_verify_loads_only_the_verifier(ledger: Path, tmp_path: Path) -> None:
    result, modules = _run(tmp_path, "audit", "verify", "--database", ledger)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: ")
    assert "paywarden.audit.chain" in modules
    assert [name for name in NOT_FOR_VERIFY if _loaded(modules, name)] == []


def test_verify_against_a_checkpoint_loads_the_signing_library_it_needs(
    ledger: Path, tmp_path: Path
) -> None:
    key = tmp_path / "audit.key"
    made, _ = _run(tmp_path, "audit", "keygen", "--out", key)
    assert made.returncode == 0, made.stderr
    signed, _ = _run(tmp_path, "audit", "checkpoint", "--database", ledger, "--key", key)
    assert signed.returncode == 0, signed.stderr
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text(signed.stdout, encoding="utf-8")
    public = ("--public-key", key.with_suffix(".pub"))
    result, modules = _run(
        tmp_path, "audit", "verify", "--database", ledger, "--checkpoint", checkpoint, *public
    )
    assert result.returncode == 0, result.stderr
    assert "checkpoint at seq" in result.stdout
    assert _loaded(modules, "cryptography")
