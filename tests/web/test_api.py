"""The REST API end to end on real corpus photos: sessions, mosaics, errors."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.conftest import cell_error, read_image
from tests.web.conftest import wait_for

ODD_REJECTED = {"truncated.jpg", "text_named.jpg", "empty.jpg", "bomb_30000x30000.png"}


def files_of(paths: list[Path], field: str = "tiles") -> list[tuple[str, tuple[str, bytes, str]]]:
    return [(field, (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]


def session_of(client: TestClient, session_id: str) -> dict[str, Any]:
    response = client.get(f"/api/sessions/{session_id}")
    assert response.status_code == 200, response.text
    return response.json()


def ready_session(client: TestClient, paths: list[Path]) -> dict[str, Any]:
    created = client.post("/api/sessions", files=files_of(paths))
    assert created.status_code == 202, created.text
    return wait_for(lambda: session_of(client, created.json()["id"]), until={"ready", "failed"})


def make(
    client: TestClient, session_id: str, cover: Path, *, timeout: float = 90, **fields: Any
) -> dict[str, Any]:
    response = client.post(
        f"/api/sessions/{session_id}/mosaics",
        files={"cover": (cover.name, cover.read_bytes(), "image/jpeg")},
        data={k: str(v) for k, v in fields.items()},
    )
    assert response.status_code == 202, response.text
    record = response.json()
    return wait_for(
        lambda: client.get(record["status_url"]).json(), until={"ready", "failed"}, timeout=timeout
    )


def test_full_flow_two_covers_one_library(client: TestClient, corpus: Path, photo_tiles: list[Path]) -> None:
    odd = sorted((corpus / "odd").glob("*.*"))
    session = ready_session(client, photo_tiles + [p for p in odd if p.suffix != ".txt"])
    assert session["state"] == "ready"
    rejected = {r["file"]: r["reason"] for r in session["rejected"]}
    assert set(rejected) == ODD_REJECTED
    assert "truncated" in rejected["truncated.jpg"] and "too large" in rejected["bomb_30000x30000.png"]
    assert session["tiles_accepted"] == 300 + 14 - 4
    assert session["progress"]["done"] == session["progress"]["total"] == 314

    for cover_name, cols in [("mate-LadyBird.jpg", 40), ("skimage-astronaut.jpg", 30)]:
        cover = corpus / "covers" / cover_name
        mosaic = make(client, session["id"], cover, cols=cols, tile_size=16, format="png")
        assert mosaic["state"] == "ready", mosaic
        assert mosaic["width"] == cols * 16 and mosaic["height"] == mosaic["rows"] * 16
        assert mosaic["report"]["distinct_tiles"] > 5
        image = client.get(mosaic["image_url"], params={"download": 1})
        assert image.status_code == 200
        assert image.headers["content-type"] == "image/png"
        assert "attachment" in image.headers["content-disposition"]
        assert mosaic["download_name"] in image.headers["content-disposition"]
        picture = Image.open(io.BytesIO(image.content))
        assert picture.size == (mosaic["width"], mosaic["height"])
        error = cell_error(read_image(cover, "RGB"), picture, cols, mosaic["rows"])
        assert error < 12, f"{cover_name}: mean CIEDE2000 per cell {error:.1f}"
    listed = session_of(client, session["id"])["mosaics"]
    assert [m["cover_name"] for m in listed] == ["mate-LadyBird.jpg", "skimage-astronaut.jpg"]


def test_adding_tiles_reindexes(client: TestClient, photo_tiles: list[Path]) -> None:
    session = ready_session(client, photo_tiles[:20])
    assert session["tiles_accepted"] == 20
    added = client.post(f"/api/sessions/{session['id']}/tiles", files=files_of(photo_tiles[20:50]))
    assert added.status_code == 202
    again = wait_for(lambda: session_of(client, session["id"]), until={"ready", "failed"})
    assert again["tiles_accepted"] == 50


def test_more_than_a_thousand_files_in_one_request(client: TestClient) -> None:
    rng = np.random.default_rng(5)
    files = []
    for i in range(1200):
        buf = io.BytesIO()
        Image.fromarray(np.full((8, 8, 3), rng.integers(0, 256, 3), dtype=np.uint8)).save(buf, "PNG")
        files.append(("tiles", (f"c{i:04d}.png", buf.getvalue(), "image/png")))
    created = client.post("/api/sessions", files=files)
    assert created.status_code == 202, created.text
    session = wait_for(lambda: session_of(client, created.json()["id"]), until={"ready", "failed"})
    assert session["tiles_accepted"] == 1200


def test_zip_archives_are_unpacked_safely(client: TestClient, corpus: Path, photo_tiles: list[Path]) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in photo_tiles[:10]:
            zf.write(p, f"holiday/{p.name}")
        zf.writestr("../../escape.jpg", photo_tiles[10].read_bytes())
        zf.writestr("notes.txt", "not a photo")
        zf.writestr("inner.zip", b"PK\x03\x04 nested")
        zf.writestr("__MACOSX/._photo.jpg", b"resource fork")
    created = client.post(
        "/api/sessions", files=[("tiles", ("photos.zip", buf.getvalue(), "application/zip"))]
    )
    assert created.status_code == 202
    session = wait_for(lambda: session_of(client, created.json()["id"]), until={"ready", "failed"})
    assert session["tiles_accepted"] == 11  # ten photos, and the traversal-named one stored safely
    rejected = {r["file"]: r["reason"] for r in session["rejected"]}
    assert rejected == {
        "photos.zip/notes.txt": rejected["photos.zip/notes.txt"],
        "photos.zip/inner.zip": "nested archives are not unpacked",
    }
    assert "not a supported image" in rejected["photos.zip/notes.txt"]
    data_dir: Path = client.app.state.services.settings.data_dir  # type: ignore[attr-defined]
    assert not list(data_dir.parent.rglob("escape.jpg"))


def test_one_shot_mosaic(client: TestClient, corpus: Path, photo_tiles: list[Path]) -> None:
    cover = corpus / "covers" / "mate-Dune.jpg"
    response = client.post(
        "/api/mosaics",
        files=[("cover", (cover.name, cover.read_bytes(), "image/jpeg")), *files_of(photo_tiles[:120])],
        data={"cols": "24", "tile_size": "12", "format": "webp", "dpi": "600"},
    )
    assert response.status_code == 202, response.text
    mosaic = wait_for(lambda: client.get(response.json()["status_url"]).json(), until={"ready", "failed"})
    assert mosaic["state"] == "ready", mosaic
    image = client.get(mosaic["image_url"])
    assert image.headers["content-type"] == "image/webp"
    with Image.open(io.BytesIO(image.content)) as im:
        assert im.size == (24 * 12, mosaic["rows"] * 12)
        assert im.getexif()[282] == 600  # WebP carries the dpi in EXIF
    width_in, height_in = 24 * 12 / 600, mosaic["rows"] * 12 / 600
    assert mosaic["report"]["print"] == {
        "dpi": 600, "width_cm": round(width_in * 2.54, 1), "height_cm": round(height_in * 2.54, 1),
        "width_in": round(width_in, 2), "height_in": round(height_in, 2),
    }  # fmt: skip


def test_delete_removes_everything(client: TestClient, corpus: Path, photo_tiles: list[Path]) -> None:
    session = ready_session(client, photo_tiles[:10])
    make(client, session["id"], corpus / "covers" / "mate-Dune.jpg", cols=8, tile_size=8)
    folder = client.app.state.services.storage.session_dir(session["id"])  # type: ignore[attr-defined]
    assert folder.exists()
    assert client.delete(f"/api/sessions/{session['id']}").status_code == 204
    assert client.get(f"/api/sessions/{session['id']}").status_code == 404
    assert not folder.exists()


def test_delete_one_mosaic(client: TestClient, corpus: Path, photo_tiles: list[Path]) -> None:
    session = ready_session(client, photo_tiles[:10])
    first = make(client, session["id"], corpus / "covers" / "mate-Dune.jpg", cols=8, tile_size=8)
    second = make(client, session["id"], corpus / "covers" / "mate-LadyBird.jpg", cols=8, tile_size=8)
    storage = client.app.state.services.storage  # type: ignore[attr-defined]
    folder = storage.mosaic_dir(session["id"], first["id"])
    assert folder.exists()
    assert client.delete(first["status_url"]).status_code == 204
    assert not folder.exists() and storage.mosaic_dir(session["id"], second["id"]).exists()
    assert client.get(first["status_url"]).status_code == 404
    assert [m["id"] for m in session_of(client, session["id"])["mosaics"]] == [second["id"]]
    assert client.get(second["image_url"]).status_code == 200
    assert_error(client.delete(first["status_url"]), 404, field="mosaic_id")


def test_cover_is_served_for_before_and_after(
    client: TestClient, corpus: Path, photo_tiles: list[Path]
) -> None:
    session = ready_session(client, photo_tiles[:5])
    cover = corpus / "covers" / "mate-Dune.jpg"
    mosaic = make(client, session["id"], cover, cols=8, tile_size=8)
    response = client.get(mosaic["cover_url"])
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert response.content == cover.read_bytes()


HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def test_dead_links_get_a_friendly_page_and_the_api_keeps_json(client: TestClient) -> None:
    for url, title in (
        ("/s/" + "x" * 32, "This session no longer exists"),
        ("/s/not-an-id", "This session no longer exists"),
        ("/v/" + "t" * 32, "This share link no longer works"),
        ("/nowhere", "This page does not exist"),
    ):
        page = client.get(url, headers=HTML)
        assert page.status_code == 404, url
        assert page.headers["content-type"].startswith("text/html"), url
        assert f'<h1 id="error-title">{title}</h1>' in page.text and 'href="/"' in page.text
    for url in ("/api/sessions/" + "x" * 32, "/v/" + "t" * 32 + "/mosaic.dzi"):
        response = client.get(url, headers=HTML if url.startswith("/api/") else {})
        assert response.status_code == 404 and response.json()["detail"], url
    assert client.get("/v/" + "t" * 32).json()["field"] == "token"  # no Accept: text/html, JSON


# errors -------------------------------------------------------------------------------------------


def assert_error(response: Any, status: int, *, field: str | None = None, file: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    if field is not None:
        assert body["field"] == field, body
    if file is not None:
        assert body["file"] == file, body


def test_unknown_ids_are_404(client: TestClient, photo_tiles: list[Path]) -> None:
    assert_error(client.get("/api/sessions/" + "x" * 32), 404, field="session_id")
    session = ready_session(client, photo_tiles[:3])
    assert_error(client.get(f"/api/sessions/{session['id']}/mosaics/" + "y" * 32), 404, field="mosaic_id")
    assert_error(client.get(f"/api/sessions/{session['id']}/mosaics/" + "y" * 32 + "/image"), 404)
    assert_error(client.delete("/api/sessions/" + "z" * 32), 404)


def test_mosaic_before_the_index_is_ready_is_409(
    client: TestClient, corpus: Path, photo_tiles: list[Path]
) -> None:
    session = ready_session(client, photo_tiles[:3])
    client.app.state.services.records.update_session(session["id"], state="indexing")  # type: ignore[attr-defined]
    cover = corpus / "covers" / "mate-Dune.jpg"
    response = client.post(
        f"/api/sessions/{session['id']}/mosaics", files={"cover": (cover.name, cover.read_bytes())}
    )
    assert_error(response, 409, field="session_id")


def test_library_of_only_bad_files_fails_and_refuses_mosaics(client: TestClient, corpus: Path) -> None:
    session = ready_session(client, [corpus / "odd" / "empty.jpg", corpus / "odd" / "text_named.jpg"])
    assert session["state"] == "failed" and "no usable tiles" in session["error"]
    cover = corpus / "covers" / "mate-Dune.jpg"
    response = client.post(
        f"/api/sessions/{session['id']}/mosaics", files={"cover": (cover.name, cover.read_bytes())}
    )
    assert_error(response, 409)


@pytest.mark.parametrize(
    ("cover_name", "status"),
    [("text_named.jpg", 415), ("empty.jpg", 415), ("bomb_30000x30000.png", 413)],
)
def test_bad_covers_are_refused_naming_the_file(
    client: TestClient, corpus: Path, photo_tiles: list[Path], cover_name: str, status: int
) -> None:
    session = ready_session(client, photo_tiles[:3])
    cover = corpus / "odd" / cover_name
    response = client.post(
        f"/api/sessions/{session['id']}/mosaics", files={"cover": (cover.name, cover.read_bytes())}
    )
    assert_error(response, status, file=cover_name)


def test_truncated_cover_fails_its_mosaic_with_the_reason(
    client: TestClient, corpus: Path, photo_tiles: list[Path]
) -> None:
    session = ready_session(client, photo_tiles[:3])
    mosaic = make(client, session["id"], corpus / "odd" / "truncated.jpg", cols=10, tile_size=8)
    assert mosaic["state"] == "failed"
    assert "truncated.jpg" in mosaic["error"] and "truncated" in mosaic["error"]
    assert mosaic["image_url"] is None


@pytest.mark.parametrize(
    ("fields", "status", "field"),
    [
        ({"cols": "0"}, 422, "cols"),
        ({"cols": "many"}, 422, "cols"),
        ({"cols": "5000"}, 422, "cols"),
        ({"tile_size": "2"}, 422, "tile_size"),
        ({"format": "gif"}, 422, "format"),
        ({"color_space": "hsv"}, 422, "color_space"),
        ({"aspect": "wide"}, 422, "aspect"),
        ({"aspect": "20:1"}, 422, "aspect"),
        ({"cols": "400", "tile_size": "512", "format": "webp"}, 413, "format"),
        ({"cols": "400", "tile_size": "512", "format": "png"}, 413, "cols"),
    ],
)
def test_bad_parameters_name_the_field(
    client: TestClient, corpus: Path, photo_tiles: list[Path], fields: dict[str, str], status: int, field: str
) -> None:
    session = ready_session(client, photo_tiles[:3])
    cover = corpus / "covers" / "mate-Dune.jpg"
    response = client.post(
        f"/api/sessions/{session['id']}/mosaics",
        files={"cover": (cover.name, cover.read_bytes())},
        data=fields,
    )
    assert_error(response, status, field=field)


def test_file_over_the_size_limit_is_413(make_client: Callable[..., TestClient], corpus: Path) -> None:
    client = make_client(max_file_bytes=100_000)
    big = corpus / "covers" / "mate-Aqua.jpg"
    assert big.stat().st_size > 100_000
    response = client.post("/api/sessions", files=files_of([big]))
    assert_error(response, 413, file="mate-Aqua.jpg")


def test_request_over_the_size_limit_is_413(
    make_client: Callable[..., TestClient], photo_tiles: list[Path]
) -> None:
    client = make_client(max_request_bytes=50_000)
    response = client.post("/api/sessions", files=files_of(photo_tiles[:30]))
    assert_error(response, 413)


def test_image_of_an_unfinished_mosaic_is_409(
    client: TestClient, corpus: Path, photo_tiles: list[Path]
) -> None:
    session = ready_session(client, photo_tiles[:3])
    mosaic = make(client, session["id"], corpus / "covers" / "mate-Dune.jpg", cols=6, tile_size=8)
    services = client.app.state.services  # type: ignore[attr-defined]
    services.records.update_mosaic(mosaic["id"], state="rendering")
    assert_error(client.get(f"{mosaic['status_url']}/image"), 409)


def test_no_tiles_at_all_is_422(client: TestClient) -> None:
    assert_error(client.post("/api/sessions", data={"x": "1"}), 422, field="tiles")


def test_the_record_says_which_rule_the_library_was_too_small_for(
    client: TestClient, corpus: Path, photo_tiles: list[Path]
) -> None:
    session = ready_session(client, photo_tiles[:10])
    cover = corpus / "covers" / "mate-LadyBird.jpg"
    made = make(client, session["id"], cover, cols=12, tile_size=8, max_uses=2, tint=0)
    assert made["state"] == "ready", made
    cells = 12 * made["rows"]
    [raised] = made["report"]["rules_raised"]
    assert raised["rule"] == "max_uses" and raised["asked"] == 2
    assert raised["used"] == made["report"]["max_uses"] == -(-cells // 10)
    assert raised["tiles_needed"] == -(-cells // 2)
    assert "10" in raised["reason"]
    fetched = client.get(f"/api/sessions/{session['id']}/mosaics/{made['id']}").json()
    assert fetched["report"]["rules_raised"] == made["report"]["rules_raised"]


def test_openapi_documents_the_endpoints(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in [
        "/api/sessions",
        "/api/sessions/{session_id}",
        "/api/sessions/{session_id}/tiles",
        "/api/sessions/{session_id}/mosaics",
        "/api/sessions/{session_id}/mosaics/{mosaic_id}",
        "/api/sessions/{session_id}/mosaics/{mosaic_id}/image",
        "/api/mosaics",
        "/healthz",
    ]:
        assert path in paths, path


def test_quality_options_reach_the_engine(client: TestClient, corpus: Path, photo_tiles: list[Path]) -> None:
    session = ready_session(client, photo_tiles[:100])
    cover = corpus / "covers" / "mate-LadyBird.jpg"
    capped = make(client, session["id"], cover, cols=12, tile_size=8, max_uses=2, min_distance=1, tint=0)
    assert capped["state"] == "ready", capped
    assert capped["params"]["max_uses"] == 2 and capped["params"]["tint"] == 0
    assert capped["report"]["max_uses"] <= 2
    assert capped["report"]["quality"]["adjacent_same"] == 0
    assert capped["report"]["rules_raised"] == []
    unique = make(client, session["id"], cover, cols=8, tile_size=8, unique="true", max_uses="")
    assert unique["report"]["distinct_tiles"] == 8 * unique["rows"]
    assert_error(
        client.post(
            f"/api/sessions/{session['id']}/mosaics",
            files={"cover": (cover.name, cover.read_bytes())},
            data={"tint": "150"},
        ),
        422,
        field="tint",
    )
