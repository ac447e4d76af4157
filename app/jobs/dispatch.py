"""Where a job runs: the one thing that differs between one machine and a cluster.

A job is a kind (:mod:`app.jobs.kinds`: ``"index"``, ``"render"``, and the zoom jobs
``"pyramid"`` and ``"animation"``) and a record id. A dispatcher only sends jobs: it never
imports the code that runs them. What runs each kind is the :class:`~app.jobs.kinds.JobKinds`
table, in either deployment.

* :class:`LocalDispatcher` runs jobs on a small pool of threads in this process (the default:
  nothing to install), calling the ``run`` it was given (the table's). Jobs a stopped server
  left unfinished are submitted again at start.
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

from app.jobs.celery_app import TASK_NAME, celery_app
from app.jobs.kinds import kind_of
from app.settings import Settings

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)
Run = Callable[[str, str], None]  # (kind, record id)


class Dispatcher(Protocol):
    durable: bool  # True when submitted jobs survive a restart of this process

    def submit(self, kind: str, record_id: str) -> None:
        """Queue a job; raises :class:`ValueError` for an unknown kind."""
        ...

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

    def __init__(self, workers: int, *, run: Run) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tessera-job")
        self._run = run
        self._running: set[Future[None]] = set()
        self._waiting: set[tuple[str, str]] = set()  # submitted and not started: never twice
        self._guard = threading.Lock()

    def submit(self, kind: str, record_id: str) -> None:
        coalesce = kind_of(kind).coalesce
        job = (kind, record_id)
        with self._guard:
            if coalesce and job in self._waiting:
                return
            self._waiting.add(job)
        future = self._pool.submit(self._call, kind, record_id)
        with self._guard:
            self._running.add(future)
        future.add_done_callback(self._finished)

    def _call(self, kind: str, record_id: str) -> None:
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
    """Sends jobs to the Celery queues; ``tessera worker`` processes run them.

    ``app``: the process's Celery app, if it has one already (a worker's); else one is made.
    """

    durable = True

    def __init__(self, settings: Settings, *, app: Celery | None = None) -> None:
        self.settings = settings
        self.app: Celery = app if app is not None else celery_app(settings)

    def submit(self, kind: str, record_id: str) -> None:
        queue = kind_of(kind).queue(self.settings)
        self.app.send_task(TASK_NAME, args=(kind, record_id), queue=queue)

    def idle(self) -> bool:
        return True  # no job ever runs in this process

    def shutdown(self, *, wait: bool) -> None:
        pass

    def check(self) -> None:
        with self.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)


def make_dispatcher(settings: Settings, *, run: Run) -> Dispatcher:
    """The dispatcher the settings ask for; ``run(kind, record_id)`` runs a job in this process
    (only the local pool calls it: Celery workers run their jobs themselves)."""
    if settings.broker_url:
        return CeleryDispatcher(settings)
    return LocalDispatcher(settings.workers, run=run)
