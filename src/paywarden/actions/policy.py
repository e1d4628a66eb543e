"""The policy in force: reload it (validated, versioned, audited), record it at start, and say
whether this deployment can allow payments at all.

A reloaded policy is recorded in the store with its text (`policy.loading.record_version`), in
the transaction that audits it; every decision reads the recorded version inside its own
transaction (`actions.authorize.policy_in_force`), so no decision committed after a reload, in
any process sharing the store, uses the old policy.
"""

from __future__ import annotations

from pathlib import Path

from paywarden.audit import records
from paywarden.errors import StoreError
from paywarden.policy.loading import (
    POLICY_VERSION_KEY,
    LoadedPolicy,
    load_policy,
    record_version,
)
from paywarden.runtime import Runtime


def reload_policy(rt: Runtime, policy: str | Path, *, actor: str) -> LoadedPolicy:
    """Validate a new policy (YAML text or a path) and put it in force.

    A policy with errors is rejected: the rejection and its problems are audited, and the
    returned `LoadedPolicy` has `policy=None` and the report, while the previous policy
    stays in force. A valid policy with a new version is audited as `policy.loaded` in the
    same transaction that records its version, and only then used.
    """
    loaded = load_policy(policy)
    current = rt.loaded.policy
    now_us = rt.now_us()
    if loaded.policy is None:
        body = _policy_body(loaded, actor, current.version if current else None)
        with rt.store.write() as tx:
            ref = f"invalid:{loaded.reason_code}"
            records.append(tx, now_us, "policy.rejected", ref, body)
        return loaded
    version = loaded.policy.version
    if current is not None and current.version == version:
        rt.loaded = loaded  # same rules; keep the newer source text
        return loaded
    with rt.store.write() as tx:
        if tx.meta.get(POLICY_VERSION_KEY) != version:  # another process may have recorded it
            body = _policy_body(loaded, actor, current.version if current else None)
            records.append(tx, now_us, "policy.loaded", version, body)
            record_version(tx, loaded)
        rt.loaded = loaded  # in the same transaction: no decision between the two
    return loaded


def record_policy_load(rt: Runtime) -> None:
    """Audit the policy a runtime starts with, when it differs from the last one recorded
    (loaded or rejected)."""
    loaded = rt.loaded
    if loaded.policy is None and loaded.text is None and loaded.source == "policy":
        return  # opened without a policy (an admin task): there is no policy to record
    version = loaded.policy.version if loaded.policy else f"invalid:{loaded.reason_code}"
    body: dict[str, object] = {
        "actor": "system",
        "source": loaded.source,
        "policy_version": version,
        "status": "loaded" if loaded.policy else "rejected",
        "problems": [p.format(loaded.source) for p in loaded.report.problems[:20]],
    }
    try:
        with rt.store.write() as tx:
            if tx.meta.get(POLICY_VERSION_KEY) == version:
                return
            records.append(tx, rt.now_us(), "policy.loaded", version, body)
            if loaded.policy is None:
                tx.meta.set(POLICY_VERSION_KEY, version)  # `invalid:...`: nothing to share
            else:
                record_version(tx, loaded)
    except StoreError:
        return  # every decision will deny with the store error; nothing more to do here


def ready(rt: Runtime) -> list[str]:
    """Why this Warden cannot allow payments now (empty when ready): no usable policy, or a
    store that cannot be read."""
    problems = []
    if rt.loaded.policy is None:
        problems.append(f"policy: {rt.loaded.report.summary()}")
    try:
        with rt.store.read() as tx:
            tx.meta.get("policy_version")
    except StoreError as error:
        problems.append(f"store: {error}")
    return problems


def _policy_body(loaded: LoadedPolicy, actor: str, previous: str | None) -> dict[str, object]:
    policy = loaded.policy
    return {
        "actor": actor,
        "source": loaded.source,
        "policy_version": policy.version if policy else f"invalid:{loaded.reason_code}",
        "previous_version": previous,
        "status": "loaded" if policy else "rejected",
        "problems": [p.format(loaded.source) for p in loaded.report.problems[:20]],
    }
