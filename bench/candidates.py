"""The cell-colour candidate search of transparent tiles (``background="cell"``): fast against plain.

    python bench/candidates.py [--repeats N] [--cols 60,120]

For each cover of the corpus and column count, the emoji library (150 transparent tiles, 16 px)
is searched by :func:`app.engine.mosaic.candidates_on_cells` and by the plain search it replaced
(``reference_candidates`` in tests/engine/test_transparency.py: three tree indexes, every one of
the 48 candidates per cell composited and measured, duplicates included). Prints the median
seconds of each, the ratio, whether the answers are identical (tiles, and distances to the bit),
and the load average before and after; then the ``match`` stage of whole mosaics made both ways.
The machine is shared: repeat and read medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from unittest import mock

import numpy as np
from _common import CORPUS, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cols", default="60,120", help="column counts, comma separated")
    parser.add_argument("--covers", default="mate-LadyBird,skimage-astronaut,mate-Storm")
    args = parser.parse_args()

    from app.engine import MosaicParams, TileSet, make_mosaic
    from app.engine import mosaic as engine
    from tests.engine.test_transparency import cells_of, reference_candidates

    tiles = TileSet.from_paths([CORPUS / "tiles_emoji"], size=(16, 16))
    rows: list[list[object]] = []
    load_before = os.getloadavg()
    for cover in args.covers.split(","):
        path = CORPUS / "covers" / f"{cover}.jpg"
        for cols in (int(c) for c in args.cols.split(",")):
            params = MosaicParams(cols=cols, tile_size=16).validate()
            cells, colours = cells_of(path, params)
            index = engine.build_index(tiles, params)
            times: dict[str, list[float]] = {"plain": [], "fast": []}
            answers = {}
            for _ in range(args.repeats):  # interleaved, so load swings hit both alike
                for name, search in (("plain", reference_candidates), ("fast", engine.candidates_on_cells)):
                    t = time.perf_counter()
                    answers[name] = search(tiles, index, cells, colours, params)
                    times[name].append(time.perf_counter() - t)
            same = all(np.array_equal(a, b) for a, b in zip(answers["plain"], answers["fast"], strict=True))
            plain, fast = statistics.median(times["plain"]), statistics.median(times["fast"])
            rows.append([cover, cols, len(cells), f"{plain:.3f}", f"{fast:.3f}", f"{plain / fast:.1f}x",
                         "yes" if same else "NO"])  # fmt: skip
    load_after = os.getloadavg()
    print(table(["cover", "cols", "cells", "plain s", "fast s", "ratio", "identical"], rows))
    print(
        f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} (1 min), {os.cpu_count()} cores"
    )

    match_rows: list[list[object]] = []
    for cover in args.covers.split(","):
        path = CORPUS / "covers" / f"{cover}.jpg"
        params = MosaicParams(cols=60, tile_size=16)
        timings: dict[str, list[float]] = {"plain": [], "fast": []}
        grids = {}
        searches = {"plain": reference_candidates, "fast": engine.candidates_on_cells}
        for _ in range(max(1, args.repeats // 2)):
            for name, search in searches.items():
                with mock.patch.object(engine, "candidates_on_cells", search):
                    result = make_mosaic(path, tiles, params)
                timings[name].append(result.timings["match"])
                grids[name] = result.grid
        plain, fast = statistics.median(timings["plain"]), statistics.median(timings["fast"])
        same = "yes" if np.array_equal(grids["plain"], grids["fast"]) else "NO"
        match_rows.append([cover, f"{plain:.3f}", f"{fast:.3f}", f"{plain / fast:.1f}x", same])
    print(table(["cover (60 cols, default rules)", "match plain s", "match fast s", "ratio", "same grid"],
                match_rows))  # fmt: skip
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
