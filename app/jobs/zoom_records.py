"""Deep Zoom pyramid and animation records, in the same SQLite database as sessions and mosaics.

Each ready mosaic has one pyramid row (its background build state and its share token) and any
number of animation rows. Rows of a deleted mosaic stay behind, unreachable: every lookup goes
through the mosaic record first, and jobs check that it still exists.
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
CREATE TABLE IF NOT EXISTS pyramids (
    mosaic_id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    share_token TEXT NOT NULL UNIQUE,   -- the read-only viewer link /v/<token>
    state TEXT NOT NULL,                -- queued | building | ready | failed
    created REAL NOT NULL,
    updated REAL NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    layout TEXT,                        -- JSON: width, height, tile_size, overlap, fmt, levels
    error TEXT
);
CREATE TABLE IF NOT EXISTS animations (
    id TEXT PRIMARY KEY,
    mosaic_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    state TEXT NOT NULL,                -- queued | rendering | ready | failed
    created REAL NOT NULL,
    updated REAL NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    spec TEXT NOT NULL,                 -- JSON: the engine's AnimationSpec fields
    file TEXT,
    bytes INTEGER,
    seconds_taken REAL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS animations_by_mosaic ON animations(mosaic_id, created);
"""


@dataclass
class PyramidRecord:
    mosaic_id: str
    session_id: str
    share_token: str
    state: str
    created: float
    updated: float
    done: int
    total: int
    layout: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class AnimationRecord:
    id: str
    mosaic_id: str
    session_id: str
    state: str
    created: float
    updated: float
    done: int
    total: int
    spec: dict[str, Any]
    file: str | None = None
    bytes: int | None = None
    seconds_taken: float | None = None
    error: str | None = None


class ZoomRecords:
    """Thread-safe access to the pyramid and animation tables (one connection per thread)."""

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

    # pyramids ---------------------------------------------------------------------------------

    def queue_pyramid(self, mosaic_id: str, session_id: str, share_token: str) -> None:
        """Mark the mosaic's pyramid as queued (a new row keeps ``share_token``, an existing row
        keeps its own)."""
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO pyramids (mosaic_id, session_id, share_token, state, created, updated)"
                " VALUES (?, ?, ?, 'queued', ?, ?) ON CONFLICT(mosaic_id) DO UPDATE SET"
                " state = 'queued', done = 0, total = 0, error = NULL, updated = excluded.updated",
                (mosaic_id, session_id, share_token, now, now),
            )

    def pyramid(self, mosaic_id: str) -> PyramidRecord | None:
        row = (
            self._connection().execute("SELECT * FROM pyramids WHERE mosaic_id = ?", (mosaic_id,)).fetchone()
        )
        return None if row is None else _pyramid(row)

    def pyramid_by_token(self, token: str) -> PyramidRecord | None:
        row = self._connection().execute("SELECT * FROM pyramids WHERE share_token = ?", (token,)).fetchone()
        return None if row is None else _pyramid(row)

    def pyramids_in_state(self, *states: str) -> list[PyramidRecord]:
        marks = ",".join("?" * len(states))
        rows = self._connection().execute(f"SELECT * FROM pyramids WHERE state IN ({marks})", states)
        return [_pyramid(r) for r in rows]

    def update_pyramid(self, mosaic_id: str, **fields: Any) -> None:
        if "layout" in fields:
            fields["layout"] = json.dumps(fields["layout"])
        self._update("pyramids", "mosaic_id", mosaic_id, fields)

    # animations -------------------------------------------------------------------------------

    def create_animation(
        self, animation_id: str, *, mosaic_id: str, session_id: str, spec: dict[str, Any], total: int
    ) -> AnimationRecord:
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO animations (id, mosaic_id, session_id, state, created, updated, total, spec)"
                " VALUES (?, ?, ?, 'queued', ?, ?, ?, ?)",
                (animation_id, mosaic_id, session_id, now, now, total, json.dumps(spec)),
            )
        return self.animation(animation_id)  # type: ignore[return-value]

    def animation(self, animation_id: str) -> AnimationRecord | None:
        row = self._connection().execute("SELECT * FROM animations WHERE id = ?", (animation_id,)).fetchone()
        return None if row is None else _animation(row)

    def animations_of(self, mosaic_id: str) -> list[AnimationRecord]:
        rows = self._connection().execute(
            "SELECT * FROM animations WHERE mosaic_id = ? ORDER BY created", (mosaic_id,)
        )
        return [_animation(r) for r in rows]

    def animations_in_state(self, *states: str) -> list[AnimationRecord]:
        marks = ",".join("?" * len(states))
        rows = self._connection().execute(
            f"SELECT * FROM animations WHERE state IN ({marks}) ORDER BY created", states
        )
        return [_animation(r) for r in rows]

    def update_animation(self, animation_id: str, **fields: Any) -> None:
        self._update("animations", "id", animation_id, fields)

    def _update(self, table: str, key: str, record_id: str, fields: dict[str, Any]) -> None:
        fields = {**fields, "updated": time.time()}
        assignments = ", ".join(f"{name} = ?" for name in fields)  # names come from our code only
        with self._tx() as db:
            db.execute(f"UPDATE {table} SET {assignments} WHERE {key} = ?", (*fields.values(), record_id))


def _pyramid(row: sqlite3.Row) -> PyramidRecord:
    data = dict(row)
    data["layout"] = json.loads(data["layout"]) if data["layout"] else {}
    return PyramidRecord(**data)


def _animation(row: sqlite3.Row) -> AnimationRecord:
    data = dict(row)
    data["spec"] = json.loads(data["spec"])
    return AnimationRecord(**data)
