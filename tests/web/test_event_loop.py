"""No request calls the records (SQLite, Redis), the files or the object store from the event loop.

The app's services are swapped for a stand-in that fails every use made in a thread running an
event loop, then the main routes run through the real app: upload, poll, add tiles, make a mosaic,
poll, download, the zoom pyramid and the share link, an animation, one-shot, readiness, delete.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.web.conftest import wait_for

COVER = "mate-LadyBird.jpg"


class OffTheLoop:
    """Stands in for a service object: any attribute read or call from a thread that runs an
    event loop is noted in ``misuses`` and fails; the service objects it hands out (records,
    storage, ...) are stand-ins too. ``uses`` counts what was used from worker threads."""

    def __init__(self, target: object, name: str, *, misuses: list[str], uses: list[str]) -> None:
        self._target = target
        self._name = name
        self._misuses = misuses
        self._uses = uses

    def __getattr__(self, attr: str) -> Any:
        where = f"{self._name}.{attr}"
        self._check(where)
        value = getattr(self._target, attr)
        if callable(value):
            return self._checked(value, where)
        if type(value).__module__.startswith("app."):
            return OffTheLoop(value, where, misuses=self._misuses, uses=self._uses)
        return value

    def _checked(self, method: Callable[..., Any], where: str) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            self._check(f"{where}()")
            return method(*args, **kwargs)

        return call

    def _check(self, where: str) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a worker thread: blocking here blocks no one else
            self._uses.append(where)
            return
        self._misuses.append(f"{where} in {threading.current_thread().name}")
        raise AssertionError(f"{where} used on the event loop")


def test_the_stand_in_catches_a_call_on_the_event_loop() -> None:
    misuses: list[str] = []
    uses: list[str] = []
    backend = OffTheLoop(SimpleNamespace(ping=lambda: "pong"), "records", misuses=misuses, uses=uses)

    async def on_the_loop() -> str:
        return str(backend.ping())

    async def in_a_thread() -> str:
        return str(await asyncio.to_thread(lambda: backend.ping()))

    with pytest.raises(AssertionError, match=r"records\.ping used on the event loop"):
        asyncio.run(on_the_loop())
    assert asyncio.run(in_a_thread()) == "pong"
    assert misuses == ["records.ping in MainThread"]
    assert uses == ["records.ping", "records.ping()"]


def files_of(paths: list[Path], field: str = "tiles") -> list[tuple[str, tuple[str, bytes, str]]]:
    return [(field, (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]


def poll(client: TestClient, url: str, *, until: set[str]) -> dict[str, Any]:
    def get() -> dict[str, Any]:
        response = client.get(url)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    return wait_for(get, until=until)


def test_the_routes_use_storage_only_off_the_event_loop(
    make_client: Callable[..., TestClient], corpus: Path, photo_tiles: list[Path]
) -> None:
    client = make_client(workers=1)
    services = client.app.state.services  # type: ignore[attr-defined]
    misuses: list[str] = []
    uses: list[str] = []
    # The lifespan and the sweeper keep the real services; the routes get the stand-in.
    client.app.state.services = OffTheLoop(services, "services", misuses=misuses, uses=uses)  # type: ignore[attr-defined]
    cover = corpus / "covers" / COVER
    cover_file = {"cover": (cover.name, cover.read_bytes(), "image/jpeg")}

    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    created = client.post("/api/sessions", files=files_of(photo_tiles[:24]))
    assert created.status_code == 202, created.text
    session = poll(client, created.json()["status_url"], until={"ready", "failed"})
    assert session["state"] == "ready", session
    added = client.post(f"/api/sessions/{session['id']}/tiles", files=files_of(photo_tiles[24:40]))
    assert added.status_code == 202, added.text
    session = poll(client, session["status_url"], until={"ready", "failed"})
    assert session["tiles_accepted"] == 40
    assert client.get(f"/s/{session['id']}").status_code == 200

    made = client.post(
        f"/api/sessions/{session['id']}/mosaics", files=cover_file, data={"cols": "12", "tile_size": "8"}
    )
    assert made.status_code == 202, made.text
    mosaic = poll(client, made.json()["status_url"], until={"ready", "failed"})
    assert mosaic["state"] == "ready", mosaic
    image = client.get(mosaic["image_url"], params={"download": 1})
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"

    pyramid = wait_for(
        lambda: client.get(mosaic["status_url"]).json()["pyramid"] or {"state": "not yet recorded"},
        until={"ready", "failed"},
    )
    assert pyramid["state"] == "ready", pyramid
    mosaic = client.get(mosaic["status_url"]).json()
    tile = f"mosaic_files/0/0_0.{pyramid['format']}"
    assert client.get(mosaic["dzi_url"]).status_code == 200
    assert client.get(mosaic["dzi_url"].replace("mosaic.dzi", tile)).status_code == 200
    for suffix in ("", "/mosaic.dzi", f"/{tile}", "/image"):
        assert client.get(mosaic["viewer_url"] + suffix).status_code == 200, suffix

    asked = client.post(
        mosaic["animations_url"],
        json={"kind": "zoom", "format": "gif", "seconds": 0.5, "width": 32, "height": 32, "fps": 4},
    )
    assert asked.status_code == 202, asked.text
    animation = poll(client, asked.json()["status_url"], until={"ready", "failed"})
    assert animation["state"] == "ready", animation
    assert client.get(mosaic["animations_url"]).status_code == 200
    assert client.get(animation["url"]).status_code == 200

    one_shot = client.post(
        "/api/mosaics",
        files=[*files_of([cover], "cover"), *files_of(photo_tiles[:12])],
        data={"cols": "8", "tile_size": "8"},
    )
    assert one_shot.status_code == 202, one_shot.text
    assert poll(client, one_shot.json()["status_url"], until={"ready", "failed"})["state"] == "ready"

    assert client.get("/api/sessions/" + "x" * 24).status_code == 404
    bad = client.post(f"/api/sessions/{session['id']}/mosaics", files=cover_file, data={"cols": "0"})
    assert bad.status_code == 422
    assert client.delete(session["status_url"]).status_code == 204
    assert client.get(session["status_url"]).status_code == 404

    assert misuses == []
    used = {use.split(".")[1] for use in uses}
    assert {"records", "zoom_records", "storage"} <= used, used  # the stand-in saw the backends used
