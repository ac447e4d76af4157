"""Where a job runs: the one thing that differs between one machine and a cluster.

A job is a kind (:mod:`app.jobs.kinds`: ``"index"``, ``"render"``, and the zoom jobs
``"pyramid"`` and ``"animation"``) and a record id. A dispatcher only sends jobs: it never
imports the code that runs them. What runs each kind is the :class:`~app.jobs.kinds.JobKinds`
table, in either deployment.

* :class:`ProcessDispatcher` (the default without a broker) runs jobs in ``TESSERA_WORKERS``
  long-lived job processes, one per slot, started from a ``forkserver`` (which has the engine
  imported already). Renders, pyramids and animations are CPU-bound and hold the GIL in
  places: in their own processes they never slow the web process's answers. A job process
  builds its services once (the entry it is given, :func:`app.jobs.services.run_job_process`)
  and keeps the tile libraries and indexes it loaded between jobs. It leads a process group
  of its own, so :meth:`~Dispatcher.cancel` kills it with its children (ffmpeg, decode pools);
  its slot starts a fresh one for the next job. The jobs it submits (the renders after an
  index build, a pyramid after a render) come back over its pipe and are queued here.
* :class:`LocalDispatcher` runs jobs on ``TESSERA_WORKERS`` threads in this process
  (``TESSERA_JOB_PROCESSES=false``), calling the ``run`` it was given (the table's).
  A running thread cannot be killed: :meth:`~LocalDispatcher.cancel` only drops queued jobs.
* For both, queued jobs start in turns between sessions (:class:`FairQueue`), so one session's
  many jobs do not hold up another's one; jobs a stopped server left unfinished are submitted
  again at start.
* :class:`CeleryDispatcher` sends them to a Celery queue on Redis (``TESSERA_BROKER_URL``),
  where ``tessera worker`` processes, on any machine, take them. The queue is durable: a job
  whose worker died is handed out again, so nothing is resubmitted at start. It is first in,
  first out (each worker takes one job per free slot, ``worker_prefetch_multiplier=1``): no
  turns between sessions there, only the per-session limit on queued jobs.

The interface (:class:`Dispatcher`): ``submit(kind, record_id)``, ``cancel(kind, record_id)``
(drop a queued job, kill a running one), ``idle()``, ``shutdown(wait=)``, ``check()``.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import os
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any, Protocol

from app.jobs.celery_app import TASK_NAME, celery_app
from app.jobs.kinds import kind_of
from app.settings import Settings

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)
Run = Callable[[str, str], None]  # (kind, record id)
SessionOf = Callable[[str, str], str]  # (kind, record id) -> the session the job is for
# The function a job process runs: (settings, its pipe to the dispatcher, its lifeline; see
# job_process_started). A module-level function, so the fork server can import it by name.
ProcessEntry = Callable[
    [Settings, multiprocessing.connection.Connection, multiprocessing.connection.Connection], None
]
# Imported once in the fork server, so no job process pays for them (scikit-learn alone takes
# 0.5-1 s to import on an idle machine; scikit-image's colour module is the quality measure's).
_PRELOAD = [
    "app.jobs.services",
    "app.engine",
    "app.engine.pyramid",
    "app.engine.animate",
    "sklearn.neighbors",
    "skimage.color",
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
    session: str  # whose job it is: the fair order takes turns between sessions
    started: bool = False
    cancelled: bool = False


@dataclass(eq=False)
class _Slot:
    """One of the ``workers`` places a job runs in: a thread here, and for the process
    dispatcher the long-lived job process that thread feeds."""

    number: int
    job: _Job | None = None  # assigned to it, running or about to
    session: str | None = None  # of its last job: its process has that session's library loaded
    freed: int = 0  # when it last finished a job (a sequence number)
    busy: bool = False  # its job was sent to its process
    process: BaseProcess | None = None
    conn: multiprocessing.connection.Connection | None = None  # to its process: jobs out, messages in
    lifeline: multiprocessing.connection.Connection | None = None  # never written: closes when we die


class FairQueue:
    """Queued jobs in turns between sessions: the next job is the oldest of the session with the
    fewest running jobs, ties going to the session served longest ago. A session with many
    queued jobs therefore gets one worker after another only while no other session waits.
    Not thread-safe: the dispatcher calls it under its lock."""

    def __init__(self) -> None:
        self._queued: dict[str, deque[_Job]] = {}
        self._running: Counter[str] = Counter()
        self._served: dict[str, int] = {}  # session -> when it last had a job started
        self._clock = itertools.count()

    def __len__(self) -> int:
        return sum(len(q) for q in self._queued.values())

    def put(self, job: _Job) -> None:
        self._queued.setdefault(job.session, deque()).append(job)

    def take(self) -> _Job | None:
        """The next job to start (counted as running until :meth:`done`), or None."""
        if not self._queued:
            return None
        session = min(self._queued, key=lambda s: (self._running[s], self._served.get(s, -1)))
        queue = self._queued[session]
        job = queue.popleft()
        if not queue:
            del self._queued[session]
        self._running[session] += 1
        self._served[session] = next(self._clock)
        return job

    def remove(self, job: _Job) -> None:
        """Drop a job that waits (nothing if it does not)."""
        queue = self._queued.get(job.session)
        if queue is not None and job in queue:
            queue.remove(job)
            if not queue:
                del self._queued[job.session]
                if not self._running[job.session]:
                    self._running.pop(job.session, None)
                    self._served.pop(job.session, None)

    def clear(self) -> list[_Job]:
        """Drop every waiting job; returns them."""
        dropped = [job for queue in self._queued.values() for job in queue]
        self._queued.clear()
        return dropped

    def done(self, job: _Job) -> None:
        self._running[job.session] -= 1
        if self._running[job.session] <= 0:
            del self._running[job.session]
            if job.session not in self._queued:
                self._served.pop(job.session, None)  # forget sessions with nothing left


def _whole_queue(kind: str, record_id: str) -> str:
    return ""


class LocalDispatcher:
    """``workers`` threads in this process, each running one job at a time, taking queued jobs
    in turns between sessions (:class:`FairQueue`; ``session_of(kind, record_id)`` names a job's
    session, by default one for all)."""

    durable = False

    def __init__(self, workers: int, *, run: Run, session_of: SessionOf = _whole_queue) -> None:
        self._run = run
        self._session_of = session_of
        self._slots = [_Slot(n) for n in range(workers)]
        self._threads: list[threading.Thread] = []
        self._jobs: dict[tuple[str, str], list[_Job]] = {}  # submitted and not finished
        self._queue = FairQueue()
        self._clock = itertools.count(1)
        self._closing = False
        self._guard = threading.Condition()

    def submit(self, kind: str, record_id: str) -> None:
        coalesce = kind_of(kind).coalesce
        key = (kind, record_id)
        try:
            session = self._session_of(kind, record_id)  # a record lookup: outside the lock
        except Exception:  # the job still runs, in the turn of the jobs with no session
            log.warning("no session found for %s job %s", kind, record_id, exc_info=True)
            session = ""
        with self._guard:
            if self._closing:
                raise RuntimeError("the dispatcher is shut down")
            pending = self._jobs.setdefault(key, [])
            if coalesce and any(not j.cancelled for j in pending):
                return  # it waits or runs already: never twice
            job = _Job(kind, record_id, session)
            pending.append(job)
            self._queue.put(job)
            if not self._threads:  # started on the first job: most processes never submit one
                self._threads = [
                    threading.Thread(target=self._work, args=(slot,), name=f"tessera-job-{slot.number}",
                                     daemon=True)
                    for slot in self._slots
                ]  # fmt: skip
                for thread in self._threads:
                    thread.start()
            self._assign()

    def _assign(self) -> None:
        """Give queued jobs to free slots, preferring the slot whose last job was of the same
        session (its process has that library in memory). Call under the lock."""
        free = sorted((s for s in self._slots if s.job is None), key=lambda s: s.freed)
        while free and (job := self._queue.take()) is not None:
            slot = next((s for s in free if s.session == job.session), free[0])
            free.remove(slot)
            slot.job, slot.session, job.started = job, job.session, True
        self._guard.notify_all()

    def _work(self, slot: _Slot) -> None:
        while True:
            with self._guard:
                while slot.job is None and not (self._closing and not self._queue):
                    self._guard.wait()
                job = slot.job
            if job is None:
                break
            try:
                if not job.cancelled:
                    self._execute(job, slot)
            except Exception:
                log.exception("%s job %s crashed", job.kind, job.record_id)
            with self._guard:
                slot.job, slot.busy, slot.freed = None, False, next(self._clock)
                self._queue.done(job)
                pending = self._jobs.get((job.kind, job.record_id), [])
                if job in pending:
                    pending.remove(job)
                if not pending:
                    self._jobs.pop((job.kind, job.record_id), None)
                self._assign()
        self._retire(slot)

    def _execute(self, job: _Job, slot: _Slot) -> None:
        self._run(job.kind, job.record_id)

    def _retire(self, slot: _Slot) -> None:
        """The slot's thread ends (the dispatcher shut down)."""

    def cancel(self, kind: str, record_id: str) -> None:
        key = (kind, record_id)
        with self._guard:
            jobs = self._jobs.pop(key, [])
            for job in jobs:
                job.cancelled = True
                self._queue.remove(job)
            if started := [job for job in jobs if job.started]:
                self._jobs[key] = started  # until their slots are done with them
            killed = [self._stop(slot) for slot in self._slots if slot.job in started]
        _wait_gone(killed)

    def _stop(self, slot: _Slot) -> BaseProcess | None:
        """Stop the job running in ``slot``; call under the lock (so the slot cannot have
        moved on to another job). Returns the process killed, if any. A thread cannot be
        stopped: its job sees its record gone."""
        return None

    def idle(self) -> bool:
        with self._guard:
            return not self._jobs

    def waiting_processes(self) -> set[int]:
        """The process ids of job processes waiting for a job: none here (jobs run on threads)."""
        return set()

    def running(self) -> list[tuple[str, str]]:
        """The (kind, record id) of the jobs that run now."""
        with self._guard:
            return [(s.job.kind, s.job.record_id) for s in self._slots if s.job is not None]

    def shutdown(self, *, wait: bool) -> None:
        """Stop taking jobs. ``wait``: run what is queued, then return when all is done; else
        drop what is queued (a restarted server resumes it from its records) and return."""
        with self._guard:
            self._closing = True
            if not wait:
                for job in self._queue.clear():
                    job.cancelled = True
                    self._jobs.pop((job.kind, job.record_id), None)
            self._guard.notify_all()
            threads = list(self._threads)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()

    def check(self) -> None:
        pass


class ProcessDispatcher(LocalDispatcher):
    """Jobs in ``workers`` long-lived job processes, one per slot, each fed by a thread here.

    A job process (``entry(settings, conn, lifeline)``, which calls :func:`serve_jobs`) builds
    its services once and runs job after job, keeping the tile libraries and indexes it loaded
    in memory, so a session's next render does not load them again. A cancel kills the process
    running the job, with its process group; the slot starts a fresh process for its next job.
    """

    def __init__(
        self, workers: int, *, settings: Settings, entry: ProcessEntry, session_of: SessionOf = _whole_queue
    ) -> None:
        super().__init__(workers, run=_no_run, session_of=session_of)
        self._settings = settings
        self._entry = entry
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(_PRELOAD)
        # Before multiprocessing's own exit handler, which waits for every child process.
        atexit.register(self._kill_processes)
        # Start the fork server now, off the caller's thread: its imports take a second or more,
        # which the first job would otherwise wait for.
        threading.Thread(target=_start_fork_server, name="fork-server", daemon=True).start()

    def _execute(self, job: _Job, slot: _Slot) -> None:
        for attempt in (1, 2):  # a process that died while idle is replaced once
            if slot.process is None or not slot.process.is_alive():
                self._spawn(slot)
            assert slot.conn is not None
            with self._guard:
                if job.cancelled:
                    return
                try:
                    slot.conn.send(("run", job.kind, job.record_id))
                    slot.busy = True
                    break
                except OSError:
                    if attempt == 2:
                        raise
            self._reap(slot)
        if not self._serve(slot) and not job.cancelled:
            exitcode = slot.process.exitcode if slot.process else None
            log.error("%s job %s: its process exited with %s", job.kind, job.record_id, exitcode)
        if slot.process is not None and not slot.process.is_alive():
            self._reap(slot)

    def _spawn(self, slot: _Slot) -> None:
        self._reap(slot)
        here, there = self._context.Pipe(duplex=True)
        lifeline_out, lifeline_in = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=self._entry, args=(self._settings, there, lifeline_out), name=f"tessera-jobs-{slot.number}"
        )
        process.start()
        there.close()
        lifeline_out.close()
        with self._guard:
            slot.process, slot.conn, slot.lifeline = process, here, lifeline_in

    def _reap(self, slot: _Slot) -> None:
        """Forget the slot's process (dead or killed) and close its pipes."""
        with self._guard:
            process, conns = slot.process, (slot.conn, slot.lifeline)
            slot.process = slot.conn = slot.lifeline = None
        for conn in conns:
            if conn is not None:
                conn.close()
        if process is not None:
            process.join(timeout=5)

    def _serve(self, slot: _Slot) -> bool:
        """Take the job process's messages until its job is done (True) or it exits (False):
        the jobs it submits or cancels come back to this dispatcher."""
        assert slot.conn is not None and slot.process is not None
        conn, process = slot.conn, slot.process
        waiting: list[Any] = [conn, process.sentinel]
        while True:
            ready = multiprocessing.connection.wait(waiting)
            if conn in ready:
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    waiting.remove(conn)
                    continue
                if message[0] == "done":
                    return True
                self._forwarded(*message)
                continue
            if process.sentinel in ready:
                while conn in waiting and conn.poll():  # what it sent just before it exited
                    try:
                        self._forwarded(*conn.recv())
                    except (EOFError, OSError):
                        break
                return False

    def waiting_processes(self) -> set[int]:
        """The process ids of the job processes that wait for a job (they hold no one's work)."""
        with self._guard:
            return {
                s.process.pid for s in self._slots
                if not s.busy and s.job is None and s.process is not None and s.process.pid is not None
            }  # fmt: skip

    def _forwarded(self, verb: str, kind: str, record_id: str) -> None:
        try:
            (self.submit if verb == "submit" else self.cancel)(kind, record_id)
        except Exception:
            log.exception("a job process sent %s %s %s", verb, kind, record_id)

    def _stop(self, slot: _Slot) -> BaseProcess | None:
        process = slot.process
        if not slot.busy or process is None or process.pid is None:
            return None  # its job was not sent yet: it sees itself cancelled
        kill_group(process.pid)
        return process

    def _retire(self, slot: _Slot) -> None:
        """The slot's thread ends: its process is told to exit (it ends its loop at the closed
        pipe) and is killed if it has not within a few seconds."""
        process = slot.process
        if slot.conn is not None:
            slot.conn.close()
        if process is not None:
            process.join(timeout=5)
            if process.is_alive() and process.pid is not None:
                kill_group(process.pid)
        self._reap(slot)

    def _kill_processes(self) -> None:
        for slot in self._slots:
            process = slot.process
            if process is not None and process.pid is not None and process.is_alive():
                kill_group(process.pid)
                process.join(timeout=1)

    def shutdown(self, *, wait: bool) -> None:
        super().shutdown(wait=wait)
        if not wait:  # a stopping server: what runs is killed, and resumed at the next start
            with self._guard:
                killed = []
                for slot in self._slots:
                    if slot.job is not None:
                        slot.job.cancelled = True
                        killed.append(self._stop(slot))
            _wait_gone(killed)
        atexit.unregister(self._kill_processes)
        if not wait:
            self._kill_processes()  # the idle ones too: their threads may not get to it


def _wait_gone(processes: list[BaseProcess | None]) -> None:
    """Back when the processes killed are gone (their sentinels close, at most a second), so
    that no file one of them writes comes later."""
    sentinels = [p.sentinel for p in processes if p is not None]
    deadline = time.monotonic() + 1.0
    while sentinels and (left := deadline - time.monotonic()) > 0:
        for ready in multiprocessing.connection.wait(sentinels, timeout=left):
            sentinels.remove(ready)  # type: ignore[arg-type]


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


def job_process_started(lifeline: multiprocessing.connection.Connection) -> None:
    """Call first in a job process: lead a process group of its own (so a cancel kills its
    children too), and die with its dispatcher. A forked watcher (not a thread: the job's
    decode pools may then still fork) kills the group when ``lifeline`` closes (the dispatcher
    never writes to it: readable means it is gone), and leaves when the job process has ended."""
    os.setpgid(0, 0)
    job = os.getpid()
    if os.fork() != 0:
        lifeline.close()
        return
    try:  # the watcher
        while os.getppid() == job:
            if lifeline.poll(1.0):
                try:
                    lifeline.recv()
                except (EOFError, OSError):
                    os.killpg(job, signal.SIGKILL)
    finally:
        os._exit(0)


def serve_jobs(dispatcher: ForwardingDispatcher, run: Run) -> None:
    """The loop of a long-lived job process: run each job its dispatcher sends (``run(kind,
    record_id)``), answer when it is done, until the pipe closes. A job that raises is logged;
    the process goes on to the next."""
    while (job := dispatcher.next_job()) is not None:
        kind, record_id = job
        try:
            run(kind, record_id)
        except Exception:
            log.exception("%s job %s crashed", kind, record_id)
        dispatcher.done(kind, record_id)


class ForwardingDispatcher:
    """A job process's dispatcher: sends the jobs it submits to the dispatcher that started it,
    over the pipe the jobs themselves come in by."""

    durable = False

    def __init__(self, conn: multiprocessing.connection.Connection) -> None:
        self._conn = conn
        self._guard = threading.Lock()

    def submit(self, kind: str, record_id: str) -> None:
        kind_of(kind)
        self._send(("submit", kind, record_id))

    def cancel(self, kind: str, record_id: str) -> None:
        self._send(("cancel", kind, record_id))

    def next_job(self) -> tuple[str, str] | None:
        """The next (kind, record id) to run; None when the dispatcher closed the pipe."""
        try:
            verb, kind, record_id = self._conn.recv()
        except (EOFError, OSError):
            return None
        return (kind, record_id) if verb == "run" else None

    def done(self, kind: str, record_id: str) -> None:
        self._send(("done", kind, record_id))

    def _send(self, message: tuple[str, str, str]) -> None:
        with self._guard:
            self._conn.send(message)

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


def make_dispatcher(
    settings: Settings, *, run: Run, entry: ProcessEntry | None = None, session_of: SessionOf = _whole_queue
) -> Dispatcher:
    """The dispatcher the settings ask for; ``run(kind, record_id)`` runs a job in this process
    (the thread pool calls it), ``entry`` is a job process's loop (the process pool's), and
    ``session_of(kind, record_id)`` names a job's session (for the turns between sessions).
    Celery workers run their jobs themselves."""
    if settings.broker_url:
        return CeleryDispatcher(settings)
    if settings.job_processes and entry is not None:
        return ProcessDispatcher(settings.workers, settings=settings, entry=entry, session_of=session_of)
    return LocalDispatcher(settings.workers, run=run, session_of=session_of)
