"""Records and session locks in Redis, for a cluster of web processes and workers.

Every record is one hash whose field values are JSON; an update is one ``HSET`` run by a
script that first checks the record still exists, so a job finishing after its session was
deleted cannot bring the record back. Upload numbers come from ``INCR``.

Keys (under the prefix, ``tessera:`` by default)::

    sessions                 set of session ids
    s:<id>                   session record
    s:<id>:mosaics           sorted set of the session's mosaic ids, by creation time
    s:<id>:uploads           hash: upload number -> {"name", "file"}
    s:<id>:seq               last upload number handed out
    m:<id>                   mosaic record
    lock:<id>                the session's lock (index builds, library updates)

and the zoom records (:class:`RedisZoomRecords`)::

    p:<mosaic id>            the mosaic's pyramid record
    token:<share token>      the mosaic id a share link names
    a:<id>                   animation record
    m:<mosaic id>:animations sorted set of the mosaic's animation ids, by creation time
    s:<id>:zoom              set of the keys above that belong to the session (deleted with it)
    pyramids, animations     sets of every pyramid's mosaic id and every animation id
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields
from typing import TYPE_CHECKING, Any

from app.jobs.records import MosaicRecord, SessionRecord, UploadEntry
from app.jobs.zoom_records import AnimationRecord, PyramidRecord

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)

# HSET only if the hash exists: ARGV holds field, value pairs.
_UPDATE_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HSET', KEYS[1], unpack(ARGV))
    return 1
end
return 0
"""
# Release or extend a lock only while it still holds our token.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# Queue a pyramid. KEYS: pyramid, mosaic, token, session's zoom set, set of pyramids.
# ARGV: mosaic id, if_absent (1/0), updated, then the new record's field, value pairs.
_QUEUE_PYRAMID = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    if ARGV[2] == '1' then return 0 end
    redis.call('HSET', KEYS[1], 'state', '"queued"', 'done', '0', 'total', '0', 'error', 'null',
               'updated', ARGV[3])
    return 1
end
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('SET', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], KEYS[1], KEYS[3])
redis.call('SADD', KEYS[5], ARGV[1])
return 1
"""
# Create an animation of a mosaic that still exists. KEYS: animation, mosaic, the mosaic's
# animations, session's zoom set, set of animations. ARGV: id, created, then field, value pairs.
_CREATE_ANIMATION = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[4], KEYS[1], KEYS[3])
redis.call('SADD', KEYS[5], ARGV[1])
return 1
"""
_SESSION_FIELDS = [f.name for f in fields(SessionRecord)]
_MOSAIC_FIELDS = [f.name for f in fields(MosaicRecord)]
_PYRAMID_FIELDS = [f.name for f in fields(PyramidRecord)]
_ANIMATION_FIELDS = [f.name for f in fields(AnimationRecord)]


def connect(url: str) -> Redis:
    """A client for ``url`` (a connection pool, safe to share between threads)."""
    from redis import Redis

    return Redis.from_url(url, socket_timeout=30, socket_connect_timeout=5, health_check_interval=30)


class _Hashes:
    """Records as Redis hashes of JSON values, updated only while they exist."""

    def __init__(self, client: Redis, *, prefix: str = "tessera:") -> None:
        self.redis = client
        self.prefix = prefix
        self._update = client.register_script(_UPDATE_IF_EXISTS)

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _load(self, key: str, names: list[str]) -> dict[str, Any] | None:
        raw = self.redis.hgetall(key)
        if not raw:
            return None
        data = {_text(k): json.loads(v) for k, v in raw.items()}
        return {name: data[name] for name in names if name in data}

    def _set(self, key: str, values: dict[str, Any]) -> None:
        pairs: list[str] = []
        for name, value in _encode({**values, "updated": time.time()}).items():
            pairs += [name, value]
        self._update(keys=[key], args=pairs)


class RedisRecords(_Hashes):
    """The :class:`app.jobs.records.Records` interface on Redis."""

    def check(self) -> None:
        self.redis.ping()

    # sessions ---------------------------------------------------------------------------------

    def create_session(self, session_id: str) -> SessionRecord:
        now = time.time()
        record = SessionRecord(session_id, "indexing", now, now, 0, 0, 0, [], None)
        pipe = self.redis.pipeline()
        pipe.hset(self._key("s", session_id), mapping=_encode(asdict(record)))
        pipe.sadd(self._key("sessions"), session_id)
        pipe.execute()
        return record

    def session(self, session_id: str) -> SessionRecord | None:
        data = self._load(self._key("s", session_id), _SESSION_FIELDS)
        return None if data is None else SessionRecord(**data)

    def update_session(self, session_id: str, **values: Any) -> None:
        self._set(self._key("s", session_id), values)

    def sessions_in_state(self, *states: str) -> list[str]:
        return [s.id for s in self._all_sessions() if s.state in states]

    def expired_sessions(self, *, older_than: float) -> list[str]:
        expired = []
        for session in self._all_sessions():
            if session.state == "indexing" or session.updated >= older_than:
                continue
            busy = any(
                m.updated >= older_than or m.state in ("queued", "rendering")
                for m in self.mosaics_of(session.id)
            )
            if not busy:
                expired.append(session.id)
        return expired

    def delete_mosaic(self, mosaic_id: str) -> bool:
        record = self.mosaic(mosaic_id)
        if record is None:
            return False
        pipe = self.redis.pipeline()
        pipe.zrem(self._key("s", record.session_id, "mosaics"), mosaic_id)
        pipe.delete(self._key("m", mosaic_id))
        return bool(pipe.execute()[1])

    def delete_session(self, session_id: str) -> bool:
        mosaic_ids = [_text(m) for m in self.redis.zrange(self._key("s", session_id, "mosaics"), 0, -1)]
        pipe = self.redis.pipeline()
        pipe.delete(self._key("s", session_id))
        for mosaic_id in mosaic_ids:
            pipe.delete(self._key("m", mosaic_id))
        pipe.delete(
            self._key("s", session_id, "mosaics"),
            self._key("s", session_id, "uploads"),
            self._key("s", session_id, "seq"),
        )
        pipe.srem(self._key("sessions"), session_id)
        return bool(pipe.execute()[0])

    def _all_sessions(self) -> Iterator[SessionRecord]:
        for raw in self.redis.sscan_iter(self._key("sessions"), count=500):
            record = self.session(_text(raw))
            if record is not None:
                yield record

    # uploads ----------------------------------------------------------------------------------

    def next_upload_seq(self, session_id: str) -> int:
        if not self.redis.exists(self._key("s", session_id)):
            raise KeyError(f"no session {session_id}")
        return int(self.redis.incr(self._key("s", session_id, "seq")))

    def add_upload(self, session_id: str, entry: UploadEntry) -> None:
        value = json.dumps({"name": entry.name, "file": entry.file})
        self.redis.hset(self._key("s", session_id, "uploads"), str(entry.seq), value)

    def uploads(self, session_id: str) -> list[UploadEntry]:
        raw = self.redis.hgetall(self._key("s", session_id, "uploads"))
        entries = []
        for seq, value in raw.items():
            data = json.loads(value)
            entries.append(UploadEntry(int(seq), str(data["name"]), str(data["file"])))
        return sorted(entries, key=lambda e: e.seq)

    # mosaics ----------------------------------------------------------------------------------

    def create_mosaic(
        self, mosaic_id: str, session_id: str, *, params: dict[str, Any], fmt: str, cover_name: str
    ) -> MosaicRecord:
        now = time.time()
        record = MosaicRecord(
            mosaic_id, session_id, "queued", now, now, None, 0, 0, params, fmt, cover_name
        )  # fmt: skip
        pipe = self.redis.pipeline()
        pipe.hset(self._key("m", mosaic_id), mapping=_encode(asdict(record)))
        pipe.zadd(self._key("s", session_id, "mosaics"), {mosaic_id: now})
        pipe.execute()
        return record

    def mosaic(self, mosaic_id: str) -> MosaicRecord | None:
        data = self._load(self._key("m", mosaic_id), _MOSAIC_FIELDS)
        return None if data is None else MosaicRecord(**data)

    def mosaics_of(self, session_id: str) -> list[MosaicRecord]:
        ids = self.redis.zrange(self._key("s", session_id, "mosaics"), 0, -1)
        found = (self.mosaic(_text(m)) for m in ids)
        return [m for m in found if m is not None]

    def update_mosaic(self, mosaic_id: str, **values: Any) -> None:
        self._set(self._key("m", mosaic_id), values)

    def mosaics_in_state(self, *states: str) -> list[MosaicRecord]:
        found = [m for s in self._all_sessions() for m in self.mosaics_of(s.id) if m.state in states]
        return sorted(found, key=lambda m: m.created)


class RedisZoomRecords(_Hashes):
    """The :class:`app.jobs.zoom_records.ZoomRecords` interface on Redis (same prefix as the
    :class:`RedisRecords` they belong to: a pyramid or an animation is only created while its
    mosaic's record exists, so none outlives a deleted session)."""

    def __init__(self, client: Redis, *, prefix: str = "tessera:") -> None:
        super().__init__(client, prefix=prefix)
        self._queue_pyramid = client.register_script(_QUEUE_PYRAMID)
        self._create_animation = client.register_script(_CREATE_ANIMATION)

    # pyramids ---------------------------------------------------------------------------------

    def queue_pyramid(
        self, mosaic_id: str, session_id: str, share_token: str, *, if_absent: bool = False
    ) -> bool:
        now = time.time()
        record = PyramidRecord(mosaic_id, session_id, share_token, "queued", now, now, 0, 0)
        keys = [
            self._key("p", mosaic_id),
            self._key("m", mosaic_id),
            self._key("token", share_token),
            self._key("s", session_id, "zoom"),
            self._key("pyramids"),
        ]
        args = [mosaic_id, "1" if if_absent else "0", json.dumps(now), *_pairs(asdict(record))]
        return bool(self._queue_pyramid(keys=keys, args=args))

    def pyramid(self, mosaic_id: str) -> PyramidRecord | None:
        data = self._load(self._key("p", mosaic_id), _PYRAMID_FIELDS)
        return None if data is None else PyramidRecord(**data)

    def pyramid_by_token(self, token: str) -> PyramidRecord | None:
        mosaic_id = self.redis.get(self._key("token", token))
        record = None if mosaic_id is None else self.pyramid(_text(mosaic_id))
        return record if record is not None and record.share_token == token else None

    def pyramids_in_state(self, *states: str) -> list[PyramidRecord]:
        found = (self.pyramid(_text(m)) for m in self.redis.sscan_iter(self._key("pyramids"), count=500))
        return [p for p in found if p is not None and p.state in states]

    def update_pyramid(self, mosaic_id: str, **values: Any) -> None:
        self._set(self._key("p", mosaic_id), values)

    # animations -------------------------------------------------------------------------------

    def create_animation(
        self, animation_id: str, *, mosaic_id: str, session_id: str, spec: dict[str, Any], total: int
    ) -> AnimationRecord:
        now = time.time()
        record = AnimationRecord(animation_id, mosaic_id, session_id, "queued", now, now, 0, total, spec)
        keys = [
            self._key("a", animation_id),
            self._key("m", mosaic_id),
            self._key("m", mosaic_id, "animations"),
            self._key("s", session_id, "zoom"),
            self._key("animations"),
        ]
        self._create_animation(keys=keys, args=[animation_id, repr(now), *_pairs(asdict(record))])
        return record

    def animation(self, animation_id: str) -> AnimationRecord | None:
        data = self._load(self._key("a", animation_id), _ANIMATION_FIELDS)
        return None if data is None else AnimationRecord(**data)

    def animations_of(self, mosaic_id: str) -> list[AnimationRecord]:
        ids = self.redis.zrange(self._key("m", mosaic_id, "animations"), 0, -1)
        found = (self.animation(_text(a)) for a in ids)
        return [a for a in found if a is not None]

    def animations_in_state(self, *states: str) -> list[AnimationRecord]:
        found = (self.animation(_text(a)) for a in self.redis.sscan_iter(self._key("animations"), count=500))
        return sorted((a for a in found if a is not None and a.state in states), key=lambda a: a.created)

    def update_animation(self, animation_id: str, **values: Any) -> None:
        self._set(self._key("a", animation_id), values)

    # sessions ---------------------------------------------------------------------------------

    def _session_keys(self, session_id: str) -> list[str]:
        return sorted(_text(k) for k in self.redis.smembers(self._key("s", session_id, "zoom")))

    def in_use(self, session_id: str, *, since: float) -> bool:
        animation = self._key("a", "")
        for key in self._session_keys(session_id):
            if key.startswith(animation):
                state, updated = (
                    None if v is None else json.loads(v) for v in self.redis.hmget(key, "state", "updated")
                )
                if state in ("queued", "rendering") or (updated is not None and updated >= since):
                    return True
        return False

    def delete_mosaic(self, mosaic_id: str) -> None:
        pyramid = self.pyramid(mosaic_id)
        animations = [_text(a) for a in self.redis.zrange(self._key("m", mosaic_id, "animations"), 0, -1)]
        pipe = self.redis.pipeline()
        for animation_id in animations:
            key = self._key("a", animation_id)
            pipe.delete(key)
            pipe.srem(self._key("animations"), animation_id)
            if pyramid is not None:
                pipe.srem(self._key("s", pyramid.session_id, "zoom"), key)
        pipe.delete(self._key("m", mosaic_id, "animations"))
        if pyramid is not None:
            keys = (self._key("p", mosaic_id), self._key("token", pyramid.share_token))
            pipe.delete(*keys)
            pipe.srem(self._key("pyramids"), mosaic_id)
            listed = (*keys, self._key("m", mosaic_id, "animations"))
            pipe.srem(self._key("s", pyramid.session_id, "zoom"), *listed)
        pipe.execute()

    def delete_session(self, session_id: str) -> None:
        zoom = self._key("s", session_id, "zoom")
        keys = self._session_keys(session_id)
        pyramid, animation = self._key("p", ""), self._key("a", "")
        pipe = self.redis.pipeline()
        for key in keys:
            pipe.delete(key)
            if key.startswith(pyramid):
                pipe.srem(self._key("pyramids"), key.removeprefix(pyramid))
            elif key.startswith(animation):
                pipe.srem(self._key("animations"), key.removeprefix(animation))
        pipe.delete(zoom)
        pipe.execute()


class RedisLocks:
    """Per-session locks shared by every process: a Redis key with a token and an expiry.

    Re-entrant within a thread. While held, a watchdog thread keeps extending the expiry, so a
    long index build keeps its lock and a killed worker's lock lapses after ``timeout`` seconds.
    Threads of one process queue on a local lock first, so only one of them polls Redis.
    """

    def __init__(self, client: Redis, *, prefix: str = "tessera:", timeout: float = 30.0) -> None:
        self.redis = client
        self.prefix = prefix
        self.timeout = timeout
        self._release = client.register_script(_RELEASE)
        self._extend = client.register_script(_EXTEND)
        self._local: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()
        self._held = threading.local()

    @contextmanager
    def hold(self, session_id: str) -> Iterator[None]:
        with self._guard:
            local = self._local.setdefault(session_id, threading.RLock())
        with local:
            depth: dict[str, int] = self._held.__dict__.setdefault("depth", {})
            if depth.get(session_id, 0):
                depth[session_id] += 1
                try:
                    yield
                finally:
                    depth[session_id] -= 1
                return
            with self._acquired(session_id):
                depth[session_id] = 1
                try:
                    yield
                finally:
                    depth[session_id] = 0

    def forget(self, session_id: str) -> None:
        with self._guard:
            self._local.pop(session_id, None)

    @contextmanager
    def _acquired(self, session_id: str) -> Iterator[None]:
        key = f"{self.prefix}lock:{session_id}"
        token = uuid.uuid4().hex
        ttl_ms = int(self.timeout * 1000)
        waited = 0.0
        while not self.redis.set(key, token, nx=True, px=ttl_ms):
            time.sleep(0.05 if waited < 2 else 0.2)
            waited += 0.05 if waited < 2 else 0.2
        stop = threading.Event()

        def keep_alive() -> None:
            while not stop.wait(self.timeout / 3):
                try:
                    if not self._extend(keys=[key], args=[token, ttl_ms]):
                        log.error("lost the lock of session %s", session_id)
                        return
                except Exception:  # a blip of the connection: try again next round
                    log.warning("could not extend the lock of session %s", session_id, exc_info=True)

        watchdog = threading.Thread(target=keep_alive, name=f"lock-{session_id[:8]}", daemon=True)
        watchdog.start()
        try:
            yield
        finally:
            stop.set()
            watchdog.join()
            self._release(keys=[key], args=[token])


def _encode(values: dict[str, Any]) -> dict[Any, Any]:
    return {name: json.dumps(value) for name, value in values.items()}


def _pairs(values: dict[str, Any]) -> list[str]:
    """``[name, JSON value, name, JSON value, ...]``, as HSET takes them in a script."""
    return [part for name, value in _encode(values).items() for part in (name, value)]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value
