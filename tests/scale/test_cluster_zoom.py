"""The zoom viewer, share links and animations in a cluster: made by a worker, served by a web
process that made none of it, each process with a data folder of its own."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import pytest
import redis

from app.engine.pyramid import DziLayout
from app.jobs.redis_backend import RedisZoomRecords, connect
from app.object_store import ObjectStore
from tests.scale.conftest import Cluster
from tests.web.conftest import wait_for
from tests.web.test_restart import get, post_mosaic, post_session
from tests.web.test_zoom_api import read_mp4, read_png

pytestmark = [pytest.mark.scale, pytest.mark.slow]


def poll(fetch: Any, done: Any, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not done(record := fetch()):
        assert time.monotonic() < deadline, f"gave up waiting: {record}"
        time.sleep(0.1)
    return record  # type: ignore[no-any-return]


def test_viewer_share_link_and_animation_made_by_a_worker_served_by_the_other_web_process(
    cluster: Cluster, corpus: Path, photo_tiles: list[Path], tmp_path: Path
) -> None:
    web_a = cluster.add_web(TESSERA_PRESIGNED_DOWNLOADS="true")
    web_b = cluster.add_web()
    # Renders and zoom jobs on queues of their own: one worker takes only each.
    renderer = cluster.add_worker("wr", TESSERA_WORKER_QUEUES="tessera-index,tessera-render")
    zoomer = cluster.add_worker("wz", TESSERA_WORKER_QUEUES="tessera-zoom")

    session = post_session(web_a, photo_tiles[:40])
    assert wait_for(lambda: get(web_b, session["status_url"]), until={"ready", "failed"})["state"] == "ready"
    cover = corpus / "covers" / "mate-LadyBird.jpg"
    # nearest-first (no repetition rules): it uses only some of the 40 photos, so the check below
    # that the zoom worker fetched only the photos it draws from can tell them from all uploads
    posted = post_mosaic(
        web_a, session["id"], cover, cols=40, tile_size=16, format="png", max_uses=0, min_distance=0
    )
    mosaic = poll(lambda: get(web_b, posted["status_url"]), lambda m: m["dzi_url"] or m["state"] == "failed")
    assert mosaic["state"] == "ready" and mosaic["pyramid"]["state"] == "ready", mosaic
    image = read_png(httpx.get(f"{web_b.url}{mosaic['image_url']}", timeout=30).content)

    # The descriptor and a tile of the render's level, through web B, which built none of it.
    descriptor = httpx.get(f"{web_b.url}{mosaic['dzi_url']}", timeout=30)
    assert descriptor.status_code == 200 and "xml" in descriptor.headers["content-type"]
    layout = DziLayout.from_descriptor(descriptor.text)
    depth = layout.levels - 11  # the levels below the render (640 x 400: level 10), from the photos
    assert depth >= 1 and (layout.width, layout.height) == (640 << depth, 400 << depth)
    files = mosaic["dzi_url"].removesuffix(".dzi") + "_files"
    deepest = layout.max_level - depth  # the render's level: files the zoom worker published
    cols, rows = layout.tile_counts(deepest)
    tile = httpx.get(f"{web_b.url}{files}/{deepest}/{cols - 1}_{rows - 1}.png", timeout=30)
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/png"
    x0, y0, x1, y1 = layout.tile_box(deepest, cols - 1, rows - 1)
    np.testing.assert_array_equal(read_png(tile.content), image[y0:y1, x0:x1])
    assert httpx.get(f"{web_b.url}{files}/{deepest}/{cols}_0.png", timeout=30).status_code == 404
    # Web B fetched that one tile from the bucket, not the whole pyramid.
    cache = web_b.data_dir / "sessions" / session["id"] / "mosaics" / mosaic["id"] / "dzi" / "mosaic_files"
    fetched = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file())
    assert fetched == [f"{deepest}/{cols - 1}_{rows - 1}.png"]
    # A tile of the deepest level: web B draws it from the photos, which it fetches from the bucket.
    photo_tile = httpx.get(f"{web_b.url}{files}/{layout.max_level}/3_2.png", timeout=60)
    assert photo_tile.status_code == 200 and photo_tile.headers["content-type"] == "image/png"
    x0, y0, x1, y1 = layout.tile_box(layout.max_level, 3, 2)
    assert read_png(photo_tile.content).shape == (y1 - y0, x1 - x0, 3)

    # The share link, through web B; its image is never a redirect (the key names the session).
    viewer = mosaic["viewer_url"]
    page = httpx.get(f"{web_b.url}{viewer}", timeout=30)
    assert page.status_code == 200 and f"{viewer}/mosaic.dzi" in page.text
    assert httpx.get(f"{web_b.url}{viewer}/mosaic.dzi", timeout=30).text == descriptor.text
    shared_tile = httpx.get(f"{web_b.url}{viewer}/mosaic_files/{deepest}/0_0.png", timeout=30)
    x0, y0, x1, y1 = layout.tile_box(deepest, 0, 0)
    np.testing.assert_array_equal(read_png(shared_tile.content), image[y0:y1, x0:x1])
    for web in (web_a, web_b):
        shared_image = httpx.get(f"{web.url}{viewer}/image", timeout=30)
        assert shared_image.status_code == 200 and np.array_equal(read_png(shared_image.content), image)

    # An animation asked for through web A, rendered by the zoom worker, downloaded through web B.
    response = httpx.post(
        f"{web_a.url}{mosaic['animations_url']}",
        json={"kind": "zoom", "format": "mp4", "seconds": 1, "width": 320, "height": 240, "fps": 12,
              "col": 31, "row": 9},
        timeout=30,
    )  # fmt: skip
    assert response.status_code == 202, response.text
    animation = wait_for(lambda: get(web_b, response.json()["status_url"]), until={"ready", "failed"})
    assert animation["state"] == "ready", animation
    video = httpx.get(f"{web_b.url}{animation['url']}", timeout=30)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    frames, meta = read_mp4(video.content, tmp_path)
    assert meta["size"] == (320, 240) and len(frames) == 12 and abs(meta["duration"] - 1.0) < 0.01
    assert [a["id"] for a in get(web_b, mosaic["animations_url"])] == [animation["id"]]
    # Web A presigns downloads: a redirect straight to the bucket, same bytes.
    redirect = httpx.get(f"{web_a.url}{animation['url']}", params={"download": 1}, timeout=30)
    assert redirect.status_code == 307 and redirect.headers["location"].startswith(cluster.backends.s3_url)
    assert httpx.get(redirect.headers["location"], timeout=30).content == video.content

    # The zoom worker fetched what it draws from (the grid; the photos of the few cells shown
    # closer than their thumbnails, at the end of the zoom), not the mosaic's other files.
    cached = zoomer.data_dir / "sessions" / session["id"]
    made = cached / "mosaics" / mosaic["id"]
    assert (made / "grid.npy").is_file() and not (made / "mosaic.png").exists()
    fetched = len(list((cached / "uploads").iterdir()))
    assert 0 < fetched <= mosaic["report"]["distinct_tiles"] < 40, (
        fetched,
        mosaic["report"]["distinct_tiles"],
    )

    # Each job ran on the queue meant for it.
    zoom_log, render_log = zoomer.log.read_text(), renderer.log.read_text()
    assert f"pyramid job {mosaic['id']}" in zoom_log and f"animation job {animation['id']}" in zoom_log
    assert f"render job {mosaic['id']}" in render_log and "pyramid job" not in render_log

    # Deleting the session through web B removes the zoom records, the share link and the files.
    client = connect(cluster.backends.redis_url)
    assert RedisZoomRecords(client).pyramid_by_token(viewer.removeprefix("/v/")) is not None
    assert httpx.delete(f"{web_b.url}/api/sessions/{session['id']}", timeout=30).status_code == 204
    assert httpx.get(f"{web_a.url}{viewer}", timeout=30).status_code == 404
    assert _zoom_keys(client) == []
    store = ObjectStore(
        bucket=cluster.backends.bucket, endpoint_url=cluster.backends.s3_url, region="us-east-1",
        access_key="testing", secret_key="testing",
    )  # fmt: skip
    assert store.list(f"sessions/{session['id']}/") == []


def _zoom_keys(client: redis.Redis) -> list[str]:
    found = []
    for pattern in (
        "tessera:p:*",
        "tessera:a:*",
        "tessera:token:*",
        "tessera:*:zoom",
        "tessera:*:animations",
    ):
        found += [key.decode() for key in client.scan_iter(match=pattern)]
    found += [
        f"{name} {client.scard(name)}"
        for name in ("tessera:pyramids", "tessera:animations")
        if client.scard(name)
    ]
    return found
