"""Store contract: API keys and REST idempotency keys."""

from __future__ import annotations

from dataclasses import replace

import pytest
from contract_stores import T0, api_key

from paywarden.errors import StoreError
from paywarden.ports import IdempotencyRow, Store

# API keys ------------------------------------------------------------------------------------


def test_a_key_round_trips_and_is_revoked_once(store: Store) -> None:
    operator_key = replace(
        api_key("key_2"), role="operator", agent=None, operator="op-1", environment=None
    )
    with store.write() as tx:
        tx.keys.insert(api_key())
        tx.keys.insert(operator_key)
        assert tx.keys.revoke("key_1", T0 + 5)
        assert not tx.keys.revoke("key_1", T0 + 6)
        assert not tx.keys.revoke("key_9", T0 + 6)
    with pytest.raises(StoreError), store.write() as tx:
        tx.keys.insert(api_key())
    with store.read() as tx:
        assert tx.keys.get("key_1") == replace(api_key(), revoked_us=T0 + 5)
        assert tx.keys.get("key_2") == operator_key
        assert tx.keys.get("key_3") is None


def test_keys_are_listed_oldest_first_ties_by_id(store: Store) -> None:
    with store.write() as tx:
        tx.keys.insert(api_key("key_b", T0 + 1))
        tx.keys.insert(api_key("key_a", T0 + 1))
        tx.keys.insert(api_key("key_c", T0))
    with store.read() as tx:
        assert [row.key_id for row in tx.keys.list_all()] == ["key_c", "key_a", "key_b"]


# Idempotency keys ----------------------------------------------------------------------------


def test_a_key_is_claimed_once_finished_and_then_replayed(store: Store) -> None:
    with store.write() as tx:
        assert tx.idempotency.get("agent-1 POST /v1/payments", "order-1") is None
        assert tx.idempotency.claim("agent-1 POST /v1/payments", "order-1", "fp", T0, T0 - 60)
        assert not tx.idempotency.claim("agent-1 POST /v1/payments", "order-1", "fp", T0, T0 - 60)
        assert tx.idempotency.claim("agent-2 POST /v1/payments", "order-1", "fp", T0, T0 - 60)
        assert tx.idempotency.get("agent-1 POST /v1/payments", "order-1") == IdempotencyRow(
            "agent-1 POST /v1/payments", "order-1", "fp", "in_progress", None, None, T0, T0
        )
        tx.idempotency.finish("agent-1 POST /v1/payments", "order-1", 201, '{"ok": 1}', T0 + 9)
        tx.idempotency.finish("agent-1 POST /v1/payments", "order-1", 500, '{"ok": 0}', T0 + 10)
    with store.read() as tx:
        done = tx.idempotency.get("agent-1 POST /v1/payments", "order-1")
    assert done == IdempotencyRow(
        "agent-1 POST /v1/payments", "order-1", "fp", "done", 201, '{"ok": 1}', T0, T0 + 9
    )


def test_a_stale_claim_is_taken_over_only_by_the_same_request(store: Store) -> None:
    with store.write() as tx:
        assert tx.idempotency.claim("s", "k", "fp-1", T0, T0 - 60)
        # Not stale yet (claimed at T0, stale only if before the given instant).
        assert not tx.idempotency.claim("s", "k", "fp-1", T0 + 10, T0)
        # Stale, but another request body: refused.
        assert not tx.idempotency.claim("s", "k", "fp-2", T0 + 100, T0 + 50)
        assert tx.idempotency.claim("s", "k", "fp-1", T0 + 100, T0 + 50)
        taken = tx.idempotency.get("s", "k")
        assert taken is not None and (taken.created_us, taken.updated_us) == (T0, T0 + 100)
        tx.idempotency.finish("s", "k", 200, "{}", T0 + 101)
        # A finished key is never taken over, however old.
        assert not tx.idempotency.claim("s", "k", "fp-1", T0 + 10**9, T0 + 10**9)


def test_releasing_forgets_only_an_in_progress_claim(store: Store) -> None:
    with store.write() as tx:
        assert tx.idempotency.claim("s", "a", "fp", T0, T0 - 60)
        assert tx.idempotency.claim("s", "b", "fp", T0, T0 - 60)
        tx.idempotency.finish("s", "b", 200, "{}", T0 + 1)
        tx.idempotency.release("s", "a")
        tx.idempotency.release("s", "b")
        tx.idempotency.release("s", "c")
    with store.read() as tx:
        assert tx.idempotency.get("s", "a") is None
        finished = tx.idempotency.get("s", "b")
    assert finished is not None and finished.state == "done"
    with store.write() as tx:
        assert tx.idempotency.claim("s", "a", "fp-new", T0 + 2, T0 - 60)
