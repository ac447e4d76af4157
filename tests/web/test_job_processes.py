"""The long-lived job processes of a real server: a DELETE during a render kills the process
running it (no job process is left behind or added), and the next mosaic runs in a fresh one."""

from __future__ import annotations

import time
from pathlib import Path

import httpx2 as httpx

from tests.conftest import cell_error, read_image
from tests.web.conftest import LiveServer, wait_for
from tests.web.test_restart import get, post_mosaic, post_session


def _children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def _job_processes(server_pid: int) -> set[int]:
    """The job processes: the fork server's children (the fork server is the web process's
    child that has children)."""
    return {job for child in _children(server_pid) for job in _children(child)}


def test_delete_during_a_render_kills_its_process_and_the_next_mosaic_runs(
    tmp_path: Path, corpus: Path, photo_tiles: list[Path]
) -> None:
    server = LiveServer(tmp_path / "data", env={"TESSERA_WORKERS": "1"}).start()
    assert server.proc is not None
    try:
        session = post_session(server, photo_tiles[:60])
        assert (
            wait_for(lambda: get(server, session["status_url"]), until={"ready", "failed"})["state"]
            == "ready"
        )
        before = _job_processes(server.proc.pid)
        assert len(before) == 1, before  # the one worker's process, which ran the index build

        big = post_mosaic(server, session["id"], corpus / "covers" / "mate-Aqua.jpg", cols=300, tile_size=32)
        wait_for(lambda: get(server, big["status_url"]), until={"rendering"}, timeout=60)
        assert _job_processes(server.proc.pid) == before  # the same process took the render
        started = time.monotonic()
        assert httpx.delete(f"{server.url}{big['status_url']}", timeout=30).status_code == 204
        assert time.monotonic() - started < 5
        (old,) = before
        assert not Path(f"/proc/{old}").exists() or "zombie" in Path(f"/proc/{old}/status").read_text()
        folder = tmp_path / "data" / "sessions" / session["id"] / "mosaics" / big["id"]
        assert not folder.exists()

        cover = corpus / "covers" / "mate-LadyBird.jpg"
        small = post_mosaic(server, session["id"], cover, cols=30, tile_size=16)
        done = wait_for(lambda: get(server, small["status_url"]), until={"ready", "failed"}, timeout=120)
        assert done["state"] == "ready", done
        after = _job_processes(server.proc.pid)
        assert len(after) == 1 and after != before  # a fresh process in the slot, no more
        picture = httpx.get(f"{server.url}{done['image_url']}", timeout=30)
        shown = tmp_path / "small.jpg"
        shown.write_bytes(picture.content)
        assert cell_error(read_image(cover, "RGB"), read_image(shown), 30, done["rows"]) < 15
    finally:
        server.stop()
