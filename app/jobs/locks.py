"""Per-session locks: an index build and a library update never run twice at once for a session.

:class:`LocalLocks` serves one process; ``app.jobs.redis_backend.RedisLocks`` serves a cluster.
Both are re-entrant within a thread.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Protocol


class SessionLocks(Protocol):
    def hold(self, session_id: str) -> AbstractContextManager[None]:
        """Block until the session's lock is ours; release it on leaving the block."""
        ...

    def forget(self, session_id: str) -> None:
        """Drop what is kept for a deleted session."""
        ...


class LocalLocks:
    """Re-entrant locks of one process, one per session."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()

    @contextmanager
    def hold(self, session_id: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(session_id, threading.RLock())
        with lock:
            yield

    def forget(self, session_id: str) -> None:
        with self._guard:
            self._locks.pop(session_id, None)


class FileLocks(LocalLocks):
    """Locks shared by the processes of one machine: a thread lock, and while a thread holds
    it, an exclusive ``flock`` on a file per session in ``folder`` (released by the kernel when
    its process dies, so a killed job never leaves a session locked)."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self._held: dict[str, tuple[IO[bytes], int]] = {}  # session -> (locked file, depth)

    @contextmanager
    def hold(self, session_id: str) -> Iterator[None]:
        with super().hold(session_id):  # this thread alone, from here on
            entry = self._held.get(session_id)
            if entry is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                locked: IO[bytes] = open(self.folder / f"{session_id}.lock", "ab")  # noqa: SIM115
                fcntl.flock(locked, fcntl.LOCK_EX)
                entry = (locked, 0)
            self._held[session_id] = (entry[0], entry[1] + 1)
            try:
                yield
            finally:
                held, depth = self._held[session_id]
                if depth == 1:
                    del self._held[session_id]
                    held.close()  # releases the flock
                else:
                    self._held[session_id] = (held, depth - 1)

    def forget(self, session_id: str) -> None:
        super().forget(session_id)
        (self.folder / f"{session_id}.lock").unlink(missing_ok=True)
