"""The policies several test modules share, kept in tests/data/policies/<name>.yaml.

A policy that one test or one module is about stays in that module, where its reader sees it."""

from __future__ import annotations

from pathlib import Path

POLICIES = Path(__file__).resolve().parents[1] / "data" / "policies"


def policy_path(name: str) -> Path:
    """The file of the shared policy `name` (a name without `.yaml`)."""
    path = POLICIES / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no shared test policy `{name}` in {POLICIES}")
    return path


def policy_text(name: str) -> str:
    """The text of the shared policy `name`, exactly as stored."""
    return policy_path(name).read_text(encoding="utf-8")


def write_policy(directory: Path, text: str) -> Path:
    """`text` written to `directory`/policy.yaml, for commands that take a policy file."""
    path = directory / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path
