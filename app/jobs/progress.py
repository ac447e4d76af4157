"""Progress of a running job, written to its record: how often, and in what shape."""

from __future__ import annotations

import time
from collections.abc import Callable

#: ``progress(done, total)``: how far a job has come, in its own units (files, tiles, frames).
Progress = Callable[[int, int], None]
PROGRESS_INTERVAL = 0.25  # seconds between progress writes to the records


class Throttle:
    """Lets a progress write through at most every :data:`PROGRESS_INTERVAL` seconds, and at the end."""

    def __init__(self, interval: float = PROGRESS_INTERVAL) -> None:
        self.interval = interval
        self._last = 0.0

    def due(self, done: int, total: int) -> bool:
        now = time.monotonic()
        if done >= total or now - self._last >= self.interval:
            self._last = now
            return True
        return False
