"""The Celery side: the app every process configures alike, the one task, ``tessera worker``.

The task runs :meth:`app.jobs.runner.Jobs.run`, the very function the in-process pool runs.
Delivery is "at least once": a job is acknowledged only when it has finished
(``acks_late``); a job whose pool process died is put back at once
(``reject_on_worker_lost``), and one whose whole worker vanished (SIGKILL, a lost machine) is
handed out again once the broker's visibility timeout has passed. Jobs are idempotent: a
render writes its files under temporary names and renames them, and only then marks the
record ready; an index build picks up where the last one stopped.

A warm shutdown (SIGTERM, Ctrl-C) lets running jobs finish before the worker exits.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import TYPE_CHECKING, Any

from app.settings import Settings

if TYPE_CHECKING:
    from celery import Celery

    from app.jobs.services import Services

log = logging.getLogger(__name__)
_services: tuple[int, Services] | None = None  # per process: pool processes are forked
_services_guard = threading.Lock()


def celery_app(settings: Settings) -> Celery:
    """The Celery app, configured from the settings (the web side only sends with it)."""
    from celery import Celery

    from app.jobs.dispatch import TASK_NAME

    app = Celery("tessera", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,  # progress and results live in the records
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a worker takes one job per free slot: the queue spreads work
        worker_concurrency=settings.worker_concurrency,
        task_default_queue=settings.render_queue,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_seconds,
            # Look for jobs of vanished workers a few times per timeout (kombu >= 5.7).
            "unacked_restore_interval": max(1, min(60, settings.visibility_timeout_seconds // 4)),
            "unacked_restore_throttle": 1,
        },
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )

    @app.task(name=TASK_NAME, bind=True)
    def run_job(task: Any, kind: str, record_id: str) -> None:
        hostname = str(task.request.hostname or socket.gethostname())
        log.info("%s: %s job %s (delivery %s)", hostname, kind, record_id, task.request.id)
        services_for(settings).jobs.run(kind, record_id, worker=hostname)

    return app


def services_for(settings: Settings) -> Services:
    """This process's services, built on its first job (after the fork of a pool process)."""
    global _services
    from app.jobs.services import Services

    with _services_guard:
        if _services is None or _services[0] != os.getpid():
            _services = (os.getpid(), Services.build(settings))
        return _services[1]


def run_worker(settings: Settings, *, name: str | None = None, loglevel: str = "INFO") -> int:
    """Run a worker in the foreground until SIGTERM/SIGINT; returns its exit code."""
    if not settings.broker_url:
        raise ValueError("a worker needs TESSERA_BROKER_URL")
    from app.jobs.services import Services
    from app.jobs.sweeper import sweep_cache_periodically

    Services.prepare(settings)  # the bucket, the data folder: fail fast, before taking jobs
    stop = threading.Event()
    sweeper = threading.Thread(
        target=sweep_cache_periodically,
        args=(Services.build(settings), stop),
        name="cache-sweeper",
        daemon=True,
    )
    sweeper.start()
    app = celery_app(settings)
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
