"""Deep Zoom pyramid and animation records.

Each ready mosaic has one pyramid record (its background build state and its share token) and
any number of animation records. :class:`ZoomRecords` is the interface, chosen by the same
setting as the main records (:mod:`app.jobs.services`): :class:`SqliteZoomRecords` keeps them
in the same SQLite database as sessions and mosaics (one machine);
``app.jobs.redis_backend.RedisZoomRecords`` keeps them in Redis (a cluster). Deleting a session
deletes its zoom records too (:meth:`ZoomRecords.delete_session`); an update of a record that no
longer exists (a job finishing after the delete) does nothing.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from app.jobs.sqlite import SqliteDatabase

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
CREATE INDEX IF NOT EXISTS animations_by_session ON animations(session_id);
CREATE INDEX IF NOT EXISTS pyramids_by_session ON pyramids(session_id);
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


class ZoomRecords(Protocol):
    """What the zoom jobs and routes read and write; thread-safe in every implementation."""

    def queue_pyramid(
        self, mosaic_id: str, session_id: str, share_token: str, *, if_absent: bool = False
    ) -> bool:
        """Mark the mosaic's pyramid as queued: a new record gets ``share_token``, an existing one
        keeps its own. With ``if_absent`` an existing record is left alone. True if it was queued."""
        ...

    def pyramid(self, mosaic_id: str) -> PyramidRecord | None: ...
    def pyramid_by_token(self, token: str) -> PyramidRecord | None: ...
    def pyramids_in_state(self, *states: str) -> list[PyramidRecord]: ...
    def update_pyramid(self, mosaic_id: str, **fields: Any) -> None: ...

    def create_animation(
        self, animation_id: str, *, mosaic_id: str, session_id: str, spec: dict[str, Any], total: int
    ) -> AnimationRecord: ...
    def animation(self, animation_id: str) -> AnimationRecord | None: ...
    def animations_of(self, mosaic_id: str) -> list[AnimationRecord]:
        """The mosaic's animations, oldest first."""
        ...

    def animations_in_state(self, *states: str) -> list[AnimationRecord]: ...
    def update_animation(self, animation_id: str, **fields: Any) -> None: ...

    def in_use(self, session_id: str, *, since: float) -> bool:
        """True if an animation of the session was asked for or made progress since ``since``,
        or is still waiting or running: the sweeper keeps such sessions. (A pyramid is built
        right after its render, which already counts.)"""
        ...

    def delete_mosaic(self, mosaic_id: str) -> None:
        """Remove a mosaic's pyramid and animation records (its share link dies too)."""
        ...

    def delete_session(self, session_id: str) -> None:
        """Remove every pyramid and animation record of a session (its share links die too)."""
        ...


class SqliteZoomRecords(SqliteDatabase):
    """Thread-safe access to the pyramid and animation tables (one connection per thread)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA)

    # pyramids ---------------------------------------------------------------------------------

    def queue_pyramid(
        self, mosaic_id: str, session_id: str, share_token: str, *, if_absent: bool = False
    ) -> bool:
        now = time.time()
        requeue = "state = 'queued', done = 0, total = 0, error = NULL, updated = excluded.updated"
        on_conflict = "DO NOTHING" if if_absent else f"DO UPDATE SET {requeue}"
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO pyramids (mosaic_id, session_id, share_token, state, created, updated)"
                f" VALUES (?, ?, ?, 'queued', ?, ?) ON CONFLICT(mosaic_id) {on_conflict}",
                (mosaic_id, session_id, share_token, now, now),
            )
        return cursor.rowcount > 0

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

    def in_use(self, session_id: str, *, since: float) -> bool:
        row = (
            self._connection()
            .execute(
                "SELECT 1 FROM animations WHERE session_id = ?"
                " AND (updated >= ? OR state IN ('queued', 'rendering')) LIMIT 1",
                (session_id, since),
            )
            .fetchone()
        )
        return row is not None

    def delete_mosaic(self, mosaic_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM animations WHERE mosaic_id = ?", (mosaic_id,))
            db.execute("DELETE FROM pyramids WHERE mosaic_id = ?", (mosaic_id,))

    def delete_session(self, session_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM animations WHERE session_id = ?", (session_id,))
            db.execute("DELETE FROM pyramids WHERE session_id = ?", (session_id,))

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
