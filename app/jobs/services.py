"""The service objects one running server (or test) shares, built from its settings."""

from __future__ import annotations

from dataclasses import dataclass

from app.jobs.library import Libraries
from app.jobs.records import Records
from app.jobs.runner import Jobs
from app.settings import Settings
from app.storage import Storage


@dataclass
class Services:
    settings: Settings
    storage: Storage
    records: Records
    libraries: Libraries
    jobs: Jobs

    @classmethod
    def build(cls, settings: Settings) -> Services:
        storage = Storage(settings.data_dir)
        records = Records(settings.database_path)
        libraries = Libraries(settings, storage)
        return cls(settings, storage, records, libraries, Jobs(settings, storage, records, libraries))
