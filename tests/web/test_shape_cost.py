"""Issue 17, point 2: tiles at a shape other than the stored thumbnails cost what the mosaic uses.

The issue's attack, over a real server: a 48 KB zip of 300 1 x 1 PNGs, then one mosaic of 8 cells
at ``tile_size=512, aspect=1:4``. It used to decode the whole library again at 512 x 2048 and keep
it (+2.0 GB of memory, 0.9 GB on disk); now the library is matched at the thumbnails' size and only
the placed tiles are decoded at the output size.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from numpy.typing import NDArray
from PIL import Image

from app.engine import MosaicParams
from app.engine.tiles import make_tile
from app.jobs.library import MAX_ASPECT_LIBRARIES
from app.jobs.runner import mosaic_params
from app.storage import folder_size
from tests.conftest import cell_error, read_image
from tests.hostile import shape_attack, tiny_png_zip
from tests.web.conftest import LiveServer, wait_for
from tests.web.test_api import make, ready_session

MB = 1024 * 1024
#: One 512 x 2048 tile is 3 MB; the 8 placed ones, the mosaic and its encoder a few dozen more.
PEAK_BOUND_MB = 250
#: The 300 thumbnails at 1:4 (32 x 128, with their features) and the 8-cell mosaic.
DISK_BOUND = 40 * MB


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    # Jobs on threads of the server process, so its peak memory is the job's.
    live = LiveServer(tmp_path / "data", env={"TESSERA_JOB_PROCESSES": "false"}).start()
    yield live
    live.stop()


def test_a_mosaic_at_another_shape_decodes_only_the_tiles_it_places(server: LiveServer, corpus: Path) -> None:
    assert server.proc is not None
    peak, written = shape_attack(
        server.url, server.proc.pid, server.data_dir, corpus / "covers" / "mate-Dune.jpg"
    )
    print(f"shape attack: +{peak:.0f} MB peak, {written / MB:.1f} MB written")
    assert peak < PEAK_BOUND_MB, f"the mosaic took +{peak:.0f} MB of server memory"
    assert written < DISK_BOUND, f"the mosaic wrote {written / MB:.0f} MB"


def _detail(image: NDArray[np.float64]) -> float:
    """Mean absolute difference between neighbouring pixels: what an enlarged image lacks."""
    return float(np.abs(np.diff(image, axis=0)).mean() + np.abs(np.diff(image, axis=1)).mean())


@pytest.mark.parametrize("aspect", ["1:1", "3:4"])
def test_large_cells_show_their_photos_decoded_at_the_cell_size(
    make_client: Callable[..., TestClient], corpus: Path, photo_tiles: list[Path], aspect: str
) -> None:
    """Cells larger than the thumbnails show each placed photo decoded again at the cell size
    (as sharp as before), and the mosaic still resembles its cover."""
    client = make_client()
    services = client.app.state.services  # type: ignore[attr-defined]
    large = [p for p in photo_tiles if min(read_image(p).size) >= 256]  # more detail than a thumbnail
    assert len(large) >= 60
    session = ready_session(client, large)
    cover = corpus / "covers" / "mate-Aqua.jpg"
    mosaic = make(client, session["id"], cover, timeout=180, cols="12", tile_size="192", aspect=aspect,
                     tint="0", format="png")  # fmt: skip
    assert mosaic["state"] == "ready", mosaic
    size = MosaicParams(tile_size=192, aspect=tuple(int(p) for p in aspect.split(":"))).tile_shape  # type: ignore[arg-type]
    image = np.asarray(Image.open(io.BytesIO(client.get(mosaic["image_url"]).content)).convert("RGB"))
    assert image.shape == (mosaic["rows"] * size[1], 12 * size[0], 3)
    # As close to the cover as the same mosaic with cells no larger than the thumbnails.
    small = make(
        client,
        session["id"],
        cover,
        timeout=180,
        cols="12",
        tile_size="16",
        aspect=aspect,
        tint="0",
        format="png",
    )
    small_image = Image.open(io.BytesIO(client.get(small["image_url"]).content))
    error = cell_error(read_image(cover, "RGB"), image, 12, mosaic["rows"])
    assert error < cell_error(read_image(cover, "RGB"), small_image, 12, small["rows"]) + 1.0

    folder = services.storage.mosaic_dir(session["id"], mosaic["id"])
    grid = np.load(folder / "grid.npy")
    tiles, _ = services.libraries.open(
        session["id"], mosaic_params(services.records.mosaic(mosaic["id"]).params)
    )
    assert max(tiles.tile_size) < 192  # matched on thumbnails, never a library at the cell size
    paths = dict(services.libraries.sources(session["id"]))
    detail = np.zeros(3)  # the fine detail of the cells, of their photos, of their thumbnails enlarged
    for (row, col), tile in np.ndenumerate(grid):
        shown = image[row * size[1] : (row + 1) * size[1], col * size[0] : (col + 1) * size[0]].astype(float)
        name = tiles.names[int(tile)]
        decoded = make_tile(paths[name], name=name, size=size).astype(float)
        enlarged = tiles.resized(size, np.array([tile]))[0].astype(float)
        assert np.abs(shown - decoded).mean() < 1.0, f"cell {row},{col} is not its photo at {size}"
        detail += (_detail(shown), _detail(decoded), _detail(enlarged))
    print("fine detail (cells, photos, thumbnails):", detail / grid.size)
    cells, photos, thumbnails = detail
    assert cells > 0.95 * photos and cells > 1.25 * thumbnails, "the cells look like enlarged thumbnails"


def test_a_matching_library_that_does_not_fit_under_the_disk_cap_fails_the_mosaic(
    make_client: Callable[..., TestClient], corpus: Path
) -> None:
    """The library at another aspect is written into the data folder, so it counts toward
    TESSERA_MAX_DISK_BYTES: one that does not fit is not decoded, and the mosaic says why."""
    archive = tiny_png_zip(300)
    roomy = make_client()
    services = roomy.app.state.services  # type: ignore[attr-defined]
    session = roomy.post("/api/sessions", files={"tiles": ("t.zip", archive, "application/zip")}).json()
    wait_for(lambda: roomy.get(session["status_url"]).json(), until={"ready"})
    cover = corpus / "covers" / "mate-Dune.jpg"
    assert (
        make(roomy, session["id"], cover, timeout=180, cols="8", tile_size="32", aspect="1:4")["state"]
        == "ready"
    )
    library = services.storage.library_dir(
        session["id"], services.libraries.shape_for(MosaicParams(aspect=(1, 4)))
    )
    assert folder_size(library) > 300 * 32 * 128 * 3  # the 1:4 thumbnails, on disk
    assert services.storage.measure() >= folder_size(library)  # in what the cap measures

    # Room for half of another such library (at 4:1) and no more.
    tight = make_client(max_disk_bytes=services.storage.measure() + folder_size(library) // 2)
    mosaic = make(tight, session["id"], cover, timeout=180, cols="8", tile_size="32", aspect="4:1")
    assert mosaic["state"] == "failed"
    assert "TESSERA_MAX_DISK_BYTES" in mosaic["error"], mosaic["error"]


def test_a_session_keeps_a_few_libraries_at_other_aspects_not_one_per_aspect_asked(
    make_client: Callable[..., TestClient], corpus: Path
) -> None:
    """Every new aspect costs a library of thumbnails: only the few used last are kept, so
    asking for aspect after aspect does not pile copies of the library up on disk."""
    client = make_client()
    services = client.app.state.services  # type: ignore[attr-defined]
    session = client.post(
        "/api/sessions", files={"tiles": ("t.zip", tiny_png_zip(300), "application/zip")}
    ).json()
    wait_for(lambda: client.get(session["status_url"]).json(), until={"ready"})
    cover = corpus / "covers" / "mate-Dune.jpg"
    aspects = [(1, 4), (1, 3), (1, 2), (2, 3), (3, 4), (4, 3)]

    def make_at(aspect: tuple[int, int]) -> None:  # and its pyramid, which opens the library too
        made = make(
            client,
            session["id"],
            cover,
            timeout=180,
            cols="8",
            tile_size="16",
            aspect=f"{aspect[0]}:{aspect[1]}",
        )
        assert made["state"] == "ready", made
        wait_for(
            lambda: client.get(made["status_url"]).json()["pyramid"] or {"state": "none"}, until={"ready"}
        )

    def folder_of(aspect: tuple[int, int]) -> str:
        width, height = services.libraries.shape_for(MosaicParams(aspect=aspect))
        return f"{width}x{height}"

    for aspect in aspects:
        make_at(aspect)
    folders = services.storage.session_dir(session["id"]) / "tiles"
    kept = {f.name for f in folders.iterdir()} - {folder_of((1, 1))}
    assert len(kept) == MAX_ASPECT_LIBRARIES < len({folder_of(a) for a in aspects}), kept
    assert kept == {folder_of(a) for a in aspects[-MAX_ASPECT_LIBRARIES:]}  # the ones used last
    make_at(aspects[0])  # an evicted aspect is decoded again when it is asked for again
    assert folder_of(aspects[0]) in {f.name for f in folders.iterdir()}
