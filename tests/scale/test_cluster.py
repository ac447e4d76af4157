"""Two web processes and two Celery workers on loopback, sharing one Redis and one S3 bucket.

Each process has a data folder of its own, as if each ran on its own machine: whatever one
process needs from another has to go through the queue, the records and the object store.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.jobs.redis_backend import RedisRecords, connect
from app.main import create_app
from app.settings import Settings
from tests.scale.conftest import Cluster
from tests.web.conftest import free_port, wait_for
from tests.web.test_restart import get, post_mosaic, post_session

pytestmark = [pytest.mark.scale, pytest.mark.slow]

# (cover, mosaic fields): thumbnails as stored, a larger tile shape (the sources are decoded
# again, by whichever worker renders it), a non-square cell, another output format.
REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("mate-LadyBird.jpg", {"cols": 40, "tile_size": 16}),
    ("mate-Aqua.jpg", {"cols": 24, "tile_size": 80}),
    ("mate-Dune.jpg", {"cols": 30, "tile_size": 24, "aspect": "4:3", "format": "png"}),
    ("mate-Storm.jpg", {"cols": 36, "tile_size": 20, "color_space": "rgb", "cell_grid": 2}),
]


def records(cluster: Cluster) -> RedisRecords:
    return RedisRecords(connect(cluster.backends.redis_url))


def reference_images(tmp_path: Path, corpus: Path, tiles: list[Path]) -> list[bytes]:
    """The same requests served by the one-machine default: in-process jobs, SQLite, a folder."""
    settings = Settings(data_dir=tmp_path / "reference", broker_url=None, s3_bucket=None)
    images = []
    with TestClient(create_app(settings)) as client:
        files = [("tiles", (p.name, p.read_bytes(), "image/jpeg")) for p in tiles]
        session = client.post("/api/sessions", files=files).json()
        wait_for(lambda: client.get(session["status_url"]).json(), until={"ready"})
        for cover, fields in REQUESTS:
            cover_file = {"cover": (cover, (corpus / "covers" / cover).read_bytes(), "image/jpeg")}
            data = {k: str(v) for k, v in fields.items()}
            mosaic = client.post(f"/api/sessions/{session['id']}/mosaics", files=cover_file, data=data).json()
            done = wait_for(lambda m=mosaic: client.get(m["status_url"]).json(), until={"ready", "failed"})
            assert done["state"] == "ready", done
            images.append(client.get(done["image_url"]).content)
        client.app.state.services.jobs.shutdown(wait=True)  # type: ignore[attr-defined]
    return images


def test_session_on_web_a_mosaics_on_web_b_spread_over_both_workers(
    cluster: Cluster, corpus: Path, photo_tiles: list[Path], tmp_path: Path
) -> None:
    web_a, web_b = cluster.add_web(), cluster.add_web()
    w1, w2 = (cluster.add_worker(name, TESSERA_SWEEP_INTERVAL_SECONDS="1") for name in ("w1", "w2"))
    for web in (web_a, web_b):
        ready = httpx.get(f"{web.url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"records": "ok", "jobs": "ok", "storage": "ok"}
    tiles = photo_tiles[:60]

    # A session created through web A is indexed by a worker, and seen through web B.
    session = post_session(web_a, tiles)
    indexed = wait_for(lambda: get(web_b, session["status_url"]), until={"ready", "failed"})
    assert indexed["state"] == "ready" and indexed["tiles_accepted"] == len(tiles), indexed
    indexer = records(cluster).session(session["id"]).worker  # type: ignore[union-attr]
    assert indexer in (w1.hostname, w2.hostname)

    # Mosaics requested through web B: the queue hands them to both workers.
    posted = []
    for cover, fields in REQUESTS:
        posted.append(post_mosaic(web_b, session["id"], corpus / "covers" / cover, **fields))
    finished = [wait_for(lambda m=m: get(web_b, m["status_url"]), until={"ready", "failed"}) for m in posted]
    assert all(m["state"] == "ready" for m in finished), finished
    renderers = [records(cluster).mosaic(m["id"]).worker for m in finished]  # type: ignore[union-attr]
    assert set(renderers) == {w1.hostname, w2.hostname}, renderers

    # The worker that did not index fetched the library (thumbnails, and the uploads for the
    # larger tile shape) from the object store, once, into its own cache.
    other = w2 if indexer == w1.hostname else w1
    cached = other.data_dir / "sessions" / session["id"]
    assert (cached / "tiles" / "64x64").is_dir()
    # Web A rendered nothing and stored no mosaic, yet serves every one (from the bucket);
    # each is byte-identical to what the one-machine default makes of the same request.
    served = []
    for mosaic in finished:
        response = httpx.get(f"{web_a.url}{mosaic['image_url']}", timeout=30)
        assert response.status_code == 200, response.text
        served.append(response.content)
    assert served == reference_images(tmp_path, corpus, tiles)

    # Deleting through web A removes the records everywhere, the files from the bucket, and
    # (at their next sweep) the workers' cached copies.
    assert httpx.delete(f"{web_a.url}/api/sessions/{session['id']}", timeout=30).status_code == 204
    assert httpx.get(f"{web_b.url}{session['status_url']}", timeout=10).status_code == 404
    deadline = time.monotonic() + 10
    while cached.exists():
        assert time.monotonic() < deadline, "the worker kept its copy of a deleted session"
        time.sleep(0.2)


def test_worker_killed_mid_render_hands_the_job_to_the_other(
    cluster: Cluster, corpus: Path, photo_tiles: list[Path]
) -> None:
    fast = {"TESSERA_VISIBILITY_TIMEOUT_SECONDS": "8", "TESSERA_LOCK_TIMEOUT_SECONDS": "4"}
    web = cluster.add_web(**fast)
    workers = [cluster.add_worker("w1", **fast), cluster.add_worker("w2", **fast)]
    session = post_session(web, photo_tiles[:120])
    assert wait_for(lambda: get(web, session["status_url"]), until={"ready", "failed"})["state"] == "ready"

    # A render that takes a few seconds: the sources decoded again at a larger tile, a big image.
    big = post_mosaic(web, session["id"], corpus / "covers" / "mate-Aqua.jpg", cols=60, tile_size=128)
    store = records(cluster)
    deadline = time.monotonic() + 60
    while (record := store.mosaic(big["id"])) is not None and record.state != "rendering":
        assert time.monotonic() < deadline and record.state == "queued", record
        time.sleep(0.05)
    assert record is not None
    victim = next(w for w in workers if w.hostname == record.worker)
    survivor = next(w for w in workers if w is not victim)
    time.sleep(0.1)
    victim.kill()
    assert store.mosaic(big["id"]).state == "rendering"  # type: ignore[union-attr]

    # Until the other worker has redone it, the mosaic is not served (no half-written file).
    deadline = time.monotonic() + 90
    while (image := httpx.get(f"{web.url}{big['status_url']}/image", timeout=60)).status_code != 200:
        assert image.status_code == 409 and time.monotonic() < deadline, image.text
        time.sleep(0.2)
    done = store.mosaic(big["id"])
    assert done is not None and done.worker == survivor.hostname and done.error is None
    assert done.state == "ready" and len(image.content) == done.result["bytes"]
    with Image.open(io.BytesIO(image.content)) as picture:
        picture.load()  # the whole file decodes
        assert picture.size == (done.result["width"], done.result["height"])

    # Nothing else was lost: the session still takes mosaics, on the surviving worker.
    small = post_mosaic(web, session["id"], corpus / "covers" / "mate-LadyBird.jpg", cols=20, tile_size=8)
    assert wait_for(lambda: get(web, small["status_url"]), until={"ready", "failed"})["state"] == "ready"


def test_sigterm_lets_the_running_job_finish(cluster: Cluster, corpus: Path, photo_tiles: list[Path]) -> None:
    web = cluster.add_web()
    worker = cluster.add_worker("w1")
    session = post_session(web, photo_tiles[:40])
    assert wait_for(lambda: get(web, session["status_url"]), until={"ready", "failed"})["state"] == "ready"
    big = post_mosaic(web, session["id"], corpus / "covers" / "mate-Dune.jpg", cols=90, tile_size=96)
    store = records(cluster)
    deadline = time.monotonic() + 60
    while store.mosaic(big["id"]).state != "rendering":  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert worker.proc is not None
    worker.stop()  # SIGTERM: a warm shutdown
    assert worker.proc.returncode == 0
    done = store.mosaic(big["id"])
    assert done is not None and done.state == "ready" and done.worker == worker.hostname, done


def test_readyz_names_the_backend_that_is_down(tmp_path: Path) -> None:
    closed = f"redis://127.0.0.1:{_closed_port()}/0"
    settings = Settings(data_dir=tmp_path / "data", broker_url=closed, s3_bucket=None)
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200  # alive, but
        response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["storage"] == "ok" and checks["records"] != "ok" and checks["jobs"] != "ok", checks


def _closed_port() -> int:
    return free_port()  # nothing listens there once the probe socket is closed
