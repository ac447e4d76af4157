"""The fast paths give the same answers as the simple ones: parallel ingest, strip rendering,
resizing stored thumbnails, the two-step exact index; and progress reaches its total."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from app.engine import MosaicParams, TileIndex, TileSet, make_mosaic
from app.engine.render import as_pil, encode, new_canvas, stitch
from app.engine.tiles import fit_tile


@pytest.fixture(scope="module")
def mixed_inputs(corpus: Path) -> list[Path]:
    """Enough files for the process pool, with every odd file (rotated, CMYK, broken) among them."""
    odd = sorted((corpus / "odd").iterdir())
    return sorted((corpus / "tiles_photo").glob("*.jpg"))[:90] + [p for p in odd if p.suffix != ".txt"]


def test_processes_threads_and_one_worker_build_identical_tiles(mixed_inputs: list[Path]) -> None:
    by_process = TileSet.from_inputs(mixed_inputs, size=(24, 16), parallel="process", workers=2)
    by_thread = TileSet.from_inputs(mixed_inputs, size=(24, 16), parallel="thread", workers=2)
    inline = TileSet.from_inputs(mixed_inputs, size=(24, 16), workers=1)
    for other in (by_thread, inline):
        assert other.names == by_process.names
        assert other.rejected == by_process.rejected
        assert np.array_equal(other.images, by_process.images)
    assert len(by_process.rejected) >= 3  # empty, truncated, bomb...
    assert len(by_process) + len(by_process.rejected) == len(mixed_inputs)


def test_accepted_tiles_keep_input_order_around_rejections(corpus: Path) -> None:
    photos = sorted((corpus / "tiles_photo").glob("*.jpg"))[:70]
    inputs = [*photos[:35], corpus / "odd" / "empty.jpg", *photos[35:]]
    tiles = TileSet.from_inputs(inputs, size=(8, 8), workers=2)
    assert tiles.names == [str(p) for p in photos]
    alone = TileSet.from_inputs(photos[40:41], size=(8, 8), workers=1)
    assert np.array_equal(tiles.images[40], alone.images[0])


def test_bytes_and_open_files_are_accepted_as_inputs(corpus: Path) -> None:
    path = sorted((corpus / "tiles_photo").glob("*.jpg"))[0]
    data = path.read_bytes()
    with open(path, "rb") as fh:
        tiles = TileSet.from_inputs([("a", data), ("b", fh), ("c", str(path))], size=(8, 8), workers=2)
    assert tiles.names == ["a", "b", "c"]
    assert (tiles.images == tiles.images[0]).all()


def test_ingest_progress_starts_at_zero_and_reaches_the_total(mixed_inputs: list[Path]) -> None:
    seen: list[tuple[int, int]] = []
    TileSet.from_inputs(mixed_inputs, size=(8, 8), workers=2, progress=lambda d, t: seen.append((d, t)))
    total = len(mixed_inputs)
    assert seen[0] == (0, total) and seen[-1] == (total, total)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert len(seen) > 3  # reported per chunk, not only at the end


def _reference_stitch(
    tiles: NDArray[np.uint8], grid: NDArray[np.intp], offsets: NDArray[np.float64] | None = None
) -> NDArray[np.uint8]:
    """One cell at a time, the obvious way."""
    rows, cols = grid.shape
    _, h, w, _ = tiles.shape
    out = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    for r in range(rows):
        for c in range(cols):
            cell = tiles[grid[r, c]].astype(np.int16)
            if offsets is not None:
                cell = cell + np.rint(offsets[r, c]).astype(np.int16)
            out[r * h : (r + 1) * h, c * w : (c + 1) * w] = np.clip(cell, 0, 255)
    return out


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (7, 2)])
def test_strip_rendering_equals_the_reference_pixel_for_pixel(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(3)
    tiles = rng.integers(0, 256, size=(6, 5, 4, 3), dtype=np.uint8)
    grid = rng.integers(0, 6, size=shape)
    offsets = rng.normal(0, 40, size=(*shape, 3))
    steps: list[tuple[int, int]] = []
    plain = stitch(tiles, grid, progress=lambda d, t: steps.append((d, t)))
    assert np.array_equal(plain, _reference_stitch(tiles, grid))
    assert np.array_equal(stitch(tiles, grid, cell_offsets=offsets), _reference_stitch(tiles, grid, offsets))
    assert steps == [(r + 1, shape[0]) for r in range(shape[0])]
    assert as_pil(plain).mode == "RGBX"  # the encoder gets the canvas itself, not a copy


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_canvas_encodes_like_a_plain_array(fmt: str) -> None:
    rng = np.random.default_rng(5)
    plain = rng.integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
    canvas = new_canvas(40, 56)
    canvas[...] = plain
    assert as_pil(canvas).mode == "RGBX"  # mapped, not copied
    a, b = io.BytesIO(), io.BytesIO()
    encode(plain, a, fmt)
    encode(canvas, b, fmt)
    assert a.getvalue() == b.getvalue()
    with Image.open(io.BytesIO(b.getvalue())) as im:
        assert im.size == (56, 40) and im.mode == "RGB"


@pytest.mark.parametrize("size", [(16, 16), (24, 18), (8, 12), (48, 48)])
def test_resized_equals_fitting_each_tile(photo_tiles: list[Path], size: tuple[int, int]) -> None:
    stored = TileSet.from_paths(photo_tiles[:80], size=(32, 32))
    pick = np.array([5, 0, 79, 5, 33])
    expected = np.stack([fit_tile(Image.fromarray(stored.images[i]), size) for i in pick])
    assert np.array_equal(stored.resized(size, pick, workers=2), expected)
    whole = stored.resized(size, workers=2)
    assert whole.shape == (80, size[1], size[0], 3)
    assert np.array_equal(whole[pick], expected)


def _brute_force(features: NDArray[np.float64], cells: NDArray[np.float64], k: int) -> NDArray[np.float64]:
    dist = np.sqrt(((cells[:, None, :] - features[None, :, :]) ** 2).sum(axis=2))
    return np.sort(dist, axis=1)[:, :k]


@pytest.mark.parametrize("dims", [3, 12, 48, 75])
@pytest.mark.parametrize("k", [1, 5])
def test_index_is_exact_for_every_feature_size(dims: int, k: int) -> None:
    rng = np.random.default_rng(dims * 10 + k)

    # photo-like features: a few strong directions plus small independent detail
    def sample(n: int) -> NDArray[np.float64]:
        return rng.normal(size=(n, 4)) @ rng.normal(size=(4, dims)) * 20 + rng.normal(size=(n, dims)) * 3

    mix = rng.normal(size=(4, dims))
    features = rng.normal(size=(700, 4)) @ mix * 20 + rng.normal(size=(700, dims)) * 3
    cells = np.vstack([rng.normal(size=(2500, 4)) @ mix * 20, sample(50) * 5])  # some far outliers
    index = TileIndex(features, workers=2)
    dist, idx = index.query(cells, k)
    assert dist.shape == idx.shape == (len(cells), k)
    assert np.allclose(dist, _brute_force(features, cells, k), atol=1e-6)
    recomputed = np.linalg.norm(cells[:, None, :] - features[idx], axis=2)
    assert np.allclose(recomputed, dist, atol=1e-6)


def test_index_with_fewer_tiles_than_dimensions_or_k() -> None:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(5, 48))
    cells = rng.normal(size=(30, 48))
    dist, idx = TileIndex(features).query(cells, k=9)
    assert idx.shape == (30, 5)
    assert np.allclose(dist, _brute_force(features, cells, 5))


def test_mosaic_progress_reports_every_stage_to_its_total(corpus: Path) -> None:
    tiles = TileSet.from_paths(sorted((corpus / "tiles_photo").glob("*.jpg"))[:40], size=(8, 8))
    seen: dict[str, list[tuple[int, int]]] = {}
    result = make_mosaic(
        corpus / "covers" / "mate-Dune.jpg",
        tiles,
        MosaicParams(cols=10, tile_size=8),
        progress=lambda stage, d, t: seen.setdefault(stage, []).append((d, t)),
    )
    assert {"cover", "match", "render"} <= set(seen)
    for steps in seen.values():
        assert steps[-1][0] == steps[-1][1]
    assert len(seen["render"]) == result.rows + 1  # the start, then one per strip
