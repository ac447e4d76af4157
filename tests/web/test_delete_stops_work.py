"""Issue 17, point 3: DELETE of a session (or of one mosaic) stops its work within seconds, ffmpeg
included, and leaves nothing of it on disk, whether its job was queued, indexing, rendering,
building a pyramid or encoding video; the space is given back at once (point 4).

The jobs run as a user's server runs them: each in a process of its own (started from the fork
server of this test process). What is left afterwards is read from /proc.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.storage import folder_size
from tests.web.conftest import wait_for
from tests.web.test_api import files_of, make, ready_session
from tests.web.test_robustness import post_cover

#: How long the work of a deleted session may go on.
STOP_SECONDS = 5.0
#: How long afterwards nothing of it may come back on disk.
WATCH_SECONDS = 3.0
#: A video long enough to be still encoding when it is deleted (600 frames).
LONG_VIDEO = {"kind": "zoom", "format": "mp4", "width": 640, "height": 640, "fps": 30, "seconds": 20}


def _processes() -> dict[int, tuple[int, str]]:
    """Every live process: pid -> (parent pid, command line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if state != "Z":
            found[int(entry.name)] = (int(ppid), cmdline)
    return found


def job_processes(waiting: frozenset[int] | set[int] = frozenset()) -> list[str]:
    """The command lines of every process the jobs of this test process run in, and of their
    children: the descendants of its fork server (ffmpeg, decode pools, the job processes), but
    for the long-lived job processes in ``waiting`` and fork servers with no child (idle, holding
    no one's work)."""
    procs = _processes()
    parents = {ppid for ppid, _ in procs.values()}

    def idle(pid: int) -> bool:  # a job process's own fork server, with nothing forked from it now
        return "forkserver" in procs[pid][1] and pid not in parents

    me = os.getpid()
    servers = {pid for pid, (ppid, cmd) in procs.items() if ppid == me and "forkserver" in cmd}
    found, frontier = [], set(servers)
    while frontier:
        children = {pid for pid, (ppid, _) in procs.items() if ppid in frontier}
        found += [procs[pid][1] or f"pid {pid}" for pid in children if pid not in waiting and not idle(pid)]
        frontier = children
    return found


def _ffmpeg_running() -> bool:
    return any("ffmpeg" in cmd for cmd in job_processes())


def _until(check: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.05)


def _assert_deleted_and_gone(client: TestClient, url: str, folder: Path) -> None:
    """DELETE ``url``; its jobs' processes end within :data:`STOP_SECONDS` and ``folder`` is
    gone, and stays gone for :data:`WATCH_SECONDS` (no job re-creates it)."""
    started = time.monotonic()
    assert client.delete(url).status_code == 204
    dispatcher = _services(client).dispatcher
    while left := job_processes(dispatcher.waiting_processes()):
        assert time.monotonic() - started < STOP_SECONDS, f"still running after the DELETE: {left}"
        time.sleep(0.05)
    watch_until = time.monotonic() + WATCH_SECONDS
    while time.monotonic() < watch_until:
        assert not folder.exists(), f"{folder} is back: {sorted(p.name for p in folder.rglob('*'))}"
        time.sleep(0.05)
    assert client.get(url).status_code == 404


def _services(client: TestClient) -> Any:
    return client.app.state.services  # type: ignore[attr-defined]


def _big_mosaic(client: TestClient, session_id: str, corpus: Path) -> dict[str, Any]:
    """A mosaic that takes seconds to render and to cut into a pyramid."""
    cover = corpus / "covers" / "mate-Aqua.jpg"
    response = post_cover(client, session_id, cover.name, cover.read_bytes(), cols="300", tile_size="40")
    assert response.status_code == 202, response.text
    return dict(response.json())


def test_delete_of_a_session_whose_index_build_is_queued(
    make_client: Callable[..., TestClient], corpus: Path, photo_tiles: list[Path]
) -> None:
    client = make_client(workers=1)
    services = _services(client)
    first = ready_session(client, photo_tiles[:80])
    busy = _big_mosaic(client, first["id"], corpus)  # its render holds the one worker for seconds
    _until(lambda: client.get(busy["status_url"]).json()["state"] == "rendering", "the render run")
    waiting = client.post("/api/sessions", files=files_of(photo_tiles[:20])).json()
    assert ("index", waiting["id"]) not in services.dispatcher.running()
    folder = services.storage.session_dir(waiting["id"])
    assert folder.exists()
    assert client.delete(waiting["status_url"]).status_code == 204
    assert not folder.exists()
    wait_for(lambda: client.get(busy["status_url"]).json(), until={"ready"}, timeout=180)
    assert not folder.exists(), "the queued build ran after its session was deleted"
    _assert_deleted_and_gone(client, first["status_url"], services.storage.session_dir(first["id"]))


def test_delete_of_a_session_while_it_is_indexed(
    make_client: Callable[..., TestClient], photo_tiles: list[Path]
) -> None:
    client = make_client(decode_threads=1)  # one decoding thread: the build takes seconds on any machine
    session = client.post("/api/sessions", files=files_of(photo_tiles * 12)).json()

    def decoding() -> bool:
        record = client.get(session["status_url"]).json()
        assert record["state"] == "indexing", f"the build ended before it could be deleted: {record}"
        return 0 < record["progress"]["done"] < record["progress"]["total"]

    _until(decoding, "the build decode its tiles")
    _assert_deleted_and_gone(
        client, session["status_url"], _services(client).storage.session_dir(session["id"])
    )


@pytest.mark.parametrize("target", ["session", "mosaic"])
def test_delete_while_a_mosaic_renders(
    make_client: Callable[..., TestClient], corpus: Path, photo_tiles: list[Path], target: str
) -> None:
    client = make_client()
    session = ready_session(client, photo_tiles[:80])
    mosaic = _big_mosaic(client, session["id"], corpus)
    _until(lambda: client.get(mosaic["status_url"]).json()["state"] == "rendering", "the render run")
    _delete_target(client, session, mosaic, target)


@pytest.mark.parametrize("target", ["session", "mosaic"])
def test_delete_while_a_pyramid_is_built(
    make_client: Callable[..., TestClient], corpus: Path, photo_tiles: list[Path], target: str
) -> None:
    client = make_client()
    session = ready_session(client, photo_tiles[:80])
    mosaic = _big_mosaic(client, session["id"], corpus)
    _until(
        lambda: (client.get(mosaic["status_url"]).json().get("pyramid") or {}).get("state") == "building",
        "the pyramid build run",
    )
    _delete_target(client, session, mosaic, target)


@pytest.mark.parametrize("target", ["session", "mosaic"])
def test_delete_while_a_video_is_encoded(
    make_client: Callable[..., TestClient], corpus: Path, photo_tiles: list[Path], target: str
) -> None:
    client = make_client()
    session = ready_session(client, photo_tiles[:40])
    mosaic = make(client, session["id"], corpus / "covers" / "mate-Dune.jpg", cols=24, tile_size=16)
    _until(lambda: client.get(mosaic["status_url"]).json()["pyramid"]["state"] == "ready", "the pyramid")
    assert client.post(mosaic["animations_url"], json=LONG_VIDEO).status_code == 202
    _until(_ffmpeg_running, "ffmpeg encode the video")
    _delete_target(client, session, mosaic, target)
    assert not _ffmpeg_running()


def _delete_target(client: TestClient, session: dict[str, Any], mosaic: dict[str, Any], target: str) -> None:
    storage = _services(client).storage
    if target == "session":
        _assert_deleted_and_gone(client, session["status_url"], storage.session_dir(session["id"]))
        return
    _assert_deleted_and_gone(client, mosaic["status_url"], storage.mosaic_dir(session["id"], mosaic["id"]))
    left = [p for p in storage.session_dir(session["id"]).rglob("*") if p.name.endswith(".part")]
    assert not left, f"half-written files left: {left}"
    assert client.get(session["status_url"]).json()["state"] == "ready"  # the rest of the session stays


def test_deleting_a_mosaic_gives_its_space_back_at_once(
    make_client: Callable[..., TestClient], corpus: Path, photo_tiles: list[Path]
) -> None:
    client = make_client()
    storage = _services(client).storage
    session = ready_session(client, photo_tiles[:40])
    mosaic = make(client, session["id"], corpus / "covers" / "mate-Dune.jpg", cols=60, tile_size=32)
    _until(lambda: client.get(mosaic["status_url"]).json()["pyramid"]["state"] == "ready", "the pyramid")
    before = storage.measure()
    size = folder_size(storage.mosaic_dir(session["id"], mosaic["id"]))
    assert size > 1_000_000
    assert client.delete(mosaic["status_url"]).status_code == 204
    assert storage.used_bytes <= before - size  # not at the next measure


@pytest.mark.parametrize("request_kind", ["tiles", "mosaic"])
def test_a_delete_during_an_upload_leaves_nothing_of_it(
    make_client: Callable[..., TestClient],
    corpus: Path,
    photo_tiles: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    request_kind: str,
) -> None:
    """A DELETE that comes while a request still writes its files into the session (more
    tiles, a cover): the request answers 404 and what it wrote goes too."""
    client = make_client()
    services = _services(client)
    session = ready_session(client, photo_tiles[:10])
    folder = services.storage.session_dir(session["id"])

    def deleted_first(write: Callable[..., Any]) -> Callable[..., Any]:
        def write_after_a_delete(*args: Any, **kwargs: Any) -> Any:
            services.delete_session(session["id"])  # the DELETE, handled while this request runs
            return write(*args, **kwargs)

        return write_after_a_delete

    if request_kind == "tiles":
        monkeypatch.setattr(services.libraries, "add_upload", deleted_first(services.libraries.add_upload))
        answer = client.post(f"/api/sessions/{session['id']}/tiles", files=files_of(photo_tiles[10:12]))
    else:
        import app.web.routes.api as api

        monkeypatch.setattr(api, "write_stream_atomically", deleted_first(api.write_stream_atomically))
        cover = corpus / "covers" / "mate-Dune.jpg"
        answer = client.post(
            f"/api/sessions/{session['id']}/mosaics",
            files={"cover": (cover.name, cover.read_bytes(), "image/jpeg")}, data={"cols": "8"},
        )  # fmt: skip
    assert answer.status_code == 404, answer.text
    assert not folder.exists(), sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    assert client.get(session["status_url"]).status_code == 404
