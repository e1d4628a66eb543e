"""The policy in force: reload it (validated, versioned, audited), record it at start, and say
whether this deployment can allow payments at all.

A reloaded policy is recorded in the store with its text (`policy.loading.record_version`), in
the transaction that audits it; every decision reads the recorded version inside its own
transaction (`actions.authorize.policy_in_force`), so no decision committed after a reload, in
any process sharing the store, uses the old policy.
"""

from __future__ import annotations

import logging
from pathlib import Path

from paywarden.audit import records
from paywarden.errors import StoreError
from paywarden.policy.compiler import CompiledPolicy
from paywarden.policy.loading import (
    LoadedPolicy,
    is_known_version,
    load_policy,
    record_version,
    recorded_policy,
    recorded_version,
)
from paywarden.ports import UnitOfWork
from paywarden.runtime import Runtime

log = logging.getLogger("paywarden.policy")
# Meta key: the rejected start-up policy last audited, against the version then in force.
REJECTED_AT_START_KEY = "policy_rejected_at_start"


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
        if recorded_version(tx) != version:  # another process may have recorded it
            body = _policy_body(loaded, actor, current.version if current else None)
            records.append(tx, now_us, "policy.loaded", version, body)
            record_version(tx, loaded)
        rt.loaded, rt.policy_seen = loaded, version  # in the same transaction as the record
    return loaded


def record_policy_load(rt: Runtime) -> None:
    """Settle the policy a runtime starts with against the one in force in the store.

    The store's policy is the one every process uses; a file or text given at start is only a
    way to upload one. Without a policy, the runtime adopts the store's. A valid policy the
    store has never had in force is recorded and audited (`policy.loaded`); one it had before
    (a stale file on a restarted host) is not put back: the runtime adopts the store's, and
    only an explicit reload rolls back. An invalid policy is audited as rejected (once per
    version of the store's policy) and leaves this runtime not ready; the store's stays in force
    for everyone else.
    """
    loaded = rt.loaded
    try:
        with rt.store.write() as tx:
            recorded = recorded_version(tx)
            rt.policy_seen = recorded
            if loaded.policy is None:
                _start_without_policy(rt, tx, recorded)
            elif loaded.policy.version != recorded:
                _start_with_policy(rt, tx, recorded)
    except StoreError:
        return  # every decision will deny with the store error; nothing more to do here


def _start_without_policy(rt: Runtime, tx: UnitOfWork, recorded: str | None) -> None:
    loaded = rt.loaded
    if loaded.text is None and loaded.source == "policy":  # none given: use the store's
        adopted = recorded_policy(tx, recorded) if recorded is not None else None
        if adopted is not None:
            rt.loaded = adopted
        return
    version = f"invalid:{loaded.reason_code}"
    seen_key = REJECTED_AT_START_KEY
    if tx.meta.get(seen_key) == f"{version}@{recorded}":
        return  # this rejection is already audited against the policy in force
    records.append(
        tx, rt.now_us(), "policy.rejected", version, _policy_body(loaded, "system", recorded)
    )
    tx.meta.set(seen_key, f"{version}@{recorded}")


def _start_with_policy(rt: Runtime, tx: UnitOfWork, recorded: str | None) -> None:
    loaded = rt.loaded
    assert loaded.policy is not None
    version = loaded.policy.version
    if recorded is not None and is_known_version(tx, version):
        adopted = recorded_policy(tx, recorded)
        if adopted is not None:  # a stale upload: the store's newer choice stands
            log.warning(
                "policy %s (version %s) was in force before and was replaced by version %s; "
                "using the database's policy (reload the file to roll back on purpose)",
                loaded.source,
                version[:19],
                recorded[:19],
            )
            rt.loaded = adopted
            return
    records.append(
        tx, rt.now_us(), "policy.loaded", version, _policy_body(loaded, "system", recorded)
    )
    record_version(tx, loaded)
    rt.policy_seen = version


def sync_policy(rt: Runtime, tx: UnitOfWork) -> CompiledPolicy | None:
    """The policy in force, read in `tx`: when another process recorded a new version since this
    one last looked, adopt it (its text is in the store), so every process decides the same."""
    recorded = recorded_version(tx)
    if recorded is None or recorded == rt.policy_seen:
        return rt.loaded.policy
    newer = recorded_policy(tx, recorded)
    if newer is None:
        return rt.loaded.policy  # recorded by an older paywarden, without its text
    rt.loaded, rt.policy_seen = newer, recorded
    return newer.policy


def ready(rt: Runtime) -> list[str]:
    """Why this Warden cannot allow payments now (empty when ready): no usable policy, or a
    store that cannot be read."""
    problems = []
    try:
        with rt.store.read() as tx:
            sync_policy(rt, tx)
    except StoreError as error:
        problems.append(f"store: {error}")
    if rt.loaded.policy is None:
        problems.insert(0, f"policy: {rt.loaded.report.summary()}")
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
