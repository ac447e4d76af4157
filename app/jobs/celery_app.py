"""The Celery app, configured alike in every process: the web side sends jobs with it
(:class:`app.jobs.dispatch.CeleryDispatcher`), ``tessera worker`` takes them with it
(:mod:`app.jobs.worker`, which adds the one task).

Delivery is "at least once": a job is acknowledged only when it has finished
(``acks_late``); a job whose pool process died is put back at once
(``reject_on_worker_lost``), and one whose whole worker vanished (SIGKILL, a lost machine) is
handed out again once the broker's visibility timeout has passed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.settings import Settings

if TYPE_CHECKING:
    from celery import Celery

TASK_NAME = "tessera.run_job"  # args: (kind, record id)


def celery_app(settings: Settings) -> Celery:
    """A Celery app configured from the settings, with no task: a sender names the task."""
    from celery import Celery  # only processes of a cluster import Celery

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
    return app
