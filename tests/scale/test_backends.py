"""The records and the session locks behave alike on SQLite (one machine) and Redis (a cluster),
and the storage's publish/fetch round-trips through a real S3 server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.jobs.records import Records, SqliteRecords, UploadEntry
from app.jobs.redis_backend import RedisLocks, RedisRecords, connect
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
