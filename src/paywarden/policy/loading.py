"""Load a policy from a path or YAML text, keeping why it could not be loaded; record which
policy is in force in the store, so every process sharing it decides with the same one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from paywarden import limits
from paywarden.policy.compiler import CompiledPolicy, check_policy
from paywarden.policy.report import CompileReport
from paywarden.ports import UnitOfWork


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    """A compiled policy, or the reason code and report of why there is none."""

    policy: CompiledPolicy | None
    report: CompileReport
    reason_code: str | None  # None when `policy` is usable
    source: str
    text: str | None = None


def load_policy(policy: str | Path | None) -> LoadedPolicy:
    """Read and compile `policy` (a path or YAML text). Never raises for a bad policy."""
    if policy is None:
        report = CompileReport("policy")
        report.error("no policy given", None)
        return LoadedPolicy(None, report, "policy_missing", "policy")
    source, text = _read(policy)
    if text is None:
        report = CompileReport(source)
        report.error("policy file not found or unreadable", None)
        return LoadedPolicy(None, report, "policy_missing", source)
    if not text.strip():
        report = CompileReport(source)
        report.error("policy is empty", None)
        return LoadedPolicy(None, report, "policy_missing", source, text)
    compiled, report = check_policy(text, source)
    return LoadedPolicy(compiled, report, None if compiled else "policy_invalid", source, text)


def _read(policy: str | Path) -> tuple[str, str | None]:
    if isinstance(policy, str) and ("\n" in policy or policy.lstrip().startswith("{")):
        return "policy", policy
    path = Path(policy)
    try:
        if path.stat().st_size > limits.policy_file_bytes_max:
            return str(path), None
        return str(path), path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        if isinstance(policy, str) and ":" in policy and not path.suffix:
            return "policy", policy
        return str(path), None


POLICY_VERSION_KEY = "policy_version"
POLICY_TEXT_KEY = "policy_text:"
# The `source` of a policy adopted from the store rather than read from a file or text.
DATABASE_SOURCE = "database"


def recorded_version(tx: UnitOfWork) -> str | None:
    """The version of the policy in force in the store (None before any was recorded)."""
    version = tx.meta.get(POLICY_VERSION_KEY)
    return None if version is None or version.startswith("invalid:") else version


def recorded_policy(tx: UnitOfWork, version: str) -> LoadedPolicy | None:
    """Policy `version` as the store keeps it, compiled, or None when its text is not kept
    (recorded by an older paywarden) or no longer compiles here."""
    text = tx.meta.get(POLICY_TEXT_KEY + version)
    if text is None:
        return None
    compiled, report = check_policy(text, DATABASE_SOURCE)
    if compiled is None or compiled.version != version:
        return None
    return LoadedPolicy(compiled, report, None, DATABASE_SOURCE, text)


def is_known_version(tx: UnitOfWork, version: str) -> bool:
    """Whether policy `version` was in force here before (its text is kept)."""
    return tx.meta.get(POLICY_TEXT_KEY + version) is not None


def record_version(tx: UnitOfWork, loaded: LoadedPolicy) -> None:
    """Record `loaded` as the policy in force, with its text, so that every process sharing
    the store decides with it from this transaction on."""
    if loaded.policy is None:
        return
    version = loaded.policy.version
    if loaded.text is not None:
        tx.meta.set(POLICY_TEXT_KEY + version, loaded.text)
    tx.meta.set(POLICY_VERSION_KEY, version)
