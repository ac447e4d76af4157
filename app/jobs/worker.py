"""``tessera worker``: takes jobs from the Celery queues and runs them.

The Celery app is built once per worker (:func:`app.jobs.celery_app.celery_app`) and given the
one task; its pool processes are forked from the worker and use that same app, both to take
jobs and, through their services' dispatcher, to send the jobs that follow (the renders after
an index build, a pyramid after a render). The task runs a job through the job-kind table
(:meth:`app.jobs.kinds.JobKinds.run`), the very table the in-process pool runs jobs through.

Jobs are idempotent (delivery is "at least once", :mod:`app.jobs.celery_app`): a render writes
its files under temporary names and renames them, and only then marks the record ready; an
index build picks up where the last one stopped. A warm shutdown (SIGTERM, Ctrl-C) lets running
jobs finish before the worker exits.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import TYPE_CHECKING, Any

from app.jobs.celery_app import TASK_NAME, celery_app
from app.jobs.dispatch import CeleryDispatcher
from app.jobs.services import Services
from app.jobs.sweeper import sweep_cache_periodically
from app.settings import Settings

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)
_services: tuple[int, Services] | None = None  # per process: pool processes are forked
_services_guard = threading.Lock()


def worker_app(settings: Settings) -> Celery:
    """The worker's Celery app: the common configuration and the task that runs a job."""
    app = celery_app(settings)

    @app.task(name=TASK_NAME, bind=True)
    def run_job(task: Any, kind: str, record_id: str) -> None:
        hostname = str(task.request.hostname or socket.gethostname())
        log.info("%s: %s job %s (delivery %s)", hostname, kind, record_id, task.request.id)
        services_for(settings, app).kinds.run(kind, record_id, worker=hostname)

    return app


def services_for(settings: Settings, app: Celery) -> Services:
    """This process's services, built on its first job (after the fork of a pool process),
    sending their jobs with the worker's Celery app ``app``."""
    global _services
    with _services_guard:
        if _services is None or _services[0] != os.getpid():
            _services = (os.getpid(), _build(settings, app))
        return _services[1]


def _build(settings: Settings, app: Celery) -> Services:
    return Services.build(settings, dispatcher=CeleryDispatcher(settings, app=app))


def run_worker(settings: Settings, *, name: str | None = None, loglevel: str = "INFO") -> int:
    """Run a worker in the foreground until SIGTERM/SIGINT; returns its exit code."""
    if not settings.broker_url:
        raise ValueError("a worker needs TESSERA_BROKER_URL")
    Services.prepare(settings)  # the bucket, the data folder: fail fast, before taking jobs
    app = worker_app(settings)
    stop = threading.Event()
    sweeper = threading.Thread(
        target=sweep_cache_periodically,
        args=(_build(settings, app), stop),  # its own: the pool processes build theirs
        name="cache-sweeper",
        daemon=True,
    )
    sweeper.start()
    argv = [
        "worker",
        f"--hostname={name or 'tessera'}@%h",
        f"--concurrency={settings.worker_concurrency}",
        f"--queues={','.join(settings.queues)}",
        f"--loglevel={loglevel}",
        "--pool=prefork",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    try:
        app.worker_main(argv=argv)
    finally:
        stop.set()
    return 0
