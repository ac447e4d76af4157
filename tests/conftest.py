"""Shared fixtures: the real photo corpus beside the repository, and a resemblance measure."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image
from skimage.color import deltaE_ciede2000, rgb2lab

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"


@pytest.fixture(scope="session", autouse=True)
def _own_cache_folder(tmp_path_factory: pytest.TempPathFactory) -> None:
    """`tessera make` runs in the tests fill a tile cache of their own, not the user's."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    os.environ.pop("TESSERA_CACHE_DIR", None)


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not (CORPUS / "MANIFEST.txt").is_file():
        pytest.fail(f"the shared corpus is missing at {CORPUS}")
    return CORPUS


@pytest.fixture(scope="session")
def photo_tiles(corpus: Path) -> list[Path]:
    return sorted((corpus / "tiles_photo").glob("*.jpg"))


def read_image(path: Path, mode: str | None = None) -> Image.Image:
    """Open, fully load and close an image file (so no file handle leaks into a warning)."""
    with Image.open(path) as im:
        im.load()
        return im.convert(mode) if mode else im.copy()


def cell_error(cover: Image.Image, mosaic: Image.Image | NDArray[np.uint8], cols: int, rows: int) -> float:
    """Mean CIEDE2000 between the cover's and the mosaic's cell colours (both area-averaged)."""
    if isinstance(mosaic, np.ndarray):
        mosaic = Image.fromarray(mosaic)

    def cells(img: Image.Image) -> NDArray[np.float64]:
        small = img.convert("RGB").resize((cols, rows), Image.Resampling.BOX)
        return rgb2lab(np.asarray(small, dtype=np.float64) / 255.0)

    return float(deltaE_ciede2000(cells(cover), cells(mosaic)).mean())
