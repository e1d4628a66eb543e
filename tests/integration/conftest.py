"""Fixtures only the integration tests use: the REST gateway on the standard REST policy, and
webhooks delivered by hand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rest_support import Gateway, open_gateway


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    """The gateway app in process on `rest_support.POLICY`; a module whose gateway needs
    another policy defines its own `gateway` fixture with `open_gateway(tmp_path, policy)`."""
    with open_gateway(tmp_path) as opened:
        yield opened


class _NoDispatcher:
    """Stands in for the webhook dispatcher thread: the test calls `deliver_webhooks()` itself."""

    def __init__(self, *args: object) -> None:
        pass

    def stop(self) -> None:
        pass


@pytest.fixture
def manual(monkeypatch: pytest.MonkeyPatch) -> None:
    """Webhooks are delivered only when the test calls `Warden.deliver_webhooks()`."""
    monkeypatch.setattr("paywarden.adapters.notify.webhook.WebhookDispatcher", _NoDispatcher)
