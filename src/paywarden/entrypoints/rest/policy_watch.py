"""Keeping the policy in force current: an admin upload, or a change to the policy file.

Either way the new text is validated, versioned and audited by `Warden.reload_policy`; an
invalid policy is rejected (and the rejection audited) while the previous one stays in force.
An upload is written to the policy file (atomically) when the gateway runs from one, so every
worker process, and the next start, uses it too; each worker watches the file's modification
time and reloads when it changes.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from paywarden.errors import PolicyCompileError, StoreError
from paywarden.policy.loading import LoadedPolicy, load_policy
from paywarden.warden import Warden

log = logging.getLogger("paywarden.rest")


class PolicyWatcher:
    def __init__(self, warden: Warden, path: str | None, poll_seconds: float) -> None:
        self._warden = warden
        self._path = Path(path) if path else None
        self._poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mtime = self._stat()

    def _stat(self) -> int | None:
        if self._path is None:
            return None
        try:
            return self._path.stat().st_mtime_ns
        except OSError:
            return None

    def start(self) -> None:
        if self._path is None or self._poll_seconds <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="paywarden-policy", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._poll_seconds):
            self.check()

    def check(self) -> LoadedPolicy | None:
        """Reload the file if it changed since the last look; returns what was loaded."""
        with self._lock:
            mtime = self._stat()
            if self._path is None or mtime is None or mtime == self._mtime:
                return None
            self._mtime = mtime
            try:
                loaded = self._warden.reload_policy(self._path, actor="system:policy-file")
            except StoreError as error:
                log.error("policy file changed but could not be recorded: %s", error)
                self._mtime = None  # try again on the next tick
                return None
        if loaded.policy is None:
            log.error("policy file rejected, previous policy stays: %s", loaded.report.summary())
        else:
            log.info("policy reloaded from file: version %s", loaded.policy.version)
        return loaded

    def upload(self, text: str, actor: str) -> LoadedPolicy:
        """Validate and put `text` in force; raises PolicyCompileError (previous one stays)."""
        if not text.endswith("\n"):
            text += "\n"  # always read as text, never as a file name
        with self._lock:
            if load_policy(text).policy is None:
                loaded = self._warden.reload_policy(text, actor=actor)  # audits the rejection
                raise PolicyCompileError(loaded.report)
            if self._path is not None:
                _write_atomically(self._path, text)
                self._mtime = self._stat()
            loaded = self._warden.reload_policy(text, actor=actor)
        return loaded


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.upload")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise StoreError(f"cannot write the policy file `{path}`: {error}") from error
