"""Fixtures for the x402 guard tests (see x402_helpers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from x402 import x402Client, x402ClientSync
from x402_helpers import POLICY, CountingScheme

from paywarden import Warden
from paywarden.x402.paid_api import NETWORK, FakeFacilitator


@pytest.fixture
def facilitator() -> FakeFacilitator:
    return FakeFacilitator()


@pytest.fixture
def scheme() -> CountingScheme:
    return CountingScheme()


@pytest.fixture
def async_client(scheme: CountingScheme) -> x402Client:
    return x402Client().register(NETWORK, scheme)


@pytest.fixture
def sync_client(scheme: CountingScheme) -> x402ClientSync:
    return x402ClientSync().register(NETWORK, scheme)


@pytest.fixture
def warden(tmp_path: Path) -> Iterator[Warden]:
    with Warden.open(POLICY, database=tmp_path / "ledger.db") as opened:
        yield opened
