"""Animations drawn from the grid: camera paths, frames that show the mosaic, validation."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.engine import BadParameter, MosaicParams, TileSet, make_mosaic
from app.engine.animate import AnimationSpec, render_frames, scene_of, zoom_views
from app.engine.tiles import make_tile


@pytest.fixture(scope="module")
def made(photo_tiles: list[Path], corpus: Path) -> tuple[TileSet, object]:
    tiles = TileSet.from_paths(photo_tiles[:100], size=(64, 64))
    result = make_mosaic(
        corpus / "covers" / "skimage-astronaut.jpg", tiles, MosaicParams(cols=30, tile_size=16)
    )
    return tiles, result


def test_zoom_path_is_exponential_from_the_whole_mosaic_to_the_cell() -> None:
    views = zoom_views((1600, 1000), (12, 7), (20, 20), 16 / 9, 101, hold=0.0)
    first, last = views[0], views[-1]
    assert first[2] - first[0] == pytest.approx(1000 * 16 / 9)  # the whole height fits
    assert (first[0] + first[2]) / 2 == pytest.approx(800) and (first[1] + first[3]) / 2 == pytest.approx(500)
    assert last[2] - last[0] == pytest.approx(20 * 16 / 9)  # the cell fills the height
    assert (last[0] + last[2]) / 2 == pytest.approx(250) and (last[1] + last[3]) / 2 == pytest.approx(150)
    widths = [v[2] - v[0] for v in views]
    assert all(a > b for a, b in itertools.pairwise(widths))
    # Linear in log scale: halfway in time is the geometric mean of the ends.
    assert widths[50] == pytest.approx(math.sqrt(widths[0] * widths[-1]), rel=1e-6)


def test_first_frame_is_the_mosaic_and_last_the_cell(made: tuple) -> None:
    tiles, result = made
    scene = scene_of(tiles, result.grid, (16, 16), offsets=result.cell_offsets)
    spec = AnimationSpec(kind="zoom", fmt="mp4", seconds=1, width=240, height=240, fps=12, col=5, row=20)
    frames = list(render_frames(scene, spec))
    assert len(frames) == spec.frames == 12 and frames[0].shape == (240, 240, 3)
    whole = np.asarray(Image.fromarray(result.image).resize((240, 240)), dtype=float)
    assert np.abs(frames[0] - whole).mean() < 4
    tile = tiles.images[result.grid[20, 5]]
    expected = np.asarray(Image.fromarray(tile).resize((240, 240)), dtype=float)
    assert np.abs(frames[-1] - expected).mean() < 6
    backwards = list(render_frames(scene, AnimationSpec(**{**spec.__dict__, "reverse": True})))
    np.testing.assert_array_equal(backwards[0], frames[-1])


def test_close_views_decode_the_tile_photo_in_detail(made: tuple, photo_tiles: list[Path]) -> None:
    tiles, result = made
    sources = {name: name for name in tiles.names}
    scene = scene_of(tiles, result.grid, (16, 16), offsets=result.cell_offsets, sources=sources)
    frame = scene.draw((80.0, 320.0, 96.0, 336.0), (512, 512))  # cell (5, 20) alone, 512 px
    name = tiles.names[result.grid[20, 5]]
    with Image.open(name) as photo:
        side = min(photo.size)
        box = ((photo.width - side) // 2, (photo.height - side) // 2)
        sharp = np.asarray(photo.convert("RGB").crop((*box, box[0] + side, box[1] + side)).resize((512, 512)))
    blurry = np.asarray(Image.fromarray(tiles.images[result.grid[20, 5]]).resize((512, 512)))
    assert np.abs(frame - sharp.astype(float)).mean() < np.abs(frame - blurry.astype(float)).mean()


def test_assemble_ends_as_the_mosaic_and_disperse_starts_as_it(made: tuple) -> None:
    tiles, result = made
    scene = scene_of(tiles, result.grid, (16, 16), offsets=result.cell_offsets)
    whole = np.asarray(Image.fromarray(result.image).resize((120, 120)), dtype=float)
    spec = AnimationSpec(kind="assemble", fmt="gif", seconds=1, width=120, height=120, fps=10)
    assembled = list(render_frames(scene, spec))
    dispersed = list(render_frames(scene, AnimationSpec(**{**spec.__dict__, "kind": "disperse"})))
    assert np.abs(assembled[-1] - whole).mean() < 8 and np.abs(assembled[0] - whole).mean() > 25
    np.testing.assert_array_equal(dispersed[0], assembled[-1])
    np.testing.assert_array_equal(dispersed[-1], assembled[0])


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kind": "spin"}, "kind"),
        ({"fmt": "avi"}, "format"),
        ({"width": 8}, "width"),
        ({"height": 5000}, "height"),
        ({"width": 101}, "width"),
        ({"fps": 0}, "fps"),
        ({"seconds": 500}, "seconds"),
        ({"col": 30}, "col"),
        ({"row": -1}, "row"),
        ({"fmt": "webp", "seconds": 60, "fps": 30}, "seconds"),
    ],
)
def test_bad_specs_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(BadParameter) as info:
        AnimationSpec(**changes).validate(30, 30)  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.mark.parametrize("tint", [10.0, 60.0])
def test_frames_match_the_tinted_mosaic_and_end_on_the_photo_sharp(
    photo_tiles: list[Path], corpus: Path, tint: float
) -> None:
    tiles = TileSet.from_paths(photo_tiles[:100], size=(64, 64))
    # Nearest-first (no repetition rules): neighbouring cells then differ little, so the frame's own
    # resampling of ~8 px cells stays within 3 levels of the render and the tint is what is measured
    # (with the default wall of different photos the resampling alone differs by about 4.5).
    params = MosaicParams(cols=30, tile_size=16, tint=tint, max_uses=0, min_distance=0)
    result = make_mosaic(corpus / "covers" / "mate-LadyBird.jpg", tiles, params)
    assert result.cell_offsets is not None
    sources = {name: name for name in tiles.names}
    scene = scene_of(tiles, result.grid, (16, 16), offsets=result.cell_offsets, sources=sources)
    plain = scene_of(tiles, result.grid, (16, 16), sources=sources)  # what animations drew before
    col, row = 7, 5
    spec = AnimationSpec(kind="zoom", fmt="gif", seconds=1, width=256, height=256, fps=6, col=col, row=row)
    frames = list(render_frames(scene, spec))
    height, width = result.image.shape[:2]
    # The first frame: the whole mosaic as rendered (tint included), letterboxed into the square.
    shown = round(256 * height / width)
    top = (256 - shown) // 2
    whole = np.asarray(Image.fromarray(result.image).resize((256, shown), Image.Resampling.BOX), dtype=float)
    first_error = np.abs(frames[0][top + 2 : top + shown - 2].astype(float) - whole[2:-2]).mean()
    untinted = np.asarray(next(iter(render_frames(plain, spec))), dtype=float)[top + 2 : top + shown - 2]
    assert first_error < 3, first_error
    assert np.abs(untinted - whole[2:-2]).mean() > first_error + tint / 20  # the check sees a missing tint
    # The last frame: the chosen cell's photo, decoded sharp, with its cell's tint.
    name = tiles.names[result.grid[row, col]]
    photo = make_tile(name, name=name, size=(256, 256)).astype(np.int16) + result.cell_offsets[row, col]
    last = frames[-1].astype(float)
    assert np.abs(last - np.clip(photo, 0, 255)).mean() < 4
    enlarged = np.asarray(
        Image.fromarray(tiles.images[result.grid[row, col]]).resize((16, 16)).resize((256, 256))
    )
    assert np.abs(np.diff(last, axis=1)).mean() > 1.3 * np.abs(np.diff(enlarged.astype(float), axis=1)).mean()
