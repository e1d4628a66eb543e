"""The console suite's fixtures: one headless Chromium (the distribution's package) for the
whole session, driven by Playwright; a real gateway on loopback per test, on a SQLite file,
with operators alice and bob, their keys, an admin key and an agent key. Without chromium the
browser tests are skipped, except in CI (`CI=true`), where they fail.

Screenshots go to `$PAYWARDEN_TEST_OUTPUT/console` (else the session's temporary directory);
with `PAYWARDEN_UPDATE_SCREENSHOTS=1` they are also copied to docs/console/.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from paywarden import Warden
from paywarden.entrypoints.rest.app import create_app
from paywarden.entrypoints.rest.settings import Settings
from support.console import POLICY, Gateway, Shoot
from support.servers import serving
from support.wardens import add_operators

DOCS_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:  # skipped on a machine without it; in CI (CI=true) a failure
        message = "chromium is not installed (apt-get install chromium; .ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    opened = browser.new_context(viewport={"width": 1280, "height": 900})
    opened.set_default_timeout(10_000)
    yield opened
    opened.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    warden = add_operators(Warden.open(policy, database=tmp_path / "console.db"))
    try:
        alice, bob, admin, agent = (
            warden.create_key(role="operator", operator="alice", actor="test")[0],
            warden.create_key(role="operator", operator="bob", actor="test")[0],
            warden.create_key(role="admin", actor="test")[0],
            warden.create_key(role="agent", agent="agent-a", actor="test")[0],
        )
        settings = Settings(policy=str(policy), policy_poll_seconds=0)
        with serving(create_app(settings, warden=warden)) as url:
            yield Gateway(url, warden, alice, bob, admin, agent, policy)
    finally:
        warden.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = os.environ.get("PAYWARDEN_TEST_OUTPUT")
    directory = Path(base) / "console" if base else tmp_path_factory.mktemp("console-shots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def screenshot(shots: Path) -> Shoot:
    """`screenshot(page, name)`: the whole page, as `<name>.png`."""

    def take(page: Page, name: str) -> Path:
        path = shots / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if os.environ.get("PAYWARDEN_UPDATE_SCREENSHOTS") == "1":
            DOCS_SHOTS.mkdir(exist_ok=True)
            shutil.copyfile(path, DOCS_SHOTS / path.name)
        return path

    return take
