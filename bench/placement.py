#!/usr/bin/env python3
"""How long the default placement (no tile next to itself, the automatic cap) takes, and what it
costs in feature distance, against the older two-step placement (cap first, then the neighbour
repair), on the same candidates.

    python bench/placement.py                          # 2,280 cells x 300 photos; 10,000 x 20,000
    python bench/placement.py --repeats 5 --big-tiles /tmp/tessera-bench/tiles_20000

``joint`` is :func:`app.engine.matching.choose_tiles` with the default rules (the priced joint
placement of :func:`app.engine.spread.place_jointly`); ``two-step`` is ``choose_tiles`` with the
cap only followed by :func:`app.engine.spread.spread_out`. Times are medians of ``--repeats``
wall-clock runs of the matching alone (features and candidates included, decoding not), and the
median CPU seconds of as many more runs; ``cost``
is the mean feature distance of a cell to its tile. Both placements are checked against the rules.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import CORPUS, SCRATCH, median_time, table
from numpy.typing import NDArray
from PIL import Image

from app.engine import MosaicParams, TileIndex, TileSet
from app.engine.features import cover_features
from app.engine.matching import Rules, choose_tiles, closest_repeat
from app.engine.mosaic import build_index
from app.engine.spread import spread_out


def two_step(
    index: TileIndex, cells: NDArray[np.floating], rows: int, cols: int, rules: Rules
) -> NDArray[np.intp]:
    """The placement before the joint one: the cap alone, then the neighbour repair."""
    cap = rules.cap(rows * cols, len(index))
    capped = choose_tiles(index, cells, rows, cols, rules=Rules(max_uses=cap))
    return spread_out(index, cells, capped, cap=cap, radius=rules.min_distance)


def cpu_seconds(run: Callable[[], object]) -> float:
    """CPU seconds of this process (all its threads) for one call of ``run``: less shaken than
    wall time by other work on a shared machine."""
    t = time.process_time()
    run()
    return time.process_time() - t


def measure(cover: Path, tile_dir: Path, cols: int, repeats: int) -> list[list[object]]:
    tiles = TileSet.from_paths([tile_dir], size=(16, 16))
    params = MosaicParams(cols=cols, tile_size=16)
    image = Image.open(cover).convert("RGB")
    rows = params.rows_for(image.width, image.height)
    index = build_index(tiles, params)
    cells = cover_features(image, cols, rows, color_space=params.color_space, grid=params.cell_grid)
    rules = params.rules
    cap = rules.cap(rows * cols, len(tiles))
    out: list[list[object]] = []
    for name, place in (
        ("joint", lambda: choose_tiles(index, cells, rows, cols, rules=rules)),
        ("two-step", lambda: two_step(index, cells, rows, cols, rules)),
    ):
        grid = place()
        assert closest_repeat(grid, up_to=1) > 1, f"{name}: a tile next to itself"
        assert np.bincount(grid.ravel()).max() <= (cap or grid.size), f"{name}: over the cap"
        cost = float(np.linalg.norm(cells - index.features[grid.ravel()], axis=1).mean())
        seconds = median_time(place, repeats)
        cpu = statistics.median(cpu_seconds(place) for _ in range(repeats))
        out.append(
            [
                cover.stem,
                f"{rows * cols:,}",
                f"{len(tiles):,}",
                name,
                f"{seconds:.2f}",
                f"{cpu:.2f}",
                f"{cost:.2f}",
            ]
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--big-tiles", type=Path, default=SCRATCH / "tiles_20000")
    args = parser.parse_args(argv)
    covers = CORPUS / "covers"
    rows = measure(covers / "mate-LadyBird.jpg", CORPUS / "tiles_photo", 60, args.repeats)
    if args.big_tiles.is_dir():
        rows += measure(covers / "skimage-astronaut.jpg", args.big_tiles, 100, args.repeats)
    else:
        print(f"({args.big_tiles} not found: the 10,000-cell run is skipped)")
    print(table(["cover", "cells", "tiles", "placement", "seconds", "cpu seconds", "cost"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
