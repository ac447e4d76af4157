"""The built wheel, installed without ``-e`` and run from another folder, serves the page, every
static file the page names, and mosaics: templates/ and static/ travel inside the package."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import httpx2 as httpx
import pytest
from PIL import Image

from tests.conftest import REPO, cell_error, read_image
from tests.web.conftest import free_port

pytestmark = pytest.mark.slow
STATIC_REF = re.compile(r'(?:src|href)="(?:https?://[^/"]+)?(/static/[^"?#]+)')


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout, installed (no deps: the test venv has them) into a
    folder of its own; returns that folder."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out / "dist"), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (out / "dist").glob("tessera_mosaic-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "app/templates/index.html" in names and "app/static/app.js" in names
    target = out / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    return target


@pytest.fixture(scope="module")
def server(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    elsewhere = tmp_path_factory.mktemp("elsewhere")  # not the checkout: nothing to fall back on
    env = {**os.environ, "PYTHONPATH": str(installed), "TESSERA_DATA_DIR": str(elsewhere / "data")}
    where = subprocess.run(
        [sys.executable, "-c", "import app; print(app.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(installed), where
    port = free_port()
    log = elsewhere / "server.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, str(installed / "bin" / "tessera"), "serve", "--port", str(port)],
            cwd=elsewhere,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_page_and_every_static_file_it_names(server: str) -> None:
    page = httpx.get(server + "/", timeout=10)
    assert page.status_code == 200
    refs = set(STATIC_REF.findall(page.text))
    assert {"/static/app.js", "/static/style.css"} <= refs, refs
    for ref in sorted(refs):
        response = httpx.get(server + ref, timeout=10)
        assert response.status_code == 200, ref
        assert response.content, ref


def test_a_mosaic_through_the_rest_api(server: str, corpus: Path, photo_tiles: list[Path]) -> None:
    cover = corpus / "covers" / "mate-LadyBird.jpg"
    files = [("cover", (cover.name, cover.read_bytes(), "image/jpeg"))]
    files += [("tiles", (p.name, p.read_bytes(), "image/jpeg")) for p in photo_tiles[:150]]
    created = httpx.post(
        server + "/api/mosaics", files=files, data={"cols": "30", "tile_size": "8"}, timeout=60
    )
    assert created.status_code == 202, created.text
    deadline = time.monotonic() + 120
    while (mosaic := httpx.get(server + created.json()["status_url"], timeout=10).json())["state"] not in (
        "ready",
        "failed",
    ):
        assert time.monotonic() < deadline, mosaic
        time.sleep(0.2)
    assert mosaic["state"] == "ready", mosaic
    image = Image.open(BytesIO(httpx.get(server + mosaic["image_url"], timeout=30).content))
    assert image.size == (30 * 8, mosaic["rows"] * 8)
    assert cell_error(read_image(cover, "RGB"), image, 30, mosaic["rows"]) < 12
    assert mosaic["viewer_url"], mosaic  # the share viewer's page names static files of its own
    viewer = httpx.get(server + mosaic["viewer_url"], timeout=10)
    assert viewer.status_code == 200
    refs = set(STATIC_REF.findall(viewer.text))
    assert {"/static/tessera-viewer.js", "/static/vendor/openseadragon/openseadragon.min.js"} <= refs, refs
    for ref in sorted(refs):
        assert httpx.get(server + ref, timeout=10).status_code == 200, ref
