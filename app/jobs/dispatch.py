"""Where a job runs: the one thing that differs between one machine and a cluster.

A job is a kind (``"index"``, ``"render"``, and the zoom jobs ``"pyramid"`` and ``"animation"``)
and a record id; :meth:`app.jobs.runner.Jobs.run`
runs it, in either deployment.

* :class:`LocalDispatcher` runs jobs on a small pool of threads in this process (the default:
  nothing to install). Jobs a stopped server left unfinished are submitted again at start.
* :class:`CeleryDispatcher` sends them to a Celery queue on Redis (``TESSERA_BROKER_URL``),
  where ``tessera worker`` processes, on any machine, take them. The queue is durable: a job
  whose worker died is handed out again, so nothing is resubmitted at start.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol

from app.settings import Settings

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)
Run = Callable[[str, str], None]  # (kind, record id)
TASK_NAME = "tessera.run_job"


class Dispatcher(Protocol):
    durable: bool  # True when submitted jobs survive a restart of this process

    def start(self, run: Run) -> None:
        """Learn how to run a job (called once, by :class:`app.jobs.runner.Jobs`)."""
        ...

    def submit(self, kind: str, record_id: str) -> None: ...

    def idle(self) -> bool:
        """True when no job runs or waits in this process."""
        ...

    def shutdown(self, *, wait: bool) -> None: ...

    def check(self) -> None:
        """Raise if jobs cannot be submitted (readiness)."""
        ...


class LocalDispatcher:
    """A bounded pool of threads in this process. Decoding, resizing, numpy and the KD-tree
    release the GIL, so threads use the cores while the event loop answers status polls."""

    durable = False

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tessera-job")
        self._run: Run | None = None
        self._running: set[Future[None]] = set()
        self._waiting: set[tuple[str, str]] = set()  # submitted and not started: never twice
        self._guard = threading.Lock()

    def start(self, run: Run) -> None:
        self._run = run

    def submit(self, kind: str, record_id: str) -> None:
        job = (kind, record_id)
        with self._guard:
            if kind == "render" and job in self._waiting:
                return
            self._waiting.add(job)
        future = self._pool.submit(self._call, kind, record_id)
        with self._guard:
            self._running.add(future)
        future.add_done_callback(self._finished)

    def _call(self, kind: str, record_id: str) -> None:
        assert self._run is not None, "start() was not called"
        try:
            self._run(kind, record_id)
        finally:
            with self._guard:
                self._waiting.discard((kind, record_id))

    def _finished(self, future: Future[None]) -> None:
        with self._guard:
            self._running.discard(future)
        if not future.cancelled() and (exc := future.exception()) is not None:
            log.error("background job crashed", exc_info=exc)

    def idle(self) -> bool:
        with self._guard:
            return not self._running

    def shutdown(self, *, wait: bool) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)

    def check(self) -> None:
        pass


class CeleryDispatcher:
    """Sends jobs to the Celery queues; ``tessera worker`` processes run them."""

    durable = True

    def __init__(self, settings: Settings) -> None:
        from app.jobs.worker import celery_app

        self.settings = settings
        self.app: Celery = celery_app(settings)
        self._queues = {
            "index": settings.index_queue,
            "render": settings.render_queue,
            # Pyramids follow every render and animations can take a minute: their own queue,
            # so they never hold up renders on machines that only take renders.
            "pyramid": settings.zoom_queue,
            "animation": settings.zoom_queue,
        }

    def start(self, run: Run) -> None:
        pass  # the workers run the jobs

    def submit(self, kind: str, record_id: str) -> None:
        queue = self._queues.get(kind, self.settings.render_queue)  # more kinds: with the renders
        self.app.send_task(TASK_NAME, args=(kind, record_id), queue=queue)

    def idle(self) -> bool:
        return True  # no job ever runs in this process

    def shutdown(self, *, wait: bool) -> None:
        pass

    def check(self) -> None:
        with self.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)


def make_dispatcher(settings: Settings) -> Dispatcher:
    if settings.broker_url:
        return CeleryDispatcher(settings)
    return LocalDispatcher(settings.workers)
