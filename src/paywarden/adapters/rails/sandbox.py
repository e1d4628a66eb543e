"""The sandbox rail: no money moves, but every outcome a real rail can have is reproducible.

Scenarios are chosen for the whole rail (`SandboxRail(scenario=...)`) or per payment (the
intent's metadata `sandbox_scenario`). The rail honours idempotency keys like a real provider:
a key seen before returns the stored answer and never moves money twice; `moved(key)` says
how many times money really moved for a key, which is what tests assert on.

| scenario | pay() answers | status() later |
| --- | --- | --- |
| `success` | settled | settled |
| `declined`, `insufficient_funds` | failed (definite) | failed |
| `timeout_before_send` | failed, retryable; nothing was sent | failed: no payment with the key |
| `timeout_after_send` | unknown; the money did move | settled |
| `error_then_success` | a retryable 503, then settled on a retry with the same key | settled |
| `pending_then_settled` | pending | settled |
| `duplicate_settlement` | settled; a second settlement of the same key is refused | settled |
| `slow` | settled after `delay_seconds`; past `timeout_seconds` it is `unknown` | settled |
| (a key never received) | - | `state_path`: failed, key closed; in memory: unknown (below) |

`status()` of a key the sandbox never received depends on what it can know. With durable state
(`state_path`) it knows every key any process ever sent it, so the answer is a definite
`failed` ("no payment with this key was received"): nothing moved, so reconciliation may
release the hold. The answer stays true: it closes the key, so a request with that key arriving
later (from a worker that was still about to send when the payment was reconciled) gets the
same `failed` and moves nothing. In memory, an instance knows only what it received itself: a
key it has not seen may have been paid through another instance (another process, or before a
restart), so the answer is `unknown` (`NOT_SEEN`): reconciliation keeps the hold and the key
stays open. The exception is a key this instance recorded as never sent
(`timeout_before_send`, the first 503 of `error_then_success`): that stays a definite `failed`
and closes the key.

State lives in process memory unless `state_path` names a small SQLite file (WAL). Then every
process opened on that file shares what the sandbox has seen: each key's receipt, whether and
how many times money moved, the refunded amount and the pending-to-settled progression. Each
`pay`, `status` and `refund` is one transaction, so a process killed at any moment never leaves
half a record. Constructed without arguments (as `load_rail("sandbox")` does), the rail reads
`PAYWARDEN_SANDBOX_STATE` (the state file) and `PAYWARDEN_SANDBOX_SCENARIO` from the
environment. `calls` is this instance's own log, in memory.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from paywarden.rails import RailPayment, Receipt, ReceiptStatus

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
STATE_ENV = "PAYWARDEN_SANDBOX_STATE"
SCENARIO_ENV = "PAYWARDEN_SANDBOX_SCENARIO"
NOT_RECEIVED = "no payment with this key was received"
NOT_SEEN = (
    "this in-memory sandbox never saw this key; it may have been paid through another"
    " instance (set state_path to share state)"
)


@dataclass(frozen=True, slots=True)
class _Entry:
    receipt: Receipt
    settled: bool  # whether money moved for this payment (a pending one settles later)
    moved: int = 0  # how many times money moved for the key
    refunded_minor: int = 0


class _Page(Protocol):
    """What one transaction on the sandbox's state can do."""

    def entry(self, key: str) -> _Entry | None: ...
    def put(self, key: str, entry: _Entry) -> None: ...
    def attempt(self, key: str) -> int: ...  # count one more pay attempt; the new count
    def attempts(self, key: str) -> int: ...
    def refund(self, refund_key: str) -> Receipt | None: ...
    def put_refund(
        self, refund_key: str, key: str, amount_minor: int, receipt: Receipt
    ) -> None: ...
    def keys(self) -> list[str]: ...


class _MemoryPage:
    """The state in this process only; transactions are serialised by a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._attempts: dict[str, int] = {}
        self._refunds: dict[str, Receipt] = {}

    @contextmanager
    def transaction(self) -> Iterator[_Page]:
        with self.lock:
            yield self

    def entry(self, key: str) -> _Entry | None:
        return self._entries.get(key)

    def put(self, key: str, entry: _Entry) -> None:
        self._entries[key] = entry

    def attempt(self, key: str) -> int:
        self._attempts[key] = self._attempts.get(key, 0) + 1
        return self._attempts[key]

    def attempts(self, key: str) -> int:
        return self._attempts.get(key, 0)

    def refund(self, refund_key: str) -> Receipt | None:
        return self._refunds.get(refund_key)

    def put_refund(self, refund_key: str, key: str, amount_minor: int, receipt: Receipt) -> None:
        self._refunds[refund_key] = receipt

    def keys(self) -> list[str]:
        return sorted(self._entries)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS sandbox_entries (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    rail_payment_id TEXT,
    error TEXT,
    retryable INTEGER NOT NULL,
    settled INTEGER NOT NULL,
    moved INTEGER NOT NULL,
    refunded_minor INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sandbox_attempts (key TEXT PRIMARY KEY, attempts INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sandbox_refunds (
    refund_key TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    status TEXT NOT NULL,
    rail_payment_id TEXT
);
"""


def _set_wal(db: sqlite3.Connection, attempts: int = 50) -> None:
    """Switch a new state file to WAL. SQLite answers "database is locked" at once (without its
    busy handler) while another process does the same to a new file: wait and try again."""
    for attempt in range(attempts):
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == attempts - 1:
                raise
            time.sleep(0.02 * (attempt + 1))


class _FilePage:
    """The state in a SQLite file shared by processes; one short connection per transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()  # one transaction at a time here; SQLite serialises the rest
        self._db: sqlite3.Connection | None = None
        with closing(self._connect()) as db:
            _set_wal(db)
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA synchronous=NORMAL")  # WAL: a killed process loses nothing committed
        return db

    @contextmanager
    def transaction(self) -> Iterator[_Page]:
        with self.lock, closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            self._db = db
            try:
                yield self
            except BaseException:
                db.execute("ROLLBACK")
                raise
            else:
                db.execute("COMMIT")
            finally:
                self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("sandbox state used outside a transaction")
        return self._db

    def entry(self, key: str) -> _Entry | None:
        row = self.db.execute(
            "SELECT status, rail_payment_id, error, retryable, settled, moved, refunded_minor"
            " FROM sandbox_entries WHERE key = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        status: ReceiptStatus = row[0]
        return _Entry(Receipt(status, row[1], row[2], bool(row[3])), bool(row[4]), row[5], row[6])

    def put(self, key: str, entry: _Entry) -> None:
        receipt = entry.receipt
        self.db.execute(
            "INSERT OR REPLACE INTO sandbox_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                receipt.status,
                receipt.rail_payment_id,
                receipt.error,
                int(receipt.retryable),
                int(entry.settled),
                entry.moved,
                entry.refunded_minor,
            ),
        )

    def attempt(self, key: str) -> int:
        self.db.execute(
            "INSERT INTO sandbox_attempts VALUES (?, 1)"
            " ON CONFLICT(key) DO UPDATE SET attempts = attempts + 1",
            (key,),
        )
        return self.attempts(key)

    def attempts(self, key: str) -> int:
        row = self.db.execute(
            "SELECT attempts FROM sandbox_attempts WHERE key = ?", (key,)
        ).fetchone()
        return int(row[0]) if row else 0

    def refund(self, refund_key: str) -> Receipt | None:
        row = self.db.execute(
            "SELECT status, rail_payment_id FROM sandbox_refunds WHERE refund_key = ?",
            (refund_key,),
        ).fetchone()
        return Receipt(row[0], row[1]) if row else None

    def put_refund(self, refund_key: str, key: str, amount_minor: int, receipt: Receipt) -> None:
        self.db.execute(
            "INSERT INTO sandbox_refunds VALUES (?, ?, ?, ?, ?)",
            (refund_key, key, amount_minor, receipt.status, receipt.rail_payment_id),
        )

    def keys(self) -> list[str]:
        rows = self.db.execute("SELECT key FROM sandbox_entries ORDER BY key").fetchall()
        return [str(row[0]) for row in rows]


class SandboxRail:
    """A deterministic rail for demos and tests; optionally durable and shared by processes."""

    name = "sandbox"

    def __init__(
        self,
        scenario: str | None = None,
        delay_seconds: float = 0.0,
        timeout_seconds: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        state_path: str | Path | None = None,
    ) -> None:
        scenario = scenario or os.environ.get(SCENARIO_ENV) or "success"
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown sandbox scenario `{scenario}` ({', '.join(SCENARIOS)})")
        if state_path is None:
            state_path = os.environ.get(STATE_ENV) or None
        self.scenario = scenario
        self.delay_seconds = delay_seconds
        self.timeout_seconds = timeout_seconds
        self.state_path = Path(state_path) if state_path is not None else None
        self._sleep = sleep
        self._state: _MemoryPage | _FilePage = (
            _FilePage(self.state_path) if self.state_path is not None else _MemoryPage()
        )
        self.calls: list[tuple[str, str]] = []  # (operation, idempotency key), in order

    def moved(self, key: str) -> int:
        """How many times money really moved for this idempotency key (never more than 1)."""
        with self._state.transaction() as page:
            entry = page.entry(key)
        return entry.moved if entry is not None else 0

    def attempts(self, key: str) -> int:
        """How many times `pay` was called with this key (by every process sharing the state)."""
        with self._state.transaction() as page:
            return page.attempts(key)

    def refunded(self, key: str) -> int:
        """Minor units refunded so far for the payment made with this key."""
        with self._state.transaction() as page:
            entry = page.entry(key)
        return entry.refunded_minor if entry is not None else 0

    def keys(self) -> list[str]:
        """Every idempotency key the sandbox gave a stored answer for, sorted."""
        with self._state.transaction() as page:
            return page.keys()

    def _scenario(self, payment: RailPayment) -> str:
        chosen = payment.metadata.get("sandbox_scenario", self.scenario)
        return str(chosen) if chosen in SCENARIOS else "declined"

    def pay(self, payment: RailPayment) -> Receipt:
        key = payment.idempotency_key
        self.calls.append(("pay", key))
        scenario = self._scenario(payment)
        if scenario == "slow":  # the wait happens outside any transaction
            with self._state.transaction() as page:
                known = page.entry(key) is not None
            if not known:
                self._sleep(min(self.delay_seconds, self.timeout_seconds))
        with self._state.transaction() as page:
            attempt = page.attempt(key)
            entry = page.entry(key)
            if entry is not None:
                return entry.receipt  # idempotent: the stored answer
            return self._first_answer(page, payment, scenario, attempt)

    def _first_answer(
        self, page: _Page, payment: RailPayment, scenario: str, attempt: int
    ) -> Receipt:
        key = payment.idempotency_key
        rail_id = f"sbx_{payment.payment_id}"
        if scenario in ("declined", "insufficient_funds"):
            return _store(page, key, Receipt("failed", rail_id, scenario), settled=False)
        if scenario == "timeout_before_send":
            return Receipt("failed", None, "timeout before the request was sent", retryable=True)
        if scenario == "error_then_success" and attempt == 1:
            return Receipt("failed", None, "HTTP 503 from the provider", retryable=True)
        if scenario == "timeout_after_send":
            _store(page, key, Receipt("settled", rail_id), settled=True)
            return Receipt("unknown", None, "timed out after the request was sent")
        if scenario == "pending_then_settled":
            return _store(page, key, Receipt("pending", rail_id), settled=True)
        if scenario == "slow" and self.delay_seconds > self.timeout_seconds:
            _store(page, key, Receipt("settled", rail_id), settled=True)
            return Receipt("unknown", None, f"no answer within {self.timeout_seconds}s")
        return _store(page, key, Receipt("settled", rail_id), settled=True)

    def status(self, payment: RailPayment) -> Receipt:
        key = payment.idempotency_key
        self.calls.append(("status", key))
        with self._state.transaction() as page:
            entry = page.entry(key)
            if entry is None and self._cannot_know(page, key):
                return Receipt("unknown", None, NOT_SEEN)  # keeps the hold; the key stays open
            if entry is None:  # a definite answer: the key is closed, it can never pay now
                return _store(page, key, Receipt("failed", None, NOT_RECEIVED), settled=False)
            if entry.settled and entry.receipt.status != "settled":
                entry = replace(entry, receipt=Receipt("settled", entry.receipt.rail_payment_id))
                page.put(key, entry)  # pending (or unknown to the caller) has now settled
            return entry.receipt

    def _cannot_know(self, page: _Page, key: str) -> bool:
        """Whether `key` may have been paid somewhere this instance cannot see: in memory, a key
        it never received (not even an attempt that failed before sending)."""
        return self.state_path is None and page.attempts(key) == 0

    def refund(self, payment: RailPayment, amount_minor: int, refund_key: str) -> Receipt:
        key = payment.idempotency_key
        self.calls.append(("refund", refund_key))
        with self._state.transaction() as page:
            entry = page.entry(key)
            if entry is None or not entry.settled:
                return Receipt("failed", None, "nothing settled to refund")
            stored = page.refund(refund_key)
            if stored is not None:
                return stored
            page.put(key, replace(entry, refunded_minor=entry.refunded_minor + amount_minor))
            receipt = Receipt("settled", f"sbx_refund_{refund_key}")
            page.put_refund(refund_key, key, amount_minor, receipt)
            return receipt


def _store(page: _Page, key: str, receipt: Receipt, settled: bool) -> Receipt:
    """Record a key's first answer; money moves at most once per key."""
    previous = page.entry(key)
    moved = previous.moved if previous is not None else 0
    if settled and moved == 0:
        moved = 1
    page.put(key, _Entry(receipt, settled, moved))
    return receipt
