"""Bad input gets a clear 4xx naming the file; limits hold; nothing leaks; jobs stay bounded."""

from __future__ import annotations

import io
import os
import statistics
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from app.jobs.sweeper import sweep
from tests.web.conftest import LiveServer, wait_for
from tests.web.test_api import assert_error, files_of, make, ready_session, session_of

# What odd/README.txt says a correct program does with each file used as a cover.
COVER_ACCEPTED = [
    "exif_orientation_6.jpg", "cmyk.jpg", "grayscale.png", "gray16.png", "rgb16.png",
    "palette_transparent.png", "animated.gif", "progressive.jpg", "tiny_1x1.png", "photo.webp",
]  # fmt: skip
COVER_REFUSED = {"text_named.jpg": 415, "empty.jpg": 415, "bomb_30000x30000.png": 413}
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64"/></svg>'


@pytest.fixture
def library(client: TestClient, photo_tiles: list[Path]) -> dict[str, Any]:
    return ready_session(client, photo_tiles[:40])


def post_cover(client: TestClient, session_id: str, name: str, data: bytes, **fields: str) -> Any:
    return client.post(f"/api/sessions/{session_id}/mosaics", files={"cover": (name, data)}, data=fields)


@pytest.mark.parametrize("name", COVER_ACCEPTED)
def test_every_usable_odd_file_makes_a_mosaic_as_cover(
    client: TestClient, library: dict[str, Any], corpus: Path, name: str
) -> None:
    mosaic = make(client, library["id"], corpus / "odd" / name, cols=12, tile_size=8)
    assert mosaic["state"] == "ready", mosaic
    width, height = (640, 427) if name == "exif_orientation_6.jpg" else (None, None)
    if width:  # the rotated photo is treated as landscape
        assert mosaic["rows"] == round(12 * height / width)


@pytest.mark.parametrize(("name", "status"), sorted(COVER_REFUSED.items()))
def test_every_unusable_odd_file_is_refused_as_cover(
    client: TestClient, library: dict[str, Any], corpus: Path, name: str, status: int
) -> None:
    assert_error(
        post_cover(client, library["id"], name, (corpus / "odd" / name).read_bytes()), status, file=name
    )


def test_truncated_cover_fails_with_the_reason_and_never_makes_garbage(
    client: TestClient, library: dict[str, Any], corpus: Path
) -> None:
    mosaic = make(client, library["id"], corpus / "odd" / "truncated.jpg", cols=12, tile_size=8)
    assert mosaic["state"] == "failed" and "truncated.jpg" in mosaic["error"]
    assert client.get(f"{mosaic['status_url']}/image").status_code == 409


def test_svg_is_refused_as_tile_and_as_cover(
    client: TestClient, library: dict[str, Any], photo_tiles: list[Path]
) -> None:
    assert_error(post_cover(client, library["id"], "logo.svg", SVG), 415, file="logo.svg")
    created = client.post(
        "/api/sessions",
        files=[("tiles", ("logo.svg", SVG, "image/svg+xml")), *files_of(photo_tiles[:2])],
    )
    session = wait_for(lambda: session_of(client, created.json()["id"]), until={"ready", "failed"})
    assert session["tiles_accepted"] == 2
    assert [r["file"] for r in session["rejected"]] == ["logo.svg"]


def test_content_decides_not_the_extension(client: TestClient, library: dict[str, Any], corpus: Path) -> None:
    png_named_jpg = (corpus / "odd" / "grayscale.png").read_bytes()
    response = post_cover(client, library["id"], "really-a-png.jpg", png_named_jpg, cols="8", tile_size="8")
    assert response.status_code == 202
    jpeg_named_txt = (corpus / "covers" / "mate-Dune.jpg").read_bytes()
    assert post_cover(client, library["id"], "photo.txt", jpeg_named_txt, cols="8").status_code == 202


def _zip(members: dict[str, bytes], *, encrypted: frozenset[str] = frozenset()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return _mark_encrypted(buf.getvalue(), encrypted) if encrypted else buf.getvalue()


def _mark_encrypted(archive: bytes, names: frozenset[str]) -> bytes:
    """Set the 'encrypted' flag of some members, in their local and central headers (zipfile
    cannot write encrypted members; the bytes stay plain: a reader must not even try them)."""
    data = bytearray(archive)
    for info in zipfile.ZipFile(io.BytesIO(archive)).infolist():
        if info.filename in names:
            data[info.header_offset + 6] |= 1
    pos = data.find(b"PK\x01\x02")
    while pos != -1:
        name_len = int.from_bytes(data[pos + 28 : pos + 30], "little")
        if data[pos + 46 : pos + 46 + name_len].decode() in names:
            data[pos + 8] |= 1
        pos = data.find(b"PK\x01\x02", pos + 46)
    return bytes(data)


def test_zip_bombs_and_encrypted_members_are_refused(client: TestClient, photo_tiles: list[Path]) -> None:
    photo = photo_tiles[0].read_bytes()
    archive = _zip(
        {
            "ok.jpg": photo,
            "bomb.png": bytes(200 * 2**20),
            "secret.jpg": photo,
            "a/b/../../../../x.jpg": photo,
        },
        encrypted=frozenset({"secret.jpg"}),
    )
    assert len(archive) < 2**20  # 200 MiB of zeros compresses to a few hundred KiB
    created = client.post("/api/sessions", files=[("tiles", ("bomb.zip", archive, "application/zip"))])
    assert created.status_code == 202
    session = wait_for(lambda: session_of(client, created.json()["id"]), until={"ready", "failed"})
    assert session["tiles_accepted"] == 2
    reasons = {r["file"]: r["reason"] for r in session["rejected"]}
    assert "zip bomb" in reasons["bomb.zip/bomb.png"]
    assert reasons["bomb.zip/secret.jpg"] == "encrypted archive member"
    root: Path = client.app.state.services.settings.data_dir  # type: ignore[attr-defined]
    assert not list(root.parent.glob("x.jpg")) and not list(root.glob("x.jpg"))


def test_total_archive_size_cap(make_client: Callable[..., TestClient], photo_tiles: list[Path]) -> None:
    client = make_client(max_zip_bytes=150_000)
    archive = _zip({p.name: p.read_bytes() for p in photo_tiles[:30]})
    created = client.post("/api/sessions", files=[("tiles", ("many.zip", archive, "application/zip"))])
    session = wait_for(lambda: session_of(client, created.json()["id"]), until={"ready", "failed"})
    assert 0 < session["tiles_accepted"] < 30
    assert any("beyond the size limit" in r["reason"] for r in session["rejected"])


def test_file_count_limits(make_client: Callable[..., TestClient], photo_tiles: list[Path]) -> None:
    client = make_client(max_files_per_session=5, max_files_per_request=8)
    assert_error(client.post("/api/sessions", files=files_of(photo_tiles[:6])), 413, field="tiles")
    assert_error(client.post("/api/sessions", files=files_of(photo_tiles[:10])), 413, field="tiles")
    session = ready_session(client, photo_tiles[:4])
    more = client.post(f"/api/sessions/{session['id']}/tiles", files=files_of(photo_tiles[4:6]))
    assert_error(more, 413, field="tiles")
    assert "TESSERA_MAX_FILES_PER_SESSION" in more.json()["detail"]


def test_rows_limit(make_client: Callable[..., TestClient], corpus: Path, photo_tiles: list[Path]) -> None:
    client = make_client(max_rows=20)
    session = ready_session(client, photo_tiles[:3])
    cover = (corpus / "odd" / "exif_orientation_6.jpg").read_bytes()
    assert post_cover(client, session["id"], "c.jpg", cover, cols="25").status_code == 202  # 17 rows
    assert_error(post_cover(client, session["id"], "c.jpg", cover, cols="40"), 422, field="cols")


def test_disk_cap_gives_a_clear_error(
    make_client: Callable[..., TestClient], photo_tiles: list[Path]
) -> None:
    client = make_client(max_disk_bytes=2**20)
    ready_session(client, photo_tiles[:120])  # about 1.5 MB of photos
    response = client.post("/api/sessions", files=files_of(photo_tiles[:2]))
    assert response.status_code == 507 and "storage is full" in response.json()["detail"]


def test_sweep_removes_expired_sessions_only(
    client: TestClient, corpus: Path, photo_tiles: list[Path]
) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]
    old = ready_session(client, photo_tiles[:3])
    make(client, old["id"], corpus / "covers" / "mate-Dune.jpg", cols=6, tile_size=8)
    fresh = ready_session(client, photo_tiles[3:6])
    orphan = services.storage.session_dir("orphan-without-a-record-xx")
    orphan.mkdir(parents=True)
    later = time.time() + 25 * 3600
    os.utime(orphan, (later - 26 * 3600, later - 26 * 3600))
    services.records.update_session(fresh["id"], state="ready")  # touched now
    with services.records._tx() as db:  # age the old session and its mosaic by two days
        db.execute("UPDATE sessions SET updated = updated - 172800 WHERE id = ?", (old["id"],))
        db.execute("UPDATE mosaics SET updated = updated - 172800 WHERE session_id = ?", (old["id"],))
    removed = sweep(services, now=time.time() + 3600)
    assert old["id"] in removed and fresh["id"] not in removed
    assert client.get(f"/api/sessions/{old['id']}").status_code == 404
    assert not services.storage.session_dir(old["id"]).exists()
    assert session_of(client, fresh["id"])["state"] == "ready"
    assert sweep(services, now=later) and not orphan.exists()


def test_a_burst_of_fifty_mosaics_all_finish(
    make_client: Callable[..., TestClient], corpus: Path, photo_tiles: list[Path]
) -> None:
    client = make_client(max_jobs_per_session=50)  # one session's share raised for the burst
    session = ready_session(client, photo_tiles[:60])
    cover = (corpus / "covers" / "skimage-astronaut.jpg").read_bytes()
    records = []
    for i in range(50):
        response = post_cover(client, session["id"], f"c{i}.jpg", cover, cols=str(10 + i), tile_size="8")
        assert response.status_code == 202
        records.append(response.json())
    finished = [
        wait_for(lambda r=r: client.get(r["status_url"]).json(), until={"ready", "failed"}, timeout=180)
        for r in records
    ]
    assert [m["state"] for m in finished] == ["ready"] * 50
    assert [m["cols"] for m in finished] == [10 + i for i in range(50)]


def test_status_polls_stay_fast_while_big_mosaics_render(
    live_server: LiveServer, corpus: Path, photo_tiles: list[Path]
) -> None:
    url = live_server.url
    files = [("tiles", (p.name, p.read_bytes(), "image/jpeg")) for p in photo_tiles]
    session = httpx.post(f"{url}/api/sessions", files=files, timeout=60).json()
    wait_for(lambda: httpx.get(f"{url}{session['status_url']}", timeout=10).json(), until={"ready"})
    cover = (corpus / "covers" / "mate-Aqua.jpg").read_bytes()
    big = [
        httpx.post(
            f"{url}/api/sessions/{session['id']}/mosaics", files={"cover": ("a.jpg", cover)},
            data={"cols": "300", "tile_size": "48", "cell_grid": "2"}, timeout=60,
        ).json()
        for _ in range(2)
    ]  # fmt: skip
    latencies = []
    rendering_seen = False
    with httpx.Client(base_url=url, timeout=10) as http:
        for i in range(60):
            t = time.perf_counter()
            response = http.get("/healthz" if i % 2 else big[0]["status_url"])
            latencies.append(time.perf_counter() - t)
            assert response.status_code == 200
            if response.json().get("state") == "rendering" or response.json().get("jobs_idle") is False:
                rendering_seen = True
            time.sleep(0.02)
    assert rendering_seen, "the renders finished before they could be measured against"
    median = statistics.median(latencies)
    assert median < 0.1, f"median poll latency {median * 1000:.0f} ms while rendering"
    for m in big:
        wait_for(
            lambda m=m: httpx.get(f"{url}{m['status_url']}", timeout=10).json(), until={"ready"}, timeout=180
        )


def test_request_limit_holds_while_the_body_streams(tmp_path: Path) -> None:
    """A chunked upload with no Content-Length is cut off once it passes the limit."""
    server = LiveServer(tmp_path / "data", env={"TESSERA_MAX_REQUEST_BYTES": str(2**20)}).start()
    boundary = "tesserabound"
    sent = 0

    def body() -> Any:
        nonlocal sent
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="tiles"; filename="big.jpg"\r\n\r\n'
        yield head.encode()
        for _ in range(64):  # 16 MiB in all, far past the 1 MiB limit
            sent += 256 * 1024
            yield bytes(256 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    try:
        with httpx.Client(timeout=30) as http:
            try:
                response = http.post(
                    f"{server.url}/api/sessions",
                    content=body(),
                    headers={"content-type": f"multipart/form-data; boundary={boundary}"},
                )
                assert response.status_code == 413, response.text
                assert "limit" in response.json()["detail"]
            except httpx.TransportError:  # the server answered 413 and closed mid-upload
                assert sent < 64 * 256 * 1024, "the server read the whole body before refusing it"
        stored = [p.stat().st_size for p in (tmp_path / "data").rglob("*") if p.is_file()]
        assert max(stored, default=0) < 2**20, "more than the limit reached the disk"
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    finally:
        server.stop()


def test_limit_messages_name_the_real_limit(
    make_client: Callable[..., TestClient], photo_tiles: list[Path]
) -> None:
    client = make_client(max_files_per_request=8)
    too_many = client.post("/api/sessions", files=files_of(photo_tiles[:9]))  # one over
    assert_error(too_many, 413, field="tiles")
    assert "at most 8" in too_many.json()["detail"]
    assert client.post("/api/sessions", files=files_of(photo_tiles[:8])).status_code == 202
    ids = "0123456789abcdef0123456789abcdef"
    broken = client.post(
        f"/api/sessions/{ids}/mosaics/{ids}/animations",
        content=b'{"kind": ',
        headers={"content-type": "application/json"},
    )
    assert broken.status_code == 422
    assert broken.json()["field"] is None and "not valid JSON" in broken.json()["detail"]
