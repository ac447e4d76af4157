"""Background work: index builds and renders, their records, and the session tile libraries.

Imports the engine, storage and settings; never the web layer.
"""

from app.jobs.library import Libraries
from app.jobs.records import MosaicRecord, Records, SessionRecord, SqliteRecords
from app.jobs.runner import Jobs

__all__ = ["Jobs", "Libraries", "MosaicRecord", "Records", "SessionRecord", "SqliteRecords"]
