"""The console tests' gateway, and what they do as an agent (over REST) and as a person (in
the browser)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page

from paywarden import Warden

POLICY = """
currency: USD
approvals:
  ttl: 1h
  two_person_above: 1000
rules:
  - id: review-large
    effect: require_approval
    actions: ["payments.*"]
    amount: {gt: 100}
  - id: allow-payments
    effect: allow
    actions: ["payments.*"]
budgets:
  - id: daily
    limit: "10000.00"
    window: day
"""

Shoot = Callable[[Page, str], Path]


@dataclass
class Gateway:
    """A running gateway: its URL, its Warden, and a key of each kind."""

    url: str
    warden: Warden
    alice: str
    bob: str
    admin: str
    agent: str
    policy: Path


def agent_pays(url: str, key: str, amount: str, **fields: Any) -> dict[str, Any]:
    """The agent asks to pay `amount` USD to vendor.example.com over REST (a fresh
    Idempotency-Key: each call is a new attempt, as a retry after approval is)."""
    body = {
        "action": "payments.transfer",
        "amount": amount,
        "currency": "USD",
        "recipient": "vendor.example.com",
        **fields,
    }
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex}
    response = httpx.post(f"{url}/v1/payments", json=body, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def sign_in(page: Page, url: str, key: str) -> None:
    page.goto(f"{url}/console/login")
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/console/approvals")


def flash(page: Page) -> str:
    return page.locator(".flash").first.inner_text()
