"""Removes expired sessions and the debris of crashes, and re-measures disk use."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from app.jobs.services import Services

log = logging.getLogger(__name__)
_STALE_PART_SECONDS = 3600  # a ".part" file this old belongs to a write that died


def sweep(services: Services, *, now: float | None = None) -> list[str]:
    """Delete sessions idle longer than the TTL (none with a job still running, none whose
    animations were made or asked for within it), folders with no record, and stale partial
    files. Returns the removed session ids."""
    now = time.time() if now is None else now
    ttl = services.settings.session_ttl_hours * 3600
    removed = []
    for session_id in services.records.expired_sessions(older_than=now - ttl):
        if services.zoom_records.in_use(session_id, since=now - ttl):
            continue
        log.info("removing expired session %s", session_id)
        services.delete_session(session_id)
        removed.append(session_id)
    for session_id in list(services.storage.iter_session_ids()):
        folder = services.storage.session_dir(session_id)
        if services.records.session(session_id) is None and _age(folder, now) > ttl:
            services.zoom_records.delete_session(session_id)  # created, then the server died
            services.storage.delete_session(session_id)
            removed.append(session_id)
    for root, _, files in os.walk(services.storage.root):  # os.walk skips folders deleted meanwhile
        for name in files:
            part = Path(root) / name
            if name.endswith(".part") and _age(part, now) > _STALE_PART_SECONDS:
                part.unlink(missing_ok=True)
    services.storage.measure()
    return removed


def sweep_cache(services: Services) -> list[str]:
    """A worker's sweep: drop its cached copies of sessions that no longer exist (the web
    processes delete the sessions themselves, and their shared files)."""
    dropped = []
    for session_id in list(services.storage.iter_session_ids()):
        if services.records.session(session_id) is None:
            services.libraries.forget_cached(session_id)
            services.storage.forget_local(session_id)
            dropped.append(session_id)
    return dropped


def sweep_cache_periodically(services: Services, stop: threading.Event) -> None:
    while not stop.wait(services.settings.sweep_interval_seconds):
        try:
            sweep_cache(services)
        except Exception:  # a failed sweep must not stop the next one
            log.exception("sweeping the local cache failed")


def _age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except OSError:
        return 0.0
