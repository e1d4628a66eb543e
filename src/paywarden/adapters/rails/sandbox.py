"""The sandbox rail: no money moves, but every outcome a real rail can have is reproducible.

Scenarios are chosen for the whole rail (`SandboxRail(scenario=...)`) or per payment (the
intent's metadata `sandbox_scenario`). The rail honours idempotency keys like a real provider:
a key seen before returns the stored answer and never moves money twice; `moved(key)` says
how many times money really moved for a key, which is what tests assert on.

| scenario | pay() answers | status() later |
| --- | --- | --- |
| `success` | settled | settled |
| `declined`, `insufficient_funds` | failed (definite) | failed |
| `timeout_before_send` | failed, retryable; nothing was sent | nothing known |
| `timeout_after_send` | unknown; the money did move | settled |
| `error_then_success` | a retryable 503, then settled on a retry with the same key | settled |
| `pending_then_settled` | pending | settled |
| `duplicate_settlement` | settled; a second settlement of the same key is refused | settled |
| `slow` | settled after `delay_seconds`; past `timeout_seconds` it is `unknown` | settled |
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from paywarden.rails import RailPayment, Receipt

SCENARIOS = (
    "success",
    "declined",
    "insufficient_funds",
    "timeout_before_send",
    "timeout_after_send",
    "error_then_success",
    "pending_then_settled",
    "duplicate_settlement",
    "slow",
)


@dataclass
class _Entry:
    receipt: Receipt
    settled: bool  # whether money moved
    refunded_minor: int = 0


class SandboxRail:
    """A deterministic in-process rail for demos and tests."""

    name = "sandbox"

    def __init__(
        self,
        scenario: str = "success",
        delay_seconds: float = 0.0,
        timeout_seconds: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown sandbox scenario `{scenario}` ({', '.join(SCENARIOS)})")
        self.scenario = scenario
        self.delay_seconds = delay_seconds
        self.timeout_seconds = timeout_seconds
        self._sleep = sleep
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._attempts: dict[str, int] = {}
        self._moved: dict[str, int] = {}
        self.calls: list[tuple[str, str]] = []  # (operation, idempotency key), in order

    def moved(self, key: str) -> int:
        """How many times money really moved for this idempotency key (never more than 1)."""
        return self._moved.get(key, 0)

    def _scenario(self, payment: RailPayment) -> str:
        chosen = payment.metadata.get("sandbox_scenario", self.scenario)
        return str(chosen) if chosen in SCENARIOS else "declined"

    def pay(self, payment: RailPayment) -> Receipt:
        key = payment.idempotency_key
        with self._lock:
            self.calls.append(("pay", key))
            attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
            if key in self._entries:
                return self._entries[key].receipt  # idempotent: the stored answer
            return self._first_answer(payment, self._scenario(payment), attempt)

    def _first_answer(self, payment: RailPayment, scenario: str, attempt: int) -> Receipt:
        key = payment.idempotency_key
        rail_id = f"sbx_{payment.payment_id}"
        if scenario in ("declined", "insufficient_funds"):
            return self._store(key, Receipt("failed", rail_id, scenario), settled=False)
        if scenario == "timeout_before_send":
            return Receipt("failed", None, "timeout before the request was sent", retryable=True)
        if scenario == "error_then_success" and attempt == 1:
            return Receipt("failed", None, "HTTP 503 from the provider", retryable=True)
        if scenario == "timeout_after_send":
            self._store(key, Receipt("settled", rail_id), settled=True)
            return Receipt("unknown", None, "timed out after the request was sent")
        if scenario == "pending_then_settled":
            return self._store(key, Receipt("pending", rail_id), settled=True)
        if scenario == "slow":
            self._sleep(min(self.delay_seconds, self.timeout_seconds))
            self._store(key, Receipt("settled", rail_id), settled=True)
            if self.delay_seconds > self.timeout_seconds:
                return Receipt("unknown", None, f"no answer within {self.timeout_seconds}s")
            return self._entries[key].receipt
        return self._store(key, Receipt("settled", rail_id), settled=True)

    def _store(self, key: str, receipt: Receipt, settled: bool) -> Receipt:
        self._entries[key] = _Entry(receipt, settled)
        if settled:
            if self._moved.get(key, 0) >= 1:  # a duplicate settlement is refused, not paid
                return receipt
            self._moved[key] = 1
        return receipt

    def status(self, payment: RailPayment) -> Receipt:
        key = payment.idempotency_key
        with self._lock:
            self.calls.append(("status", key))
            entry = self._entries.get(key)
            if entry is None:
                return Receipt("failed", None, "no payment with this key was received")
            if entry.settled:
                entry.receipt = Receipt("settled", entry.receipt.rail_payment_id)
            return entry.receipt

    def refund(self, payment: RailPayment, amount_minor: int, refund_key: str) -> Receipt:
        with self._lock:
            self.calls.append(("refund", refund_key))
            entry = self._entries.get(payment.idempotency_key)
            if entry is None or not entry.settled:
                return Receipt("failed", None, "nothing settled to refund")
            if refund_key in self._entries:
                return self._entries[refund_key].receipt
            entry.refunded_minor += amount_minor
            receipt = Receipt("settled", f"sbx_refund_{refund_key}")
            self._entries[refund_key] = _Entry(receipt, settled=False)
            return receipt
