"""Concurrent workers for the race tests: threads started together and joined, and worker
processes that report back on a queue, each putting one `(index, done, error)` tuple (`done` a
list of results, `error` a traceback text or None)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.process import BaseProcess
from typing import Any

import pytest


@contextmanager
def reaped(processes: Sequence[BaseProcess], results: Any, join_seconds: float) -> Iterator[None]:
    """On the way out, join every process (killed if it is still alive after `join_seconds`)
    and close the `results` queue."""
    try:
        yield
    finally:
        for process in processes:
            process.join(timeout=join_seconds)
            if process.is_alive():
                process.kill()
                process.join()
        results.close()
        results.join_thread()


def reports(
    processes: Sequence[BaseProcess], results: Any, timeout_seconds: float, who: str
) -> tuple[list[Any], list[str]]:
    """One report per process: every item of every `done`, in the order the reports came, and
    the errors. Fails the test when `who` neither reports nor fails within `timeout_seconds`."""
    done_items: list[Any] = []
    errors: list[str] = []
    for _ in processes:
        try:
            _index, done, error = results.get(timeout=timeout_seconds)
        except queue.Empty:
            pytest.fail(f"{who} neither reported nor failed within {timeout_seconds:g} s")
        done_items.extend(done)
        if error is not None:
            errors.append(error)
    return done_items, errors


def run_threads(threads: Sequence[threading.Thread], timeout_seconds: float | None) -> None:
    """Start every thread, then join each (waiting at most `timeout_seconds` for each)."""
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout_seconds)
