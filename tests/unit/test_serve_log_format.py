"""uvicorn's lines, its access log and paywarden's own loggers share one line format under
`paywarden serve` (the logging configuration it hands to uvicorn)."""

from __future__ import annotations

import io
import logging
import logging.config
from collections.abc import Iterator

import pytest

from paywarden.entrypoints.rest.server import log_config


@pytest.fixture
def configured() -> Iterator[dict[str, io.StringIO]]:
    streams = {"default": io.StringIO(), "access": io.StringIO()}
    config = log_config()
    for name, stream in streams.items():
        config["handlers"][name] = {
            "class": "logging.StreamHandler",
            "formatter": name,
            "stream": stream,
        }
    logging.config.dictConfig(config)
    yield streams
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "paywarden"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def test_uvicorn_and_paywarden_lines_have_one_format(configured: dict[str, io.StringIO]) -> None:
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    paywarden = logging.getLogger("paywarden.rest")
    paywarden.setLevel(logging.INFO)
    paywarden.info("reconcile at start: %d payment(s) changed", 0)
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/healthz?key=secret", "1.1", 200
    )
    lines = configured["default"].getvalue().splitlines()
    assert lines == [
        "INFO: Started server process [42]",
        "INFO: reconcile at start: 0 payment(s) changed",
    ]
    access = configured["access"].getvalue().splitlines()
    assert access == ['INFO: 127.0.0.1:5000 - "GET /healthz HTTP/1.1" 200 OK']  # query dropped
