"""The parallel file verifier agrees with the sequential one, on clean and tampered logs.

Method: write a log through a Warden, copy it, tamper with the copy in several ways, and
compare `verify_file` with two workers (forced parallel even for a small log) against the
precise sequential `verify`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from paywarden import FrozenClock, Warden
from paywarden.adapters.storage.sqlite_audit import iter_audit_readonly, verify_file
from paywarden.audit.body_codec import encode_text
from paywarden.audit.chain import Checkpoint, verify
from paywarden.testing import example_intent
from support.ledger_file import tampered_copy

POLICY = """
currency: USD
rules:
  - {id: allow, effect: allow, actions: ["payments.*"], amount: {lte: 50}}
"""


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    database = tmp_path_factory.mktemp("verify") / "ledger.db"
    with Warden.open(POLICY, database=database, clock=FrozenClock()) as warden:
        for index in range(120):
            amount = "60" if index % 7 == 0 else "10"
            warden.authorize(example_intent(amount, agent="a", recipient="vendor.example"))
    return database


def _copy(log: Path, tmp_path: Path, *statements: str) -> Path:
    return tampered_copy(log, tmp_path / "copy.db", *statements)


def _head(path: Path) -> Checkpoint:
    connection = sqlite3.connect(path)
    seq, head = connection.execute(
        "SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    connection.close()
    return Checkpoint("paywarden", seq, bytes(head).hex(), 0)  # stored as 32 raw bytes


def _edited_body(path: Path, seq: int) -> str:
    """SQL that replaces entry `seq`'s body with the same body naming another payee, stored
    as paywarden stores bodies (compressed): an edit only the hash can reveal."""
    (entry,) = [e for e in iter_audit_readonly(path) if e.seq == seq]
    forged = encode_text(entry.body.replace("vendor", "attacker"))
    assert forged != encode_text(entry.body)
    return f"UPDATE audit_log SET body = X'{forged.hex()}' WHERE seq = {seq}"


EDITED_BODY = "edited body"  # stands for `_edited_body(log, 70)`


@pytest.mark.parametrize(
    "statements",
    [
        (),
        (EDITED_BODY,),
        ("DELETE FROM audit_log WHERE seq = 3",),
        ("DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)",),
        ("UPDATE audit_log SET created_us = created_us + 1 WHERE seq = 121",),
        ("UPDATE audit_log SET parent_hash = entry_hash WHERE seq = 60",),
    ],
    ids=["clean", "edited-body", "deleted-early", "truncated", "edited-time", "bad-parent"],
)
def test_parallel_verification_reports_what_sequential_verification_reports(
    log: Path, tmp_path: Path, statements: tuple[str, ...]
) -> None:
    checkpoint = _head(log)
    statements = tuple(_edited_body(log, 70) if s == EDITED_BODY else s for s in statements)
    copy = _copy(log, tmp_path, *statements)
    for trusted in (None, checkpoint):
        expected = verify(iter_audit_readonly(copy), trusted)
        parallel = verify_file(copy, trusted, workers=2, parallel_entries_min=0)
        assert parallel == expected
    assert verify(iter_audit_readonly(copy), checkpoint).ok == (statements == ())


def test_a_clean_log_verifies_on_the_parallel_path(log: Path) -> None:
    result = verify_file(log, _head(log), workers=3, parallel_entries_min=0)
    assert result.ok
    assert result.entries_checked == result.head_seq == _head(log).seq


def _count_pools(monkeypatch: pytest.MonkeyPatch, cores: set[int]) -> list[str]:
    """Let this process run on `cores` only (as `taskset` would), and record each start of
    worker processes."""
    import multiprocessing
    import os

    started: list[str] = []
    real = multiprocessing.get_context

    def get_context(method: str | None = None) -> Any:
        started.append(str(method))
        return real(method)

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(cores), raising=False)
    monkeypatch.setattr(multiprocessing, "get_context", get_context)
    return started


def test_a_process_allowed_one_core_verifies_without_worker_processes(
    log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = _count_pools(monkeypatch, {0})
    result = verify_file(log, _head(log), parallel_entries_min=0)
    assert result.ok and result.entries_checked == _head(log).seq
    assert started == []  # workers on one core only take turns with each other


def test_a_process_allowed_two_cores_verifies_a_large_log_in_two_workers(
    log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = _count_pools(monkeypatch, {0, 1})
    result = verify_file(log, _head(log), parallel_entries_min=0)
    assert result.ok and result.entries_checked == _head(log).seq
    assert len(started) == 1
