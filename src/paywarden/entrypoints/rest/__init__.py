"""The REST gateway: `create_app(settings)` builds the FastAPI app that `paywarden serve` runs.

Names resolve on first use, so `paywarden.entrypoints.rest.settings` loads without the
`server` extra (FastAPI is imported only with the app).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from paywarden.entrypoints.rest.app import create_app
    from paywarden.entrypoints.rest.settings import Settings, load_settings

__all__ = ["Settings", "create_app", "load_settings"]
_MODULES = {"create_app": "app", "Settings": "settings", "load_settings": "settings"}


def __getattr__(name: str) -> object:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
