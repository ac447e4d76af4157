"""Session and mosaic records: what every status poll reads and every job writes.

:class:`Records` is the interface. :class:`SqliteRecords` keeps them in one SQLite file (one
machine: one connection per thread, WAL journal, short transactions, so web handlers and job
threads read and write concurrently); ``app.jobs.redis_backend.RedisRecords`` keeps them in
Redis, where every web process and worker of a cluster sees them.

Each session also keeps its upload manifest here: the numbered files in upload order, and
the counter that numbers them (several web processes may add to one session at once).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from app.jobs.sqlite import SqliteDatabase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,            -- indexing | ready | failed
    created REAL NOT NULL,
    updated REAL NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    accepted INTEGER NOT NULL DEFAULT 0,
    rejected TEXT NOT NULL DEFAULT '[]',   -- JSON list of {"file", "reason"}
    error TEXT,
    worker TEXT,
    last_seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS uploads (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,             -- the client's file name, shown back only
    file TEXT NOT NULL,             -- the stored file's name in the session's uploads folder
    PRIMARY KEY (session_id, seq)
);
CREATE TABLE IF NOT EXISTS mosaics (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    state TEXT NOT NULL,            -- queued | rendering | ready | failed
    created REAL NOT NULL,
    updated REAL NOT NULL,
    stage TEXT,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    params TEXT NOT NULL,           -- JSON
    format TEXT NOT NULL,
    cover_name TEXT NOT NULL,
    result TEXT,                    -- JSON: size, grid, quality, timings
    error TEXT,
    worker TEXT                     -- who ran (or runs) the render
);
CREATE INDEX IF NOT EXISTS mosaics_by_session ON mosaics(session_id, created);
"""


@dataclass
class SessionRecord:
    id: str
    state: str
    created: float
    updated: float
    done: int
    total: int
    accepted: int
    rejected: list[dict[str, str]]
    error: str | None
    worker: str | None = None  # who ran (or runs) the last index build


@dataclass
class MosaicRecord:
    id: str
    session_id: str
    state: str
    created: float
    updated: float
    stage: str | None
    done: int
    total: int
    params: dict[str, Any]
    format: str
    cover_name: str
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    worker: str | None = None


@dataclass(frozen=True)
class UploadEntry:
    """One finished upload: its number, the client's name for it, the stored file's name."""

    seq: int
    name: str
    file: str


class Records(Protocol):
    """What the web layer and the jobs read and write; thread-safe in every implementation."""

    def create_session(self, session_id: str) -> SessionRecord: ...
    def session(self, session_id: str) -> SessionRecord | None: ...
    def update_session(self, session_id: str, **fields: Any) -> None: ...
    def sessions_in_state(self, *states: str) -> list[str]: ...
    def expired_sessions(self, *, older_than: float) -> list[str]: ...
    def delete_session(self, session_id: str) -> bool: ...

    def next_upload_seq(self, session_id: str) -> int:
        """Reserve the next upload number of a session (never handed out twice)."""
        ...

    def add_upload(self, session_id: str, entry: UploadEntry) -> None:
        """Record a finished upload (after its file is stored)."""
        ...

    def uploads(self, session_id: str) -> list[UploadEntry]:
        """Every finished upload of a session, by number."""
        ...

    def create_mosaic(
        self, mosaic_id: str, session_id: str, *, params: dict[str, Any], fmt: str, cover_name: str
    ) -> MosaicRecord: ...
    def mosaic(self, mosaic_id: str) -> MosaicRecord | None: ...
    def mosaics_of(self, session_id: str) -> list[MosaicRecord]: ...
    def update_mosaic(self, mosaic_id: str, **fields: Any) -> None: ...
    def mosaics_in_state(self, *states: str) -> list[MosaicRecord]: ...
    def delete_mosaic(self, mosaic_id: str) -> bool:
        """Remove one mosaic's record; False if there was none."""
        ...

    def check(self) -> None:
        """Raise if the records cannot be reached (readiness)."""
        ...


class SqliteRecords(SqliteDatabase):
    """Thread-safe access to the SQLite database of sessions and mosaics (one machine)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA)
        _add_missing_columns(self._connection())

    # sessions ---------------------------------------------------------------------------------

    def create_session(self, session_id: str) -> SessionRecord:
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO sessions (id, state, created, updated) VALUES (?, 'indexing', ?, ?)",
                (session_id, now, now),
            )
        return self.session(session_id)  # type: ignore[return-value]

    def session(self, session_id: str) -> SessionRecord | None:
        row = self._connection().execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return None if row is None else _session(row)

    def update_session(self, session_id: str, **fields: Any) -> None:
        if "rejected" in fields:
            fields["rejected"] = json.dumps(fields["rejected"])
        self._update("sessions", session_id, fields)

    def sessions_in_state(self, *states: str) -> list[str]:
        marks = ",".join("?" * len(states))
        rows = self._connection().execute(f"SELECT id FROM sessions WHERE state IN ({marks})", states)
        return [r["id"] for r in rows]

    def expired_sessions(self, *, older_than: float) -> list[str]:
        """Sessions not touched since ``older_than`` whose jobs have all finished."""
        rows = self._connection().execute(
            "SELECT s.id FROM sessions s WHERE s.state != 'indexing' AND s.updated < ?"
            " AND NOT EXISTS (SELECT 1 FROM mosaics m WHERE m.session_id = s.id"
            "   AND (m.updated >= ? OR m.state IN ('queued', 'rendering')))",
            (older_than, older_than),
        )
        return [r["id"] for r in rows]

    def delete_mosaic(self, mosaic_id: str) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM mosaics WHERE id = ?", (mosaic_id,)).rowcount > 0

    def delete_session(self, session_id: str) -> bool:
        with self._tx() as db:
            db.execute("DELETE FROM mosaics WHERE session_id = ?", (session_id,))
            db.execute("DELETE FROM uploads WHERE session_id = ?", (session_id,))
            return db.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount > 0

    # uploads ----------------------------------------------------------------------------------

    def next_upload_seq(self, session_id: str) -> int:
        with self._tx() as db:
            row = db.execute(
                "UPDATE sessions SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq", (session_id,)
            ).fetchone()
        if row is None:
            raise KeyError(f"no session {session_id}")
        return int(row[0])

    def add_upload(self, session_id: str, entry: UploadEntry) -> None:
        with _no_such_session(session_id), self._tx() as db:
            db.execute(
                "INSERT INTO uploads (session_id, seq, name, file) VALUES (?, ?, ?, ?)",
                (session_id, entry.seq, entry.name, entry.file),
            )

    def uploads(self, session_id: str) -> list[UploadEntry]:
        rows = self._connection().execute(
            "SELECT seq, name, file FROM uploads WHERE session_id = ? ORDER BY seq", (session_id,)
        )
        return [UploadEntry(int(r["seq"]), str(r["name"]), str(r["file"])) for r in rows]

    def check(self) -> None:
        self._connection().execute("SELECT 1").fetchone()

    # mosaics ----------------------------------------------------------------------------------

    def create_mosaic(
        self, mosaic_id: str, session_id: str, *, params: dict[str, Any], fmt: str, cover_name: str
    ) -> MosaicRecord:
        now = time.time()
        with _no_such_session(session_id), self._tx() as db:
            db.execute(
                "INSERT INTO mosaics (id, session_id, state, created, updated, params, format, cover_name)"
                " VALUES (?, ?, 'queued', ?, ?, ?, ?, ?)",
                (mosaic_id, session_id, now, now, json.dumps(params), fmt, cover_name),
            )
        return self.mosaic(mosaic_id)  # type: ignore[return-value]

    def mosaic(self, mosaic_id: str) -> MosaicRecord | None:
        row = self._connection().execute("SELECT * FROM mosaics WHERE id = ?", (mosaic_id,)).fetchone()
        return None if row is None else _mosaic(row)

    def mosaics_of(self, session_id: str) -> list[MosaicRecord]:
        rows = self._connection().execute(
            "SELECT * FROM mosaics WHERE session_id = ? ORDER BY created", (session_id,)
        )
        return [_mosaic(r) for r in rows]

    def update_mosaic(self, mosaic_id: str, **fields: Any) -> None:
        if "result" in fields:
            fields["result"] = json.dumps(fields["result"])
        self._update("mosaics", mosaic_id, fields)

    def mosaics_in_state(self, *states: str) -> list[MosaicRecord]:
        marks = ",".join("?" * len(states))
        rows = self._connection().execute(
            f"SELECT * FROM mosaics WHERE state IN ({marks}) ORDER BY created", states
        )
        return [_mosaic(r) for r in rows]

    def _update(self, table: str, record_id: str, fields: dict[str, Any]) -> None:
        fields = {**fields, "updated": time.time()}
        assignments = ", ".join(f"{name} = ?" for name in fields)  # names come from our code only
        with self._tx() as db:
            db.execute(f"UPDATE {table} SET {assignments} WHERE id = ?", (*fields.values(), record_id))


@contextlib.contextmanager
def _no_such_session(session_id: str) -> Iterator[None]:
    """A row for a session that is gone (deleted meanwhile) is a :class:`KeyError`, as in Redis."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        if "FOREIGN KEY" not in str(exc):
            raise
        raise KeyError(f"no session {session_id}") from exc


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Databases written by earlier versions lack the newer columns: add them."""
    wanted = {
        "sessions": {"worker": "TEXT", "last_seq": "INTEGER NOT NULL DEFAULT 0"},
        "mosaics": {"worker": "TEXT"},
    }
    for table, columns in wanted.items():
        have = {r["name"] for r in conn.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns.items():
            if name not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def _session(row: sqlite3.Row) -> SessionRecord:
    data = dict(row)
    data.pop("last_seq", None)
    data["rejected"] = json.loads(data["rejected"])
    return SessionRecord(**data)


def _mosaic(row: sqlite3.Row) -> MosaicRecord:
    data = dict(row)
    data["params"] = json.loads(data["params"])
    data["result"] = json.loads(data["result"]) if data["result"] else {}
    return MosaicRecord(**data)
