"""Fair order between sessions over a real server: one session's queue of large renders does not
hold another session's small mosaic until it drains (issue 17)."""

from __future__ import annotations

from pathlib import Path

import httpx2 as httpx

from tests.conftest import cell_error, read_image
from tests.web.conftest import LiveServer, wait_for
from tests.web.test_restart import get, post_mosaic, post_session


def test_a_small_mosaic_does_not_wait_for_another_session_s_queue(
    tmp_path: Path, corpus: Path, photo_tiles: list[Path]
) -> None:
    # One worker, so the order is the dispatcher's alone.
    server = LiveServer(tmp_path / "data", env={"TESSERA_WORKERS": "1"}).start()
    try:
        a = post_session(server, photo_tiles[:60])
        b = post_session(server, photo_tiles[-60:])
        for session in (a, b):
            assert (
                wait_for(lambda s=session: get(server, s["status_url"]), until={"ready", "failed"})["state"]
                == "ready"
            )

        big = [
            post_mosaic(server, a["id"], corpus / "covers" / "mate-Aqua.jpg", cols=200, tile_size=32)
            for _ in range(3)
        ]
        # All of a's renders wait or run: none has finished before b asks.
        states = [get(server, m["status_url"])["state"] for m in big]
        assert states.count("queued") >= 2 and "ready" not in states, states

        cover = corpus / "covers" / "mate-LadyBird.jpg"
        small = post_mosaic(server, b["id"], cover, cols=30, tile_size=16)
        done = wait_for(lambda: get(server, small["status_url"]), until={"ready", "failed"}, timeout=180)
        assert done["state"] == "ready", done
        behind = [get(server, m["status_url"])["state"] for m in big]
        # b's render started as soon as a's first was done, not after the whole queue.
        assert behind[-1] in ("queued", "rendering"), behind
        assert behind.count("ready") <= 2, behind

        picture = httpx.get(f"{server.url}{done['image_url']}", timeout=30)
        assert picture.status_code == 200
        shown = tmp_path / "small.jpg"
        shown.write_bytes(picture.content)
        assert cell_error(read_image(cover, "RGB"), read_image(shown), 30, done["rows"]) < 15

        for m in big:  # a's queue still drains
            assert (
                wait_for(lambda m=m: get(server, m["status_url"]), until={"ready", "failed"}, timeout=300)[
                    "state"
                ]
                == "ready"
            )
    finally:
        server.stop()
