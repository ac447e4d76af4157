"""Where a job runs: the one thing that differs between one machine and a cluster.

A job is a kind (:mod:`app.jobs.kinds`: ``"index"``, ``"render"``, and the zoom jobs
``"pyramid"`` and ``"animation"``) and a record id. A dispatcher only sends jobs: it never
imports the code that runs them. What runs each kind is the :class:`~app.jobs.kinds.JobKinds`
table, in either deployment.

* :class:`ProcessDispatcher` (the default without a broker) runs each job in a process of its
  own, started from a ``forkserver`` (which has the engine imported already), at most
  ``TESSERA_WORKERS`` at once. Renders, pyramids and animations are CPU-bound and hold the GIL
  in places: in their own processes they never slow the web process's answers. Each job
  process leads a process group of its own, so :meth:`~Dispatcher.cancel` kills it with its
  children (ffmpeg, decode pools). The job process builds its own services from the settings
  (the entry it is given, :func:`app.jobs.services.run_job_process`); the jobs it submits
  (the renders after an index build, a pyramid after a render) come back over a pipe and are
  queued here.
* :class:`LocalDispatcher` runs jobs on a small pool of threads in this process
  (``TESSERA_JOB_PROCESSES=false``), calling the ``run`` it was given (the table's).
  A running thread cannot be killed: :meth:`~LocalDispatcher.cancel` only drops queued jobs.
* For both, jobs a stopped server left unfinished are submitted again at start.
* :class:`CeleryDispatcher` sends them to a Celery queue on Redis (``TESSERA_BROKER_URL``),
  where ``tessera worker`` processes, on any machine, take them. The queue is durable: a job
  whose worker died is handed out again, so nothing is resubmitted at start.

The interface (:class:`Dispatcher`): ``submit(kind, record_id)``, ``cancel(kind, record_id)``
(drop a queued job, kill a running one), ``idle()``, ``shutdown(wait=)``, ``check()``.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any, Protocol

from app.jobs.celery_app import TASK_NAME, celery_app
from app.jobs.kinds import kind_of
from app.settings import Settings

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)
Run = Callable[[str, str], None]  # (kind, record id)
# The function a job process runs: (settings, kind, record id, connection to the dispatcher).
# A module-level function, so the fork server can import it by name.
ProcessEntry = Callable[[Settings, str, str, multiprocessing.connection.Connection], None]
# Imported once in the fork server, so no job process pays for them (scikit-learn alone takes
# 0.5-1 s to import on an idle machine).
_PRELOAD = [
    "app.jobs.services",
    "app.engine",
    "app.engine.pyramid",
    "app.engine.animate",
    "sklearn.neighbors",
]


class Dispatcher(Protocol):
    durable: bool  # True when submitted jobs survive a restart of this process

    def submit(self, kind: str, record_id: str) -> None:
        """Queue a job; raises :class:`ValueError` for an unknown kind."""
        ...

    def cancel(self, kind: str, record_id: str) -> None:
        """Drop the job of ``kind`` on ``record_id`` if it waits, stop it if it runs (best
        effort where a job cannot be killed); nothing when there is no such job."""
        ...

    def idle(self) -> bool:
        """True when no job runs or waits in this process."""
        ...

    def shutdown(self, *, wait: bool) -> None: ...

    def check(self) -> None:
        """Raise if jobs cannot be submitted (readiness)."""
        ...


@dataclass(eq=False)
class _Job:
    kind: str
    record_id: str
    started: bool = False
    cancelled: bool = False
    process: BaseProcess | None = None
    future: Future[None] | None = field(default=None, repr=False)


class LocalDispatcher:
    """A bounded pool of threads in this process, each running one job at a time."""

    durable = False

    def __init__(self, workers: int, *, run: Run) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tessera-job")
        self._run = run
        self._jobs: dict[tuple[str, str], list[_Job]] = {}  # submitted and not finished
        self._guard = threading.Lock()

    def submit(self, kind: str, record_id: str) -> None:
        coalesce = kind_of(kind).coalesce
        key = (kind, record_id)
        job = _Job(kind, record_id)
        with self._guard:
            pending = self._jobs.setdefault(key, [])
            if coalesce and any(not j.cancelled for j in pending):
                return  # it waits or runs already: never twice
            pending.append(job)
            job.future = self._pool.submit(self._call, job)
        job.future.add_done_callback(lambda f: self._finished(job, f))

    def _call(self, job: _Job) -> None:
        with self._guard:
            if job.cancelled:
                return
            job.started = True
        self._execute(job)

    def _execute(self, job: _Job) -> None:
        self._run(job.kind, job.record_id)

    def _finished(self, job: _Job, future: Future[None]) -> None:
        with self._guard:
            pending = self._jobs.get((job.kind, job.record_id), [])
            if job in pending:
                pending.remove(job)
            if not pending:
                self._jobs.pop((job.kind, job.record_id), None)
        if not future.cancelled() and (exc := future.exception()) is not None:
            log.error("background job crashed", exc_info=exc)

    def cancel(self, kind: str, record_id: str) -> None:
        with self._guard:
            jobs = list(self._jobs.get((kind, record_id), []))
            for job in jobs:
                job.cancelled = True
        for job in jobs:
            if job.started:
                self._stop(job)

    def _stop(self, job: _Job) -> None:
        """Stop a running job: a thread cannot be stopped; its job sees its record gone."""

    def idle(self) -> bool:
        with self._guard:
            return not self._jobs

    def running(self) -> list[tuple[str, str]]:
        """The (kind, record id) of the jobs that run now."""
        with self._guard:
            return [(j.kind, j.record_id) for js in self._jobs.values() for j in js if j.started]

    def shutdown(self, *, wait: bool) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)

    def check(self) -> None:
        pass


class ProcessDispatcher(LocalDispatcher):
    """Each job in a process of its own, at most ``workers`` at once (a thread here waits on
    each). ``entry`` runs the job there; it gets the settings, so it builds its own services."""

    def __init__(self, workers: int, *, settings: Settings, entry: ProcessEntry) -> None:
        super().__init__(workers, run=_no_run)
        self._settings = settings
        self._entry = entry
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(_PRELOAD)
        self._closing = False
        # Start the fork server now, off the caller's thread: its imports take a second or more,
        # which the first job would otherwise wait for.
        threading.Thread(target=_start_fork_server, name="fork-server", daemon=True).start()

    def _execute(self, job: _Job) -> None:
        here, there = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=self._entry,
            args=(self._settings, job.kind, job.record_id, there),
            name=f"tessera-{job.kind}-{job.record_id}",
        )
        with self._guard:
            if job.cancelled or self._closing:
                return
            job.process = process
            process.start()
        there.close()
        try:
            self._serve(here, process)
        finally:
            here.close()
            process.join()
        if process.exitcode and not job.cancelled and not self._closing:
            log.error("%s job %s: its process exited with %s", job.kind, job.record_id, process.exitcode)

    def _serve(self, conn: multiprocessing.connection.Connection, process: BaseProcess) -> None:
        """Take the job process's messages until it exits: the jobs it submits or cancels."""
        waiting: list[Any] = [conn, process.sentinel]
        while True:
            ready = multiprocessing.connection.wait(waiting)
            if conn in ready:
                try:
                    verb, kind, record_id = conn.recv()
                except (EOFError, OSError):
                    waiting.remove(conn)
                    continue
                try:
                    (self.submit if verb == "submit" else self.cancel)(kind, record_id)
                except Exception:
                    log.exception("a job process sent %s %s %s", verb, kind, record_id)
                continue
            if process.sentinel in ready:
                while conn in waiting and conn.poll():  # what it sent just before it exited
                    try:
                        verb, kind, record_id = conn.recv()
                    except (EOFError, OSError):
                        break
                    (self.submit if verb == "submit" else self.cancel)(kind, record_id)
                return

    def _stop(self, job: _Job) -> None:
        process = job.process
        if process is not None and process.pid is not None:
            kill_group(process.pid)
            # Back when it is gone (its sentinel closes), so that no file it writes comes later.
            multiprocessing.connection.wait([process.sentinel], timeout=1.0)

    def shutdown(self, *, wait: bool) -> None:
        if not wait:  # a stopping server: unfinished jobs are resumed at the next start
            with self._guard:
                self._closing = True
                running = [j for js in self._jobs.values() for j in js if j.started]
            for job in running:
                self._stop(job)
        super().shutdown(wait=wait)


def _start_fork_server() -> None:
    try:
        multiprocessing.forkserver.ensure_running()
    except Exception:  # the first job starts it, and reports why it cannot
        log.warning("could not start the job fork server", exc_info=True)


def _no_run(kind: str, record_id: str) -> None:  # pragma: no cover - never called
    raise AssertionError("a process dispatcher runs jobs in their processes")


def kill_group(pid: int) -> None:
    """SIGKILL the process group ``pid`` leads (a job process and its children)."""
    for kill in (os.killpg, os.kill):  # the group; the process, if it has no group of its own yet
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue


def job_process_started(conn: multiprocessing.connection.Connection) -> None:
    """Call first in a job process: lead a process group of its own (so a cancel kills its
    children too), and die with its dispatcher. A forked watcher (not a thread: the job's
    decode pools may then still fork) kills the group when the pipe to the dispatcher closes,
    and leaves when the job process has ended."""
    os.setpgid(0, 0)
    job = os.getpid()
    if os.fork() != 0:
        return
    try:  # the watcher
        while os.getppid() == job:
            if conn.poll(1.0):  # the dispatcher sends nothing: readable means it is gone
                try:
                    conn.recv()
                except (EOFError, OSError):
                    os.killpg(job, signal.SIGKILL)
    finally:
        os._exit(0)


class ForwardingDispatcher:
    """A job process's dispatcher: sends the jobs it submits to the dispatcher that started it."""

    durable = False

    def __init__(self, conn: multiprocessing.connection.Connection) -> None:
        self._conn = conn
        self._guard = threading.Lock()

    def submit(self, kind: str, record_id: str) -> None:
        kind_of(kind)
        with self._guard:
            self._conn.send(("submit", kind, record_id))

    def cancel(self, kind: str, record_id: str) -> None:
        with self._guard:
            self._conn.send(("cancel", kind, record_id))

    def idle(self) -> bool:
        return False  # this process runs a job

    def shutdown(self, *, wait: bool) -> None:
        pass

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
        self._sent: dict[tuple[str, str], list[str]] = {}  # task ids this process sent
        self._guard = threading.Lock()

    def submit(self, kind: str, record_id: str) -> None:
        queue = kind_of(kind).queue(self.settings)
        result = self.app.send_task(TASK_NAME, args=(kind, record_id), queue=queue)
        with self._guard:
            sent = self._sent.setdefault((kind, record_id), [])
            sent.append(result.id)
            del sent[:-4]  # a few redeliveries at most are worth remembering

    def cancel(self, kind: str, record_id: str) -> None:
        """Best effort: revoke (and SIGKILL, if it runs) the tasks this process sent for the
        job; a task another process sent runs on, and finds its record gone when it looks."""
        with self._guard:
            ids = self._sent.pop((kind, record_id), [])
        if ids:
            try:
                self.app.control.revoke(ids, terminate=True, signal="SIGKILL")
            except Exception:  # the broker is down: the job finds its record gone
                log.warning("could not revoke %s job %s", kind, record_id, exc_info=True)

    def idle(self) -> bool:
        return True  # no job ever runs in this process

    def shutdown(self, *, wait: bool) -> None:
        pass

    def check(self) -> None:
        with self.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)


def make_dispatcher(settings: Settings, *, run: Run, entry: ProcessEntry | None = None) -> Dispatcher:
    """The dispatcher the settings ask for; ``run(kind, record_id)`` runs a job in this process
    (the thread pool calls it), ``entry`` in a job process of its own (the process pool's).
    Celery workers run their jobs themselves."""
    if settings.broker_url:
        return CeleryDispatcher(settings)
    if settings.job_processes and entry is not None:
        return ProcessDispatcher(settings.workers, settings=settings, entry=entry)
    return LocalDispatcher(settings.workers, run=run)
