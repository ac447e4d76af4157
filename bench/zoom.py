"""Benchmark: Deep Zoom pyramids cut from the grid vs from the full bitmap, and a 1080p zoom.

    python bench/zoom.py [--corpus ../shared/corpus] [--cols 200] [--seconds 10] [--fps 24]

Prints a table; docs/zoom.md records the figures measured on the project machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.engine import MosaicParams, TileSet, make_mosaic
from app.engine.animate import AnimationSpec, make_animation, render_frames, scene_of
from app.engine.pyramid import BitmapSource, GridSource, write_pyramid
from app.engine.render import encode, stitch

REPO = Path(__file__).resolve().parents[1]


def measured(work: Callable[[], Any]) -> tuple[float, float, Any]:
    """(seconds, peak traced MB, result) of ``work()``: the best time of three runs (the machine is
    shared), and its memory traced in a fourth (tracing slows Python code down)."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    seconds = min(times)
    tracemalloc.start()
    work()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak, result


def pyramid_rows(tiles: TileSet, cover: Path, cols: int, tile_size: int, folder: Path) -> list[list[str]]:
    params = MosaicParams(cols=cols, tile_size=tile_size, max_output_pixels=None)
    result = make_mosaic(cover, tiles, params)
    grid, cell, offsets = result.grid, params.tile_shape, result.cell_offsets
    height, width = result.image.shape[:2]
    folder.mkdir(parents=True, exist_ok=True)
    encoded = folder / "mosaic.jpg"
    encode(result.image, encoded, "jpeg")
    del result  # each way below starts from what a background job would have at hand

    def from_grid() -> Any:
        return write_pyramid(GridSource.from_tiles(tiles, grid, cell, offsets), folder / "grid")

    def from_bitmap_in_memory() -> Any:
        used, local = np.unique(grid, return_inverse=True)
        shifts = None if offsets is None else offsets.astype(np.float32)
        image = stitch(
            tiles.resized(cell, used), local.reshape(grid.shape), cell_offsets=shifts
        )  # the render
        return write_pyramid(BitmapSource(image), folder / "bitmap", budget_pixels=2**62)

    def from_encoded_file() -> Any:
        Image.MAX_IMAGE_PIXELS = None
        with Image.open(encoded) as im:
            image = np.asarray(im.convert("RGB"))
        return write_pyramid(BitmapSource(image), folder / "file", budget_pixels=2**62)

    rows = []
    for label, work in [
        ("grid-cut (cells + thumbnails)", from_grid),
        ("full bitmap (render, then cut)", from_bitmap_in_memory),
        ("full bitmap (decode mosaic.jpg)", from_encoded_file),
    ]:
        seconds, peak, layout = measured(work)
        rows.append(
            [f"{width}x{height}", label, f"{layout.tile_total()}", f"{seconds:.2f} s", f"{peak:.0f} MB"]
        )
    return rows


def zoom_rows(
    tiles: TileSet, cover: Path, cols: int, seconds: float, fps: int, folder: Path
) -> list[list[str]]:
    params = MosaicParams(cols=cols, tile_size=32)
    result = make_mosaic(cover, tiles, params)
    scene = scene_of(tiles, result.grid, params.tile_shape, offsets=result.cell_offsets)
    rows_, cols_ = result.grid.shape
    spec = AnimationSpec(
        kind="zoom",
        fmt="mp4",
        seconds=seconds,
        width=1920,
        height=1080,
        fps=fps,
        col=cols_ * 3 // 5,
        row=rows_ // 2,
    )
    started = time.perf_counter()
    count = sum(1 for _ in render_frames(scene, spec))
    frames_only = time.perf_counter() - started
    started = time.perf_counter()
    make_animation(scene, spec, folder / "zoom.mp4")
    with_encoding = time.perf_counter() - started
    size = (folder / "zoom.mp4").stat().st_size / 2**20
    label = f"{seconds:g} s 1080p zoom, {fps} fps, {cols_}x{rows_} cells"
    return [
        [label, "frames only", str(count), f"{frames_only:.1f} s", f"{count / frames_only:.0f} frames/s"],
        [label, "frames + H.264 (MP4)", str(count), f"{with_encoding:.1f} s", f"{size:.1f} MB file"],
    ]


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *map(line, rows)])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus")
    parser.add_argument("--cols", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--fps", type=int, default=24)
    args = parser.parse_args()
    cover = args.corpus / "covers" / "mate-LadyBird.jpg"
    tiles = TileSet.from_paths([args.corpus / "tiles_photo"], size=(64, 64))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pyramids = pyramid_rows(tiles, cover, args.cols, 32, folder / "a")
        pyramids += pyramid_rows(tiles, cover, args.cols, 64, folder / "b")
        print(table(["mosaic", "pyramid made from", "tiles", "time", "peak memory"], pyramids))
        print()
        print(
            table(
                ["animation", "step", "frames", "time", "rate"],
                zoom_rows(tiles, cover, args.cols, args.seconds, args.fps, folder),
            )
        )


if __name__ == "__main__":
    main()
