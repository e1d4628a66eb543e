"""Store contract: AP2 mandate nonces claimed once, and mandate budgets reserved atomically.

Runs on every store of contract_stores.STORES (SQLite in memory and on file, PostgreSQL).
"""

from __future__ import annotations

import threading

from contract_stores import T0

from paywarden.ports import Store
from paywarden.ports.mandates import Reservation

AUD = "https://pay.example.com"


def test_a_nonce_is_claimed_once_per_audience(store: Store) -> None:
    with store.write() as tx:
        assert tx.mandates.claim(AUD, "n1", "m1", "d1", T0)
        assert not tx.mandates.claim(AUD, "n1", "m2", "d2", T0 + 1)
        assert tx.mandates.claim("https://other.example", "n1", "m1", "d1", T0)
    with store.write() as tx:
        assert not tx.mandates.claim(AUD, "n1", "m1", "d1", T0 + 2)
        tx.mandates.delete(AUD, "n1", "d-other")  # another presentation's: kept
        assert not tx.mandates.claim(AUD, "n1", "m1", "d1", T0 + 3)
        tx.mandates.delete(AUD, "n1", "d1")
        assert tx.mandates.claim(AUD, "n1", "m1", "d1", T0 + 4)


def test_a_rolled_back_claim_is_not_kept(store: Store) -> None:
    class Undo(Exception):
        pass

    try:
        with store.write() as tx:
            assert tx.mandates.claim(AUD, "n9", "m1", "d1", T0)
            raise Undo
    except Undo:
        pass
    with store.write() as tx:
        assert tx.mandates.claim(AUD, "n9", "m1", "d1", T0)


def test_racing_claims_of_one_nonce_have_one_winner(store: Store) -> None:
    won: list[bool] = []
    lock = threading.Lock()

    def claim() -> None:
        result = store.run(lambda tx: tx.mandates.claim(AUD, "race", "m", "d", T0))
        with lock:
            won.append(result)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(won) == [False] * 7 + [True]


def test_budget_and_uses_are_reserved_only_while_they_fit(store: Store) -> None:
    with store.write() as tx:
        assert tx.mandates.get_usage("m1") is None
        assert tx.mandates.reserve(Reservation("m1", "JPY", 4500, 9000, 3, T0))
        assert tx.mandates.reserve(Reservation("m1", "JPY", 4500, 9000, 3, T0 + 1))
        assert not tx.mandates.reserve(Reservation("m1", "JPY", 1, 9000, 3, T0 + 2))
        assert tx.mandates.get_usage("m1") == (9000, 2)
        assert not tx.mandates.reserve(
            Reservation("m1", "USD", 1, None, None, T0 + 3)
        )  # not its currency
        assert tx.mandates.reserve(
            Reservation("m1", "JPY", 10**12, None, 3, T0 + 4)
        )  # no budget: uses count
        assert not tx.mandates.reserve(Reservation("m1", "JPY", 1, None, 3, T0 + 5))  # a fourth use
        assert tx.mandates.get_usage("m1") == (9000 + 10**12, 3)
        tx.mandates.release("m1", 10**12)
        assert tx.mandates.get_usage("m1") == (9000, 2)


def test_a_refused_first_use_and_an_undone_one_leave_no_row(store: Store) -> None:
    with store.write() as tx:
        assert not tx.mandates.reserve(Reservation("m2", "USDC", 600_000, 500_000, None, T0))
        assert tx.mandates.get_usage("m2") is None
        assert tx.mandates.reserve(Reservation("m2", "USDC", 500_000, 500_000, None, T0))
        tx.mandates.release("m2", 500_000)
        assert tx.mandates.get_usage("m2") is None
