"""Through the server, transparent tiles show the mosaic's background in every pyramid level and
animation frame, as the render shows it: the deepest levels, drawn from the emoji files on
request, keep the files' alpha."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from numpy.typing import NDArray
from PIL import Image

from app.engine.pyramid import DziLayout
from app.engine.render import lay_over
from app.engine.tiles import make_tile_rgba
from tests.web.test_api import make, ready_session
from tests.web.test_zoom_api import animate, read_animated, wait_until

COLS, TILE = 16, 16


@pytest.fixture(scope="module", params=["cell", "#203040"])
def emoji_mosaic(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, corpus: Path
) -> Iterator[Any]:
    from app.main import create_app
    from app.settings import Settings

    data = tmp_path_factory.mktemp("emoji-zoom") / "data"
    client = TestClient(create_app(Settings(data_dir=data)))
    client.__enter__()
    emoji = sorted((corpus / "tiles_emoji").glob("*.png"))
    session = ready_session(client, emoji)
    assert session["tiles_accepted"] == len(emoji)
    mosaic = make(
        client, session["id"], corpus / "covers" / "mate-Storm.jpg", cols=COLS, tile_size=TILE, format="png",
        background=request.param,
    )  # fmt: skip
    assert mosaic["state"] == "ready", mosaic
    mosaic = wait_until(lambda: client.get(mosaic["status_url"]).json(), lambda m: m["dzi_url"] is not None)
    folder = client.app.state.services.storage.mosaic_dir(mosaic["session_id"], mosaic["id"])  # type: ignore[attr-defined]
    placement = {name: np.load(folder / f"{name}.npy") for name in ("grid", "backgrounds", "offsets")}
    yield client, mosaic, emoji, placement
    client.__exit__(None, None, None)
    client.app.state.services.jobs.shutdown(wait=True)  # type: ignore[attr-defined]


def read(content: bytes) -> NDArray[np.float64]:
    return np.asarray(Image.open(io.BytesIO(content)).convert("RGB"), dtype=np.float64)


def cell_shown(
    emoji: list[Path], placement: dict[str, Any], row: int, col: int, size: int
) -> tuple[Any, Any]:
    """The cell's emoji from its file at ``size`` px over the cell's background, tinted as the
    render tinted it, and the mask of its pixels well inside the clear area."""
    path = emoji[int(placement["grid"][row, col])]  # the session's tiles are its uploads, in order
    rgb, alpha = make_tile_rgba(path, name=path.name, size=(size, size))
    assert alpha is not None
    shown = np.clip(
        lay_over(rgb, alpha, placement["backgrounds"][row, col]) + placement["offsets"][row, col], 0, 255
    )
    clear = alpha == 0
    inner = clear.copy()
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            inner &= np.roll(np.roll(clear, dy, axis=0), dx, axis=1)
    return shown, inner


def chosen_cell(emoji: list[Path], placement: dict[str, Any], fits: Any) -> tuple[int, int]:
    """The cell (inside one deepest tile: ``fits(row, col)``) whose emoji shows the most of a
    background far from white."""
    best, score = None, 0.0
    for (row, col), tile in np.ndenumerate(placement["grid"]):
        if not fits(row, col):
            continue
        _, alpha = make_tile_rgba(emoji[int(tile)], name="tile", size=(TILE, TILE))
        far = np.abs(placement["backgrounds"][row, col].astype(float) - 255).mean()
        value = (0.0 if alpha is None else float((alpha == 0).mean())) * far
        if value > score:
            best, score = (row, col), value
    assert best is not None and score > 0.2 * 60, score
    return best


def test_deepest_zoom_tiles_and_the_zoom_animation_show_the_background(emoji_mosaic: Any) -> None:
    client, mosaic, emoji, placement = emoji_mosaic
    background = mosaic["params"]["background"]
    if background != "cell":  # one colour behind every cell
        assert (placement["backgrounds"] == [int(background[i : i + 2], 16) for i in (1, 3, 5)]).all()
    layout = DziLayout.from_descriptor(client.get(mosaic["dzi_url"]).text)
    depth = (layout.width // (COLS * TILE)).bit_length() - 1
    assert depth == 2  # 64 px emoji, 16 px cells: two levels drawn from the files
    cell = TILE << depth
    size = layout.tile_size

    def fits(row: int, col: int) -> bool:  # the cell lies wholly inside one tile of the deepest level
        return (col * cell) // size == ((col + 1) * cell - 1) // size and (row * cell) // size == (
            (row + 1) * cell - 1
        ) // size

    row, col = chosen_cell(emoji, placement, fits)
    tx, ty = (col * cell) // size, (row * cell) // size
    files = mosaic["dzi_url"].removesuffix(".dzi") + "_files"
    response = client.get(f"{files}/{layout.max_level}/{tx}_{ty}.png")
    assert response.status_code == 200, response.text
    x0, y0, _, _ = layout.tile_box(layout.max_level, tx, ty)
    got = read(response.content)[
        row * cell - y0 : (row + 1) * cell - y0, col * cell - x0 : (col + 1) * cell - x0
    ]
    shown, clear = cell_shown(emoji, placement, row, col, cell)
    assert clear.mean() > 0.1
    assert np.abs(got[clear] - shown[clear]).max() <= 3  # the background, not white
    assert np.abs(got - shown).mean() < 3

    record = animate(client, mosaic, kind="zoom", format="gif", seconds=1, width=128, height=128, fps=8,
                     col=col, row=row)  # fmt: skip
    frames, _, _, _ = read_animated(client.get(record["url"]).content)
    last = frames[-1].astype(float)
    shown, clear = cell_shown(emoji, placement, row, col, 128)
    assert np.abs(last[clear] - shown[clear]).mean() < 4  # GIF: 256 colours a frame
    assert np.percentile(np.abs(last[clear] - shown[clear]), 95) <= 8
