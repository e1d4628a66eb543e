"""The REST gateway: `create_app(settings)` builds the FastAPI app that `paywarden serve` runs."""

from paywarden.entrypoints.rest.app import create_app
from paywarden.entrypoints.rest.settings import Settings, load_settings

__all__ = ["Settings", "create_app", "load_settings"]
