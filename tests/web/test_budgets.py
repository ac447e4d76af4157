"""Issue 17, point 3 (the part known at submit time): an animation over the pixel-frame budget is
refused before it starts, naming the limit; a setting raises it; one session cannot queue more
than its share of jobs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.web.budgets import active_jobs
from tests.web.conftest import wait_for

#: The issue's largest animation: 3840 x 3840 at 60 fps for 60 s (about 95 minutes of work).
HUGE = {"format": "mp4", "width": 3840, "height": 3840, "fps": 60, "seconds": 60, "kind": "zoom"}


def _ready_mosaic(client: TestClient, corpus: Path, photo_tiles: list[Path]) -> dict[str, Any]:
    files = [("tiles", (p.name, p.read_bytes(), "image/jpeg")) for p in photo_tiles[:20]]
    session = client.post("/api/sessions", files=files).json()
    wait_for(lambda: client.get(session["status_url"]).json(), until={"ready"})
    cover = corpus / "covers" / "mate-Dune.jpg"
    created = client.post(
        f"/api/sessions/{session['id']}/mosaics",
        files={"cover": (cover.name, cover.read_bytes(), "image/jpeg")},
        data={"cols": "16", "tile_size": "16"},
    ).json()
    return wait_for(lambda: client.get(created["status_url"]).json(), until={"ready"})


def _animations_url(mosaic: dict[str, Any]) -> str:
    return f"/api/sessions/{mosaic['session_id']}/mosaics/{mosaic['id']}/animations"


def test_an_animation_over_budget_is_refused_before_it_starts(
    make_client: Callable[..., TestClient], corpus: Path, photo_tiles: list[Path]
) -> None:
    client = make_client()
    mosaic = _ready_mosaic(client, corpus, photo_tiles)
    refused = client.post(_animations_url(mosaic), json=HUGE)
    assert refused.status_code == 422
    body = refused.json()
    assert "TESSERA_MAX_ANIMATION_PIXEL_FRAMES" in body["detail"] and body["field"] == "seconds"
    assert client.get(_animations_url(mosaic)).json() == []  # nothing was queued


def test_a_setting_raises_the_budget(
    make_client: Callable[..., TestClient], corpus: Path, photo_tiles: list[Path]
) -> None:
    small = {**HUGE, "format": "gif", "width": 64, "height": 64, "fps": 5, "seconds": 1}
    client = make_client(max_animation_pixel_frames=64 * 64 * 5 - 1)
    mosaic = _ready_mosaic(client, corpus, photo_tiles)
    assert client.post(_animations_url(mosaic), json=small).status_code == 422
    raised = make_client(max_animation_pixel_frames=64 * 64 * 5)
    mosaic = _ready_mosaic(raised, corpus, photo_tiles)
    assert raised.post(_animations_url(mosaic), json=small).status_code == 202


def test_one_session_cannot_queue_more_than_its_share(
    make_client: Callable[..., TestClient], corpus: Path, photo_tiles: list[Path]
) -> None:
    client = make_client(max_jobs_per_session=2, workers=1)
    mosaic = _ready_mosaic(client, corpus, photo_tiles)
    services = client.app.state.services  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while active_jobs(services, mosaic["session_id"]):  # the mosaic's own pyramid build, first
        assert time.monotonic() < deadline
        time.sleep(0.2)
    slow = {**HUGE, "format": "gif", "width": 320, "height": 320, "fps": 10, "seconds": 20}
    answers = [client.post(_animations_url(mosaic), json=slow) for _ in range(3)]
    assert [a.status_code for a in answers[:2]] == [202, 202]
    assert answers[2].status_code == 429
    assert "TESSERA_MAX_JOBS_PER_SESSION" in answers[2].json()["detail"]


@pytest.mark.parametrize(
    ("setting", "over", "form", "status"),
    [
        ("max_output_pixels", {"max_output_pixels": 1_000_000}, {"cols": "40", "tile_size": "32"}, 413),
        ("max_tiff_pixels", {"max_tiff_pixels": 1_000_000}, {"cols": "40", "tile_size": "32",
                                                              "format": "tiff"}, 413),
        ("max_rows", {"max_rows": 10}, {"cols": "40", "tile_size": "8"}, 422),
        ("max_cols", {"max_cols": 30}, {"cols": "40", "tile_size": "8"}, 422),
    ],
)  # fmt: skip
def test_a_render_over_its_budget_is_refused_before_it_is_queued(
    make_client: Callable[..., TestClient],
    corpus: Path,
    photo_tiles: list[Path],
    setting: str,
    over: dict[str, int],
    form: dict[str, str],
    status: int,
) -> None:
    """A render's cost (and its pyramid's) is its output pixels, rows and cols: over a limit, a
    4xx names the limit's setting and nothing is queued; the default setting lets it through."""
    cover = corpus / "covers" / "mate-Dune.jpg"  # 40 cols of 32 px: 1280 px wide, about 1.2 MP
    for client, expected in [(make_client(**over), status), (make_client(), 202)]:
        files = [("tiles", (p.name, p.read_bytes(), "image/jpeg")) for p in photo_tiles[:10]]
        session = client.post("/api/sessions", files=files).json()
        wait_for(lambda c=client, s=session: c.get(s["status_url"]).json(), until={"ready"})
        answer = client.post(
            f"/api/sessions/{session['id']}/mosaics",
            files={"cover": (cover.name, cover.read_bytes(), "image/jpeg")}, data=form,
        )  # fmt: skip
        assert answer.status_code == expected, answer.text
        if expected != 202:
            body = answer.json()
            assert f"TESSERA_{setting.upper()}" in body["detail"] and body["field"] == "cols", body
            assert client.get(session["status_url"]).json()["mosaics"] == []  # nothing queued
