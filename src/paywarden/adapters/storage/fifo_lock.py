"""A first-in, first-out lock shared by every process that opens one file: a ticket queue on
byte-range locks.

`fcntl` locks and SQLite's busy handler serve waiters in no particular order, so under
overload one process can wait far longer than its arrival implies. This is a CLH-style queue
kept entirely in kernel locks, so it needs no polling and survives crashes:

- the file's first 8 bytes count the tickets taken, the next 8 the ticket being served;
- to arrive, a process takes the short "ticket lock" (a write lock on bytes 0-7), reads and
  increments the counter, write-locks its own byte `BASE + t`, and drops the ticket lock;
- it then waits (`F_SETLKW`, asleep in the kernel) for a read lock on every byte below its own,
  `[BASE, BASE + t)`, which is granted once every earlier ticket's byte is released: each
  earlier holder has finished, or died (the kernel drops a dead process's locks), or gave up;
- to leave, it unlocks its byte, which wakes its successor.

Waiting for the whole range below, not only for `t - 1`, keeps mutual exclusion when a waiter
in the middle of the queue is killed. Tickets are offsets in a 63-bit space, so they never wrap.

On Linux the locks are open-file-description locks (`F_OFD_SETLKW`): they belong to this
object's own file descriptor, so two stores in one process queue against each other too, and
closing another descriptor of the file drops nothing. Elsewhere they are POSIX record locks,
which belong to the process: there, two stores in one process on one file do not queue
against each other (SQLite's own lock still keeps them apart). A process never holds more
than one ticket per object: `acquire` and `release` alternate, from one thread at a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import sys

__all__ = ["FifoLock", "lock_path"]

_COUNTER = struct.Struct("<qq")  # tickets taken, ticket being served
_TICKET_LOCK_BYTES = 8
BASE = 16  # ticket t is byte BASE + t

_OFD = sys.platform == "linux" and hasattr(fcntl, "F_OFD_SETLKW") and struct.calcsize("l") == 8
# struct flock on 64-bit Linux: short l_type, short l_whence, off_t l_start, off_t l_len,
# pid_t l_pid (0 for open-file-description locks), padded to 32 bytes.
_FLOCK = struct.Struct("hhqqi4x")


def lock_path(database: str) -> str:
    """The queue's file beside a database file (as SQLite keeps `-wal` and `-shm`)."""
    return database + "-queue"


class FifoLock:
    """A lock served in arrival order across processes (see the module's docstring)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        self.ticket: int | None = None

    def acquire(self) -> int:
        """Block until every ticket taken before this one is released; this one's number."""
        if self.ticket is not None:
            raise RuntimeError("this FifoLock is already held or awaited")
        ticket = self._take_ticket()
        self.ticket = ticket
        try:
            if ticket > 0:
                self._lock(fcntl.F_RDLCK, BASE, ticket, wait=True)
                self._lock(fcntl.F_UNLCK, BASE, ticket, wait=False)
            os.pwrite(self._fd, struct.pack("<q", ticket), 8)  # now serving
        except BaseException:
            self.release()
            raise
        return ticket

    def release(self) -> None:
        """Leave the queue (the holder, or a waiter that gives up); wakes the successor."""
        ticket, self.ticket = self.ticket, None
        if ticket is not None:
            self._lock(fcntl.F_UNLCK, BASE + ticket, 1, wait=False)

    def waiting(self) -> int:
        """Tickets taken and not yet served, the one being served excluded: the processes
        waiting for their turn (an estimate; read without locking)."""
        data = os.pread(self._fd, _COUNTER.size, 0)
        if len(data) < _COUNTER.size:
            return 0
        taken, serving = _COUNTER.unpack(data)
        return max(0, int(taken) - int(serving) - 1)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # drops any lock this descriptor holds
            self._fd = -1
            self.ticket = None

    def _take_ticket(self) -> int:
        self._lock(fcntl.F_WRLCK, 0, _TICKET_LOCK_BYTES, wait=True)
        try:
            data = os.pread(self._fd, 8, 0)
            ticket = int(struct.unpack("<q", data)[0]) if len(data) == 8 else 0
            os.pwrite(self._fd, struct.pack("<q", ticket + 1), 0)
            # Taken already only if the counter went back (the file was rewritten while in
            # use): successors then do not wait for this ticket, and SQLite's own lock still
            # keeps writers apart. Order degrades; safety does not.
            with contextlib.suppress(OSError):
                self._lock(fcntl.F_WRLCK, BASE + ticket, 1, wait=False)
        finally:
            self._lock(fcntl.F_UNLCK, 0, _TICKET_LOCK_BYTES, wait=False)
        return ticket

    def _lock(self, kind: int, start: int, length: int, *, wait: bool) -> None:
        if _OFD:
            command = fcntl.F_OFD_SETLKW if wait else fcntl.F_OFD_SETLK
            fcntl.fcntl(self._fd, command, _FLOCK.pack(kind, os.SEEK_SET, start, length, 0))
            return
        operation = {
            fcntl.F_RDLCK: fcntl.LOCK_SH,
            fcntl.F_WRLCK: fcntl.LOCK_EX,
            fcntl.F_UNLCK: fcntl.LOCK_UN,
        }[kind]
        if not wait and kind != fcntl.F_UNLCK:
            operation |= fcntl.LOCK_NB
        fcntl.lockf(self._fd, operation, length, start, os.SEEK_SET)
