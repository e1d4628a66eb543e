"""The `store` fixture: every contract test runs once per store in contract_stores.STORES."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from contract_stores import STORES

from paywarden.ports import Store


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = STORES[request.param](tmp_path)
    try:
        yield opened
    finally:
        opened.close()
