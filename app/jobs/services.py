"""The service objects one running server (or test) shares, built from its settings."""

from __future__ import annotations

from dataclasses import dataclass

from app.jobs.library import Libraries
from app.jobs.records import Records
from app.jobs.runner import Jobs
from app.jobs.zoom_jobs import ZoomJobs
from app.jobs.zoom_records import ZoomRecords
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

    @classmethod
    def build(cls, settings: Settings) -> Services:
        storage = Storage(settings.data_dir)
        records = Records(settings.database_path)
        libraries = Libraries(settings, storage)
        jobs = Jobs(settings, storage, records, libraries)
        zoom_records = ZoomRecords(settings.database_path)
        zoom = ZoomJobs(settings, storage, records, zoom_records, libraries, jobs)
        return cls(settings, storage, records, libraries, jobs, zoom_records, zoom)
