"""Mosaics from a cached library: what a second mosaic of the same session costs, and a poster.

    python bench/cached.py [--quick] [--repeats N]

The library is built once per tile count at the stored size (64 px) and saved with
``TileSet.save`` plus its feature array, as the web layer keeps it. Each measured run is a fresh
process that loads it (``TileSet.load``, features ``np.load``, index refitted), makes the mosaic
and encodes it; the times are taken inside that process, so interpreter start is excluded.

* second mosaic: 80 columns, 32 px tiles (derived from the 64 px thumbnails), 5,000 tiles;
  target < 0.5 s excluding the encoding of the output file.
* poster: 200 x 150 tiles of 64 px (12,800 x 9,600 px) to JPEG; target < 10 s including
  encoding, peak memory a small multiple of the output (the output is 369 MB as RGB).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _common import CORPUS, COVER, SCRATCH, run_child, table
from inputs import tiles_dir

STORED_PX = 64
POSTER_COVER = CORPUS / "covers" / "mate-FreshFlower.jpg"  # 1600 x 1203: 200 cols -> 150 rows


def library(count: int) -> Path:
    """The saved library of ``count`` tiles at 64 px, built on first use."""
    from app.engine import MosaicParams, build_index
    from app.engine.tiles import TileSet

    folder = SCRATCH / f"library_{count}_{STORED_PX}"
    if not (folder / "tiles.json").exists():
        tiles = TileSet.from_paths([tiles_dir(count)], size=(STORED_PX, STORED_PX))
        folder.mkdir(parents=True, exist_ok=True)
        build_index(tiles, MosaicParams()).save(folder / "features.npy")
        tiles.save(folder)  # tiles.json last: it marks the library complete
    return folder


def child(folder: str, cover: str, cols: int, px: int, output: str) -> None:
    """Inside the measured process: load, match, render, encode; print the phase times as JSON."""
    import sklearn.neighbors  # noqa: F401  (imported already in a running server)

    from app.engine import MosaicParams, TileIndex, make_mosaic
    from app.engine.render import encode
    from app.engine.tiles import TileSet

    t0 = time.perf_counter()
    tiles = TileSet.load(folder)
    index = TileIndex(np.load(Path(folder) / "features.npy"))
    loaded = time.perf_counter() - t0
    result = make_mosaic(cover, tiles, MosaicParams(cols=cols, tile_size=px), index=index)
    made = time.perf_counter() - t0
    with open(output, "wb") as fh:
        encode(result.image, fh, "jpeg")
    total = time.perf_counter() - t0
    size = f"{result.image.shape[1]}x{result.image.shape[0]}"
    timings = {**result.timings, "load": loaded, "mosaic": made, "total": total}
    print(json.dumps({"size": size, **timings}))


def measure(name: str, count: int, cover: Path, cols: int, px: int, repeats: int) -> list[object]:
    folder = library(count)
    output = SCRATCH / "cached-out.jpg"
    cmd = [sys.executable, __file__, "--child", str(folder), str(cover), str(cols), str(px), str(output)]
    runs = [run_child(cmd) for _ in range(repeats)]
    stats = [json.loads(r.stdout) for r in runs]

    def med(key: str) -> float:
        return statistics.median(s[key] for s in stats)

    encode_s = statistics.median(s["total"] - s["mosaic"] for s in stats)
    peak = statistics.median(r.peak_mb for r in runs)
    return [
        name, count, stats[0]["size"], med("load"), med("match"), med("render"), med("mosaic"),
        encode_s, med("total"), peak,
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one run each, 5,000 tiles only")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        folder, cover, cols, px, output = args.child
        child(folder, cover, int(cols), int(px), output)
        return
    repeats = args.repeats or (1 if args.quick else 5)
    SCRATCH.mkdir(parents=True, exist_ok=True)
    rows = [measure("second mosaic, 80 cols 32 px", 5000, COVER, 80, 32, repeats)]
    rows.append(measure("poster 200x150 of 64 px", 5000, POSTER_COVER, 200, 64, repeats))
    if not args.quick:
        rows.append(measure("second mosaic, 80 cols 32 px", 20000, COVER, 80, 32, repeats))
        rows.append(measure("poster 200x150 of 64 px", 20000, POSTER_COVER, 200, 64, repeats))
    print(f"\nFrom a cached {STORED_PX} px library, median of {repeats} fresh processes (seconds)\n")
    header = ["case", "tiles", "output px", "load+index", "match", "render", "to mosaic", "encode"]
    print(table([*header, "total", "peak MB"], rows))


if __name__ == "__main__":
    main()
