"""Fixtures shared by every test folder.

- `clock`: a `FrozenClock` at `START` (FrozenClock's own default), or at the instant a
  `@pytest.mark.clock("...")` marker on the test or its module names;
- `database`: the path of a SQLite ledger file under `tmp_path` (not created);
- `open_warden`: opens a Warden on `database` with `clock` (both overridable by keyword) and
  closes every Warden it opened when the test ends;
- `rail`: the sandbox rail with no real sleeping between its scripted retries.

Plain helpers that are not fixtures live in the `support` package beside this file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paywarden import FrozenClock, Warden
from paywarden.adapters.rails.sandbox import SandboxRail
from support.wardens import OpenWarden, no_sleep

START = "2026-01-05T12:00:00+00:00"  # a Monday noon in UTC, FrozenClock's default


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "clock(start): the instant the `clock` fixture starts at (ISO 8601)"
    )


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> FrozenClock:
    marker = request.node.get_closest_marker("clock")
    return FrozenClock(marker.args[0] if marker is not None else START)


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def open_warden(database: Path, clock: FrozenClock) -> Iterator[OpenWarden]:
    opened: list[Warden] = []

    def open_(policy: str | Path, /, **options: Any) -> Warden:
        options.setdefault("database", database)
        options.setdefault("clock", clock)
        warden = Warden.open(policy, **options)
        opened.append(warden)
        return warden

    yield open_
    for warden in reversed(opened):
        warden.close()


@pytest.fixture
def rail() -> SandboxRail:
    return SandboxRail(sleep=no_sleep)
