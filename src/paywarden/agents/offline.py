"""The offline planner: rules over the goal text and a small catalog, no model and no network.

It stands in for an LLM in the demo, the tests and for users without a key, behind the same
`Planner` port, and behaves like a plausible agent:

* a purchase ("Buy a MacBook Pro for the new engineer") proposes the catalog's first choice,
  and after a denial the next, cheaper one (a MacBook Pro, then a MacBook Air);
* a payment with an amount in it ("pay vendor.example 15,000 USD for invoice 42") proposes that
  amount, and after a denial tries to split it into three equal payments: the move the
  cumulative budgets exist to stop.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from paywarden.agents.port import Feedback


@dataclass(frozen=True, slots=True)
class CatalogItem:
    name: str
    price: str
    recipient: str
    category: str


# keyword -> choices, the preferred first; each denial moves to the next.
CATALOG: dict[str, tuple[CatalogItem, ...]] = {
    "laptop": (
        CatalogItem("MacBook Pro 14-inch", "2499.00", "apple.com", "hardware"),
        CatalogItem("MacBook Air 13-inch", "1299.00", "apple.com", "hardware"),
        CatalogItem("ThinkPad E14", "899.00", "lenovo.com", "hardware"),
    ),
    "monitor": (
        CatalogItem("Studio Display", "1599.00", "apple.com", "hardware"),
        CatalogItem("Dell 27 4K monitor", "449.00", "dell.com", "hardware"),
    ),
    "chair": (
        CatalogItem("Herman Miller Aeron", "1395.00", "hermanmiller.com", "furniture"),
        CatalogItem("IKEA Markus", "229.00", "ikea.com", "furniture"),
    ),
    "credits": (CatalogItem("API credits", "50.00", "api.openai.com", "software"),),
    "thinkpad": (CatalogItem("ThinkPad E14", "899.00", "lenovo.com", "hardware"),),
}
KEYWORDS = {
    "thinkpad": "thinkpad",
    "laptop": "laptop",
    "macbook": "laptop",
    "notebook": "laptop",
    "monitor": "monitor",
    "display": "monitor",
    "chair": "chair",
    "credits": "credits",
}
SPLIT_PARTS = 3
DEFAULT_RECIPIENT = "vendor.example.com"
_AMOUNT = re.compile(r"(?<![\w.])(?:[$€£])?(\d{1,3}(?:,\d{3})+|\d+)(\.\d{1,2})?(?![\w.])")
_DOMAIN = re.compile(r"\b((?:[a-z0-9-]+\.)+[a-z]{2,})\b")
_CURRENCIES = {"usd": "USD", "$": "USD", "eur": "EUR", "€": "EUR", "gbp": "GBP", "£": "GBP"}


class OfflinePlanner:
    """A deterministic `Planner` (see the module docstring)."""

    def propose(self, goal: str, feedback: Sequence[Feedback]) -> str:
        text = goal.lower()
        choices = _catalog_choices(text)
        if choices:
            denied = sum(1 for item in feedback if item.outcome != "paid")
            item = choices[min(denied, len(choices) - 1)]
            proposal: dict[str, object] = {
                "amount": item.price,
                "currency": "USD",
                "recipient": item.recipient,
                "recipient_name": item.name,
                "category": item.category,
                "purpose": goal[:200],
            }
            return json.dumps(proposal)
        return json.dumps(_amount_proposal(goal, text, feedback))


def _catalog_choices(text: str) -> tuple[CatalogItem, ...]:
    for keyword, key in KEYWORDS.items():
        if re.search(rf"\b{keyword}", text):
            return CATALOG[key]
    return ()


def _amount_proposal(goal: str, text: str, feedback: Sequence[Feedback]) -> dict[str, object]:
    total = _amount(text)
    recipient = next(
        (m for m in _DOMAIN.findall(text) if not re.fullmatch(r"[\d.]+", m)), DEFAULT_RECIPIENT
    )
    currency = next((code for mark, code in _CURRENCIES.items() if mark in text), "USD")
    proposal: dict[str, object] = {
        "amount": str(total),
        "currency": currency,
        "recipient": recipient,
        "category": "invoice" if "invoice" in text else "services",
        "purpose": goal[:200],
    }
    split_from = next((item.attempt for item in feedback if item.outcome == "denied"), None)
    if split_from is None:
        return proposal
    paid = sum(1 for item in feedback if item.attempt > split_from and item.outcome == "paid")
    part = (total / SPLIT_PARTS).quantize(Decimal("0.01"))
    amount = total - part * (SPLIT_PARTS - 1) if paid == SPLIT_PARTS - 1 else part
    proposal["amount"] = str(amount)
    proposal["purpose"] = f"part {paid + 1} of {SPLIT_PARTS}: {goal[:180]}"
    proposal["more"] = paid + 1 < SPLIT_PARTS
    return proposal


def _amount(text: str) -> Decimal:
    """The first amount in the text that is not a reference number ("invoice 42", "#7")."""
    for match in _AMOUNT.finditer(text):
        before = text[: match.start()].rstrip()
        if before.endswith(("invoice", "#", "no.", "order", "po")):
            continue
        return Decimal(match.group(1).replace(",", "") + (match.group(2) or ""))
    return Decimal("100.00")
