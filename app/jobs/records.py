"""Session and mosaic records in SQLite: what every status poll reads and every job writes.

One connection per thread, WAL journal, short transactions: the web handlers and the job
threads read and write concurrently.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    error TEXT
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
    error TEXT
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


class Records:
    """Thread-safe access to the SQLite database of sessions and mosaics."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connection().executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

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
        if row is None:
            return None
        data = dict(row)
        data["rejected"] = json.loads(data["rejected"])
        return SessionRecord(**data)

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

    def delete_session(self, session_id: str) -> bool:
        with self._tx() as db:
            db.execute("DELETE FROM mosaics WHERE session_id = ?", (session_id,))
            return db.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount > 0

    # mosaics ----------------------------------------------------------------------------------

    def create_mosaic(
        self, mosaic_id: str, session_id: str, *, params: dict[str, Any], fmt: str, cover_name: str
    ) -> MosaicRecord:
        now = time.time()
        with self._tx() as db:
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


def _mosaic(row: sqlite3.Row) -> MosaicRecord:
    data = dict(row)
    data["params"] = json.loads(data["params"])
    data["result"] = json.loads(data["result"]) if data["result"] else {}
    return MosaicRecord(**data)
