"""Print files: ``tessera make -o mosaic.tif`` at 200 columns x 160 px (32,000 px wide, 300 dpi),
and the same cover at fewer columns, in a child process each: wall time, peak memory and whether
the file opens with the right size and resolution. Peak memory should not grow with the output
(the TIFF is streamed band by band); the ratio of the largest to the smallest run is printed.

``--writers`` also times the writers that were weighed (on the same synthetic cells, one process
each): tifffile uncompressed (chosen), tifffile deflate, and libvips (pyvips, when installed)
joining one image per cell and saving a tiled TIFF uncompressed and as JPEG.

    python bench/tiff.py [--cols 50,100,200] [--tile-size 160] [--writers]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import _common
from _common import CORPUS, COVER, REPO, run_child, table

_WRITER = r"""
import resource, sys, time
import numpy as np
from PIL import Image
from pathlib import Path
from app.engine.render import cell_bands
from app.engine.tiff import write_tiff
which, cols, rows, px, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
photos = sorted(Path(sys.argv[6]).glob("*.jpg"))[:200]
tiles = np.stack([np.asarray(Image.open(p).convert("RGB").resize((px, px))) for p in photos])
rng = np.random.default_rng(0)
grid = rng.integers(0, len(tiles), size=(rows, cols))
offsets = rng.integers(-20, 20, size=(rows, cols, 3)).astype(np.int16)
width, height = cols * px, rows * px
t = time.perf_counter()
if which.startswith("tifffile"):
    import tifffile
    if which == "tifffile":
        write_tiff(out, width, height, cell_bands(tiles, grid, offsets), dpi=300)
    else:  # deflate, level 1, two threads
        bands = cell_bands(tiles, grid, offsets)
        def gen():
            for y in range(0, height, 256):
                band = np.zeros((256, -(-width // 256) * 256, 3), np.uint8)
                rows_ = bands(y, min(height, y + 256))
                band[: rows_.shape[0], :width] = rows_
                for x in range(0, width, 256):
                    yield band[:, x : x + 256]
        tifffile.imwrite(out, gen(), shape=(height, width, 3), dtype=np.uint8, tile=(256, 256),
                         photometric="rgb", bigtiff=True, compression="zlib",
                         compressionargs={"level": 1}, maxworkers=2)
else:
    import pyvips
    vt = [pyvips.Image.new_from_memory(np.ascontiguousarray(x).data, px, px, 3, "uchar") for x in tiles]
    cells = [vt[grid[r, c]].linear([1, 1, 1], offsets[r, c].tolist()).cast("uchar")
             for r in range(rows) for c in range(cols)]
    kw = {"Q": 90} if which == "vips-jpeg" else {}
    pyvips.Image.arrayjoin(cells, across=cols).tiffsave(
        out, tile=True, tile_width=256, tile_height=256, bigtiff=True,
        compression="jpeg" if which == "vips-jpeg" else "none", xres=300 / 25.4, yres=300 / 25.4, **kw)
print(f"{time.perf_counter() - t:.2f} {Path(out).stat().st_size}")
"""


def check_tiff(path: Path, width: int, dpi: int) -> tuple[int, int, bool]:
    """(width, height) of the file, and whether it is tiled with ``dpi`` recorded; raises if not."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        tags = page.tags  # type: ignore[union-attr]
        x = tags["XResolution"].value
        ok = page.is_tiled and tags["ResolutionUnit"].value == 2 and round(x[0] / x[1]) == dpi  # type: ignore[union-attr]
        shape = page.shape  # type: ignore[union-attr]
    if shape[1] != width or not ok:
        raise AssertionError(f"{path}: {shape} tiled/dpi ok={ok}")
    return int(shape[1]), int(shape[0]), bool(tif.is_bigtiff)


def make_runs(cols_list: list[int], tile_size: int, scratch: Path) -> None:
    rows = []
    for cols in cols_list:
        out = scratch / f"mosaic-{cols}.tif"
        cmd = [
            sys.executable,
            "-m",
            "app",
            "make",
            str(COVER),
            str(CORPUS / "tiles_photo"),
            "-o",
            str(out),
            "--cols",
            str(cols),
            "--tile-size",
            str(tile_size),
            "--dpi",
            "300",
            "--quiet",
        ]
        run = run_child(cmd, cwd=REPO)
        width, height, big = check_tiff(out, cols * tile_size, 300)
        rows.append(
            [
                cols,
                f"{width}x{height}",
                f"{width * height / 1e9:.2f}",
                f"{out.stat().st_size / 1e9:.2f}",
                "yes" if big else "no",
                run.seconds,
                run.peak_mb,
            ]
        )
        out.unlink()
    print(table(["cols", "pixels", "GP", "file GB", "BigTIFF", "wall s", "peak MB"], rows))
    peaks = [row[-1] for row in rows]
    print(
        f"\npeak memory, largest / smallest output: {float(peaks[-1]) / float(peaks[0]):.2f} "
        f"(pixels x{(cols_list[-1] / cols_list[0]) ** 2:.0f}); 1-minute load {os.getloadavg()[0]:.1f}"
    )


def writer_runs(scratch: Path) -> None:
    cols, rows, px = 200, 128, 160  # 32,000 x 20,480 = 655 MP
    which = ["tifffile", "tifffile-deflate"]
    try:
        import pyvips  # noqa: F401

        which += ["vips-none", "vips-jpeg"]
    except ImportError:
        print("(pyvips is not installed: pip install pyvips pyvips-binary to compare libvips)")
    results = []
    for name in which:
        out = scratch / f"{name}.tif"
        cmd = [
            sys.executable,
            "-c",
            _WRITER,
            name,
            str(cols),
            str(rows),
            str(px),
            str(out),
            str(CORPUS / "tiles_photo"),
        ]
        run = run_child(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        seconds, size = run.stdout.split()
        results.append([name, float(seconds), run.peak_mb, f"{int(size) / 1e9:.2f}"])
        out.unlink(missing_ok=True)
    print(f"\nwriters, {cols * px}x{rows * px} px of synthetic tinted cells:")
    print(table(["writer", "write s", "peak MB", "file GB"], results))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cols", default="50,100,200", help="columns of each run (default: %(default)s)")
    parser.add_argument("--tile-size", type=int, default=160)
    parser.add_argument("--writers", action="store_true", help="also compare the TIFF writers weighed")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=_common.SCRATCH.parent) as tmp:
        scratch = Path(tmp)
        make_runs([int(c) for c in args.cols.split(",")], args.tile_size, scratch)
        if args.writers:
            writer_runs(scratch)
    print(f"\n{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
