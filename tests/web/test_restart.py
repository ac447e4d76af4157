"""A real server killed with SIGKILL mid-job loses nothing: finished work stays, jobs resume."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx2 as httpx

from tests.web.conftest import LiveServer, wait_for


def post_session(server: LiveServer, paths: list[Path]) -> dict[str, Any]:
    files = [("tiles", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]
    response = httpx.post(f"{server.url}/api/sessions", files=files, timeout=60)
    assert response.status_code == 202, response.text
    return response.json()


def post_mosaic(server: LiveServer, session_id: str, cover: Path, **fields: Any) -> dict[str, Any]:
    response = httpx.post(
        f"{server.url}/api/sessions/{session_id}/mosaics",
        files={"cover": (cover.name, cover.read_bytes(), "image/jpeg")},
        data={k: str(v) for k, v in fields.items()},
        timeout=60,
    )
    assert response.status_code == 202, response.text
    return response.json()


def get(server: LiveServer, url: str) -> dict[str, Any]:
    response = httpx.get(f"{server.url}{url}", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_kill_and_restart_keeps_mosaics_and_resumes_jobs(
    tmp_path: Path, corpus: Path, photo_tiles: list[Path]
) -> None:
    data = tmp_path / "data"
    server = LiveServer(data, env={"TESSERA_DECODE_THREADS": "1"}).start()
    try:
        session = post_session(server, photo_tiles[:40])
        wait_for(lambda: get(server, session["status_url"]), until={"ready"})
        cover = corpus / "covers" / "mate-LadyBird.jpg"
        done = post_mosaic(server, session["id"], cover, cols=30, tile_size=16)
        done = wait_for(lambda: get(server, done["status_url"]), until={"ready"})
        before = httpx.get(f"{server.url}{done['image_url']}", timeout=10).content

        # Interrupt an index build and a render: kill the moment they are accepted.
        big = post_session(server, photo_tiles)
        pending = post_mosaic(
            server, session["id"], corpus / "covers" / "mate-Aqua.jpg", cols=200, tile_size=32
        )
        server.kill()
    finally:
        server.stop()

    with sqlite3.connect(data / "tessera.sqlite3") as db:  # what the crash left behind
        session_state = db.execute("SELECT state FROM sessions WHERE id = ?", (big["id"],)).fetchone()[0]
        mosaic_state = db.execute("SELECT state FROM mosaics WHERE id = ?", (pending["id"],)).fetchone()[0]
    assert session_state == "indexing" and mosaic_state in ("queued", "rendering")

    again = LiveServer(data).start()
    try:
        kept = get(again, done["status_url"])
        assert kept["state"] == "ready"
        assert httpx.get(f"{again.url}{kept['image_url']}", timeout=10).content == before

        resumed = wait_for(lambda: get(again, big["status_url"]), until={"ready", "failed"})
        assert resumed["state"] == "ready" and resumed["tiles_accepted"] == 300
        finished = wait_for(lambda: get(again, pending["status_url"]), until={"ready", "failed"}, timeout=120)
        assert finished["state"] == "ready", finished
        image = httpx.get(f"{again.url}{finished['image_url']}", timeout=30)
        assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"

        fresh = post_mosaic(again, big["id"], cover, cols=20, tile_size=8)
        assert (
            wait_for(lambda: get(again, fresh["status_url"]), until={"ready", "failed"})["state"] == "ready"
        )
        leftovers = [p for p in data.rglob("*.part")]
        assert not any(p.parent.name.startswith(pending["id"]) for p in leftovers)
    finally:
        again.stop()
