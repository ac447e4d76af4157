"""The records and the session locks behave alike on SQLite (one machine) and Redis (a cluster),
and the storage's publish/fetch round-trips through a real S3 server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.jobs.records import Records, SqliteRecords, UploadEntry
from app.jobs.redis_backend import RedisLocks, RedisRecords, RedisZoomRecords, connect
from app.jobs.zoom_records import SqliteZoomRecords, ZoomRecords
from app.object_store import ObjectStore
from app.storage import Storage
from tests.scale.conftest import Services

pytestmark = pytest.mark.scale


@pytest.fixture(params=["sqlite", "redis"])
def records(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Records]:
    if request.param == "sqlite":
        yield SqliteRecords(tmp_path / "records.sqlite3")
    else:
        backends: Services = request.getfixturevalue("backends")
        yield RedisRecords(connect(backends.redis_url))


def test_records_round_trip(records: Records) -> None:
    created = records.create_session("s1")
    assert created.state == "indexing" and records.session("s1") == created
    records.update_session(
        "s1", state="ready", accepted=3, rejected=[{"file": "x", "reason": "y"}], worker="w"
    )
    session = records.session("s1")
    assert session is not None and session.state == "ready" and session.rejected[0]["file"] == "x"
    assert session.worker == "w" and session.updated >= created.updated

    params = {"cols": 10, "aspect": [1, 1]}
    records.create_mosaic("m1", "s1", params=params, fmt="jpeg", cover_name="c.jpg")
    records.create_mosaic("m2", "s1", params=params, fmt="png", cover_name="d.jpg")
    records.update_mosaic("m1", state="ready", result={"bytes": 5})
    assert [m.id for m in records.mosaics_of("s1")] == ["m1", "m2"]
    assert [m.id for m in records.mosaics_in_state("queued")] == ["m2"]
    assert records.mosaic("m1").result == {"bytes": 5}  # type: ignore[union-attr]
    assert records.sessions_in_state("ready") == ["s1"]
    assert records.expired_sessions(older_than=time.time() + 10) == []  # m2 is still queued
    records.update_mosaic("m2", state="failed")
    assert records.expired_sessions(older_than=time.time() + 10) == ["s1"]

    assert [records.next_upload_seq("s1") for _ in range(3)] == [1, 2, 3]
    records.add_upload("s1", UploadEntry(3, "c.jpg", "000003.jpg"))
    records.add_upload("s1", UploadEntry(1, "a.jpg", "000001.jpg"))
    assert [u.seq for u in records.uploads("s1")] == [1, 3]

    assert records.delete_session("s1")
    assert records.session("s1") is None and records.mosaic("m1") is None and records.uploads("s1") == []
    records.update_mosaic("m1", state="ready")  # a job finishing after the delete
    records.update_session("s1", state="ready")
    assert records.mosaic("m1") is None and records.session("s1") is None
    with pytest.raises(KeyError):
        records.next_upload_seq("s1")


@pytest.fixture(params=["sqlite", "redis"])
def both_records(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Records, ZoomRecords]]:
    if request.param == "sqlite":
        yield SqliteRecords(tmp_path / "db.sqlite3"), SqliteZoomRecords(tmp_path / "db.sqlite3")
    else:
        backends: Services = request.getfixturevalue("backends")
        client = connect(backends.redis_url)
        yield RedisRecords(client), RedisZoomRecords(client)


def test_zoom_records_round_trip(both_records: tuple[Records, ZoomRecords]) -> None:
    records, zoom = both_records
    records.create_session("s1")
    records.create_session("s2")
    for mosaic_id, session_id in (("m1", "s1"), ("m2", "s1"), ("m3", "s2")):
        records.create_mosaic(mosaic_id, session_id, params={}, fmt="jpeg", cover_name="c.jpg")

    assert zoom.queue_pyramid("m1", "s1", "token-1")
    zoom.update_pyramid("m1", state="ready", done=5, total=5, layout={"width": 9, "fmt": "jpg"})
    assert not zoom.queue_pyramid("m1", "s1", "token-x", if_absent=True)  # has one: left alone
    assert zoom.pyramid("m1").state == "ready"  # type: ignore[union-attr]
    assert zoom.queue_pyramid("m1", "s1", "token-x")  # built again: queued, keeps its share link
    again = zoom.pyramid("m1")
    assert again is not None and (again.state, again.done, again.share_token) == ("queued", 0, "token-1")
    assert again.layout == {"width": 9, "fmt": "jpg"}
    assert zoom.pyramid_by_token("token-1") == again and zoom.pyramid_by_token("token-x") is None
    assert zoom.queue_pyramid("m3", "s2", "token-3", if_absent=True)
    zoom.update_pyramid("m3", state="building")
    assert sorted(p.mosaic_id for p in zoom.pyramids_in_state("queued", "building")) == ["m1", "m3"]

    spec = {"kind": "zoom", "fmt": "gif"}
    first = zoom.create_animation("a1", mosaic_id="m1", session_id="s1", spec=spec, total=10)
    assert (first.state, first.total, first.spec) == ("queued", 10, spec)
    zoom.create_animation("a2", mosaic_id="m1", session_id="s1", spec=spec, total=4)
    zoom.create_animation("a3", mosaic_id="m3", session_id="s2", spec=spec, total=4)
    zoom.update_animation("a1", state="ready", done=10, file="a1.gif", bytes=99)
    assert zoom.animation("a1").bytes == 99  # type: ignore[union-attr]
    assert [a.id for a in zoom.animations_of("m1")] == ["a1", "a2"] and zoom.animations_of("m2") == []
    assert [a.id for a in zoom.animations_in_state("queued", "rendering")] == ["a2", "a3"]

    now = time.time()
    assert zoom.in_use("s1", since=now + 10)  # a2 still waits
    zoom.update_animation("a2", state="failed")
    assert zoom.in_use("s1", since=now - 10) and not zoom.in_use("s1", since=now + 10)

    records.delete_session("s1")
    zoom.delete_session("s1")
    assert zoom.pyramid("m1") is None and zoom.pyramid_by_token("token-1") is None
    assert zoom.animation("a1") is None and zoom.animations_of("m1") == []
    assert not zoom.in_use("s1", since=0)
    zoom.update_pyramid("m1", state="ready")  # jobs finishing after the delete bring nothing back
    zoom.update_animation("a2", state="ready")
    assert zoom.pyramid("m1") is None and zoom.animation("a2") is None
    assert [p.mosaic_id for p in zoom.pyramids_in_state("queued", "building")] == ["m3"]
    assert [a.id for a in zoom.animations_in_state("queued")] == ["a3"]  # the other session's stay
    assert zoom.pyramid_by_token("token-3") is not None


def test_redis_lock_excludes_other_processes_and_lapses_when_its_holder_dies(backends: Services) -> None:
    first = RedisLocks(connect(backends.redis_url), timeout=2)
    second = RedisLocks(connect(backends.redis_url), timeout=2)  # as if in another process
    order: list[str] = []

    with first.hold("s"):
        with first.hold("s"):  # re-entrant within a thread
            order.append("first")

        def take() -> None:
            with second.hold("s"):
                order.append("second")

        waiter = threading.Thread(target=take)
        waiter.start()
        time.sleep(3)  # longer than the timeout: the watchdog keeps the lock ours
        assert order == ["first"]
    waiter.join(5)
    assert order == ["first", "second"]

    # A holder that died without releasing: its key lapses after the timeout.
    client = connect(backends.redis_url)
    client.set("tessera:lock:dead", "someone-else", px=1500)
    started = time.monotonic()
    with second.hold("dead"):
        assert 1.0 < time.monotonic() - started < 5


def test_storage_publishes_and_fetches_through_s3(backends: Services, tmp_path: Path) -> None:
    def store() -> ObjectStore:
        return ObjectStore(
            bucket=backends.bucket, endpoint_url=backends.s3_url, region="us-east-1",
            access_key="testing", secret_key="testing",
        )  # fmt: skip

    store().ensure_bucket()
    store().ensure_bucket()  # a second start finds it
    writer = Storage(tmp_path / "a", remote=store())
    reader = Storage(tmp_path / "b", remote=store())
    folder = writer.mosaic_dir("s1", "m1")
    folder.mkdir(parents=True)
    (folder / "cover.jpg").write_bytes(b"cover")
    (folder / "pointer.json").write_text("1")
    writer.publish_tree(folder)

    copy = reader.mosaic_dir("s1", "m1")
    assert not reader.fetch(copy / "missing")
    reader.fetch_tree(copy)
    assert (copy / "cover.jpg").read_bytes() == b"cover"

    (folder / "pointer.json").write_text("2")
    writer.publish(folder / "pointer.json")
    assert reader.fetch(copy / "pointer.json") and (copy / "pointer.json").read_text() == "1"  # cached
    assert reader.fetch(copy / "pointer.json", fresh=True) and (copy / "pointer.json").read_text() == "2"

    writer.delete_session("s1")
    assert not reader.fetch(copy / "pointer.json", fresh=True) and not (copy / "pointer.json").exists()
    assert (copy / "cover.jpg").exists()  # the reader's cache stays until it is swept
    reader.check()


def test_delete_one_mosaic_leaves_the_others(both_records: tuple[Records, ZoomRecords]) -> None:
    records, zoom = both_records
    records.create_session("s1")
    for mosaic_id in ("m1", "m2"):
        records.create_mosaic(mosaic_id, "s1", params={}, fmt="jpeg", cover_name="c.jpg")
        assert zoom.queue_pyramid(mosaic_id, "s1", f"token-{mosaic_id}")
        zoom.create_animation(f"a-{mosaic_id}", mosaic_id=mosaic_id, session_id="s1", spec={}, total=1)
    assert records.delete_mosaic("m1")
    zoom.delete_mosaic("m1")
    assert not records.delete_mosaic("m1")
    assert records.mosaic("m1") is None and [m.id for m in records.mosaics_of("s1")] == ["m2"]
    assert zoom.pyramid("m1") is None and zoom.pyramid_by_token("token-m1") is None
    assert zoom.animation("a-m1") is None and zoom.animations_of("m1") == []
    assert [p.mosaic_id for p in zoom.pyramids_in_state("queued")] == ["m2"]
    assert [a.id for a in zoom.animations_in_state("queued")] == ["a-m2"]
    assert zoom.pyramid_by_token("token-m2") is not None and records.session("s1") is not None
