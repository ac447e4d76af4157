"""The service objects one running process (server, worker or test) shares, built from its settings.

The settings pick the deployment; nothing else in the code asks which one it is in:

==================  ================================  ==========================================
                    default (one machine)             ``TESSERA_BROKER_URL`` / ``TESSERA_S3_*``
==================  ================================  ==========================================
records, zoom       SQLite file in the data folder    Redis (the broker's database)
session locks       in-process locks                  Redis locks
jobs run            job processes (or threads) here   Celery workers (``tessera worker``)
files               the data folder                   an S3 bucket, the data folder as cache
==================  ================================  ==========================================

Here the parts are put together: one job-kind table (:mod:`app.jobs.kinds`), in which the
index/render jobs and the zoom jobs each register their kinds, and one dispatcher that both
submit through and that runs what it is given through that table.
"""

from __future__ import annotations

import multiprocessing.connection
from dataclasses import dataclass

from app.jobs.dispatch import (
    Dispatcher,
    ForwardingDispatcher,
    SessionOf,
    job_process_started,
    make_dispatcher,
    serve_jobs,
)
from app.jobs.kinds import ANIMATION, INDEX, PYRAMID, RENDER, JobKinds
from app.jobs.library import Libraries
from app.jobs.locks import FileLocks, SessionLocks
from app.jobs.records import Records, SqliteRecords
from app.jobs.runner import Jobs
from app.jobs.zoom_jobs import ZoomJobs
from app.jobs.zoom_records import SqliteZoomRecords, ZoomRecords
from app.object_store import ObjectStore
from app.settings import Settings
from app.storage import Storage


@dataclass
class Services:
    settings: Settings
    storage: Storage
    records: Records
    libraries: Libraries
    jobs: Jobs
    zoom_records: ZoomRecords
    zoom: ZoomJobs
    kinds: JobKinds
    dispatcher: Dispatcher

    @classmethod
    def build(cls, settings: Settings, *, dispatcher: Dispatcher | None = None) -> Services:
        """The services of this process. ``dispatcher``: the one to submit jobs with when the
        process has one already (a worker's, on its own Celery app); else the settings pick it."""
        storage = Storage(settings.data_dir, remote=_object_store(settings))
        records: Records
        zoom_records: ZoomRecords
        locks: SessionLocks
        if settings.broker_url:
            from app.jobs.redis_backend import RedisLocks, RedisRecords, RedisZoomRecords, connect

            client = connect(settings.broker_url)
            records = RedisRecords(client)
            zoom_records = RedisZoomRecords(client)
            locks = RedisLocks(client, timeout=settings.lock_timeout_seconds)
        else:
            records = SqliteRecords(settings.database_path)
            zoom_records = SqliteZoomRecords(settings.database_path)
            locks = FileLocks(settings.data_dir / "locks")  # the job processes share them
        libraries = Libraries(settings, storage, records, locks)
        kinds = JobKinds()
        if dispatcher is None:
            dispatcher = make_dispatcher(
                settings, run=kinds.run, entry=run_job_process, session_of=session_of(records, zoom_records)
            )
        zoom = ZoomJobs(
            settings, storage, records, zoom_records, libraries, dispatcher=dispatcher, kinds=kinds
        )
        jobs = Jobs(
            settings, storage, records, libraries, dispatcher=dispatcher, kinds=kinds,
            after_render=[zoom.submit_pyramid],
        )  # fmt: skip
        return cls(settings, storage, records, libraries, jobs, zoom_records, zoom, kinds, dispatcher)

    def delete_session(self, session_id: str) -> None:
        """Remove a session everywhere: its records first (a job that starts from then on,
        however late it was submitted, finds nothing to do), then its running jobs are stopped,
        then its pyramids and animations, its cached library and its files (here and in the
        object store) go: no job is left to re-create a folder."""
        jobs = self._jobs_of_session(session_id)
        self.records.delete_session(session_id)
        self.zoom_records.delete_session(session_id)
        self._cancel(jobs)
        self.libraries.forget(session_id)
        self.storage.delete_session(session_id)

    def cancel_jobs_of(self, session_id: str) -> None:
        """Drop or stop every job of a session: its index build, its mosaics' renders and
        pyramids, their animations (:meth:`Dispatcher.cancel`)."""
        self._cancel(self._jobs_of_session(session_id))

    def cancel_jobs_of_mosaic(self, mosaic_id: str) -> None:
        """Drop or stop a mosaic's render, its pyramid and its animations."""
        self._cancel(self._jobs_of_mosaic(mosaic_id))

    def _jobs_of_session(self, session_id: str) -> list[tuple[str, str]]:
        jobs = [(INDEX, session_id)]
        for mosaic in self.records.mosaics_of(session_id):
            jobs += self._jobs_of_mosaic(mosaic.id)
        return jobs

    def _jobs_of_mosaic(self, mosaic_id: str) -> list[tuple[str, str]]:
        jobs = [(RENDER, mosaic_id), (PYRAMID, mosaic_id)]
        return jobs + [(ANIMATION, a.id) for a in self.zoom_records.animations_of(mosaic_id)]

    def _cancel(self, jobs: list[tuple[str, str]]) -> None:
        for kind, record_id in jobs:
            self.dispatcher.cancel(kind, record_id)

    def delete_mosaic(self, session_id: str, mosaic_id: str) -> None:
        """Remove one mosaic: its records first (a job starting from then on finds it gone),
        then its running jobs are stopped, then its folder goes (here and in the object
        store), its space counted free at once."""
        jobs = self._jobs_of_mosaic(mosaic_id)
        self.records.delete_mosaic(mosaic_id)
        self.zoom_records.delete_mosaic(mosaic_id)
        self._cancel(jobs)
        self.storage.delete_tree(self.storage.mosaic_dir(session_id, mosaic_id))

    @staticmethod
    def prepare(settings: Settings) -> None:
        """First-start setup a deployment needs: the data folder, the bucket."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = _object_store(settings)
        if store is not None:
            store.ensure_bucket()

    def check(self) -> dict[str, str]:
        """Readiness of each backend: ``{"records": "ok", "jobs": "ok", "storage": "<error>"}``."""
        results = {}
        for name, probe in (
            ("records", self.records.check),
            ("jobs", self.dispatcher.check),
            ("storage", self.storage.check),
        ):
            try:
                probe()
                results[name] = "ok"
            except Exception as exc:  # any failure means: not ready, and why
                results[name] = f"{type(exc).__name__}: {exc}"[:300]
        return results


def session_of(records: Records, zoom_records: ZoomRecords) -> SessionOf:
    """What names a job's session, from its record (for the dispatcher's turns between
    sessions); ``""`` for a record gone meanwhile."""

    def of(kind: str, record_id: str) -> str:
        if kind == INDEX:
            return record_id
        if kind == ANIMATION:
            animation = zoom_records.animation(record_id)
            return animation.session_id if animation is not None else ""
        mosaic = records.mosaic(record_id)  # a render or a pyramid
        return mosaic.session_id if mosaic is not None else ""

    return of


def run_job_process(
    settings: Settings,
    conn: multiprocessing.connection.Connection,
    lifeline: multiprocessing.connection.Connection,
) -> None:
    """A job process of :class:`~app.jobs.dispatch.ProcessDispatcher`: this process's own
    services, built once, run job after job (their libraries stay loaded), submitting the jobs
    that follow through the dispatcher that started it."""
    job_process_started(lifeline)
    dispatcher = ForwardingDispatcher(conn)
    services = Services.build(settings, dispatcher=dispatcher)
    serve_jobs(dispatcher, services.kinds.run)


def _object_store(settings: Settings) -> ObjectStore | None:
    if not settings.s3_bucket:
        return None

    return ObjectStore(
        bucket=settings.s3_bucket,
        prefix=settings.s3_prefix,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
    )
