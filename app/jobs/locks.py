"""Per-session locks: an index build and a library update never run twice at once for a session.

:class:`LocalLocks` serves one process; ``app.jobs.redis_backend.RedisLocks`` serves a cluster.
Both are re-entrant within a thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


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
