#!/usr/bin/env python3
"""What each mosaic option buys, in figures: covers x tile sets x settings through the engine.

    python bench/quality.py                      # every cover, both tile sets, every setting
    python bench/quality.py --covers mate-LadyBird,skimage-astronaut --tiles photo --settings default,tint20
    python bench/quality.py --json out.json      # also write the rows as JSON

Each mosaic is written as PNG (lossless) and scored with ``../shared/tools/quality.py``'s
``score`` (the metric every peer is measured with): cell_de, view_de and ssim4 (lower is better),
distinct, max_rep and adj_dup. ``seconds`` is the engine's time for the mosaic (cover, matching,
rendering) plus decoding the tile library, as a command-line run pays it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402

from app.engine import MosaicParams, TileSet, make_mosaic  # noqa: E402

SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus"
#: ``gen5000``: 5,000 tiles bench/inputs.py makes from the 300 photos (random square crops of 60-100 %
#: of the short side, half of them mirrored, each channel shifted by -20..20), for a larger library.
TILE_SETS = {
    "photo": CORPUS / "tiles_photo",
    "emoji": CORPUS / "tiles_emoji",
    "gen5000": Path(os.environ.get("TESSERA_BENCH_DIR", "/tmp/tessera-bench")) / "tiles_5000",
}
COVERS = [
    "mate-LadyBird",
    "skimage-astronaut",
    "mate-Aqua",
    "mate-Dune",
    "mate-FreshFlower",
    "mate-Storm",
    "mate-YellowFlower",
]
#: name -> MosaicParams fields besides cols and tile_size.
#: ``default`` keeps the default repetition rules (no tile next to itself, the automatic cap);
#: ``free`` and ``free-tint0`` lift them (``--max-uses 0 --min-distance 0``), as the peers run.
SETTINGS: dict[str, dict[str, Any]] = {
    "default": {},
    "tint0": {"tint": 0},
    "bg-white": {"tint": 0, "background": "#ffffff"},
    "bg-black": {"tint": 0, "background": "#000000"},
    "free": {"max_uses": 0, "min_distance": 0},
    "free-tint0": {"max_uses": 0, "min_distance": 0, "tint": 0},
    "grid1": {"cell_grid": 1, "tint": 0},
    "grid1-rgb": {"cell_grid": 1, "color_space": "rgb", "tint": 0},
    "grid2": {"cell_grid": 2, "tint": 0},
    "oklab": {"color_space": "oklab", "tint": 0},
    "rgb": {"color_space": "rgb", "tint": 0},
    "tint5": {"tint": 5},
    "tint10": {"tint": 10},
    "tint20": {"tint": 20},
    "maxuses4": {"max_uses": 4, "tint": 0},
    "maxuses4-tint10": {"max_uses": 4},
    "maxuses16": {"max_uses": 16, "tint": 0},
    "mindist2": {"min_distance": 2, "tint": 0},
    "unique": {"unique": True, "tint": 0},
}


def load_metric() -> Callable[[str, str, int, int], dict[str, Any]]:
    """``score`` from ../shared/tools/quality.py, imported by path (it is not a package)."""
    spec = importlib.util.spec_from_file_location("shared_quality", SHARED / "tools" / "quality.py")
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.score  # type: ignore[no-any-return]


_FIGURES = [("seconds", 7, ".2f"), ("cell_de", 7, ".2f"), ("view_de", 7, ".2f"), ("ssim4", 6, ".3f")]
_FIGURES += [("distinct", 8, "d"), ("max_rep", 7, "d"), ("adj_dup", 7, ".3f")]


def format_row(row: dict[str, Any], *, header: bool = False) -> str:
    """One line of the results table (or its header)."""
    text = f"{row['cover']:<18} {row['tiles']:<6} {row['setting']:<12}"
    for name, width, fmt in _FIGURES:
        text += f" {name:>{width}}" if header else f" {row[name]:>{width}{fmt}}"
    return text


def run_one(
    cover: Path, tiles: TileSet, params: MosaicParams, out: Path, score: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    started = time.perf_counter()
    result = make_mosaic(cover, tiles, params)
    seconds = time.perf_counter() - started
    Image.fromarray(result.image).save(out, compress_level=1)
    figures = score(str(cover), str(out), result.cols, result.rows)
    return {"seconds": seconds, "cols": result.cols, "rows": result.rows, **figures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--covers", default=",".join(COVERS), help="comma-separated cover names")
    parser.add_argument("--tiles", default="photo,emoji", help="comma-separated tile sets: photo, emoji")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated setting names")
    parser.add_argument("--cols", type=int, default=60)
    parser.add_argument("--tile-size", type=int, default=16)
    parser.add_argument("--keep", type=Path, default=None, help="keep the mosaics in this folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)

    score = load_metric()
    rows: list[dict[str, Any]] = []
    print(format_row({"cover": "cover", "tiles": "tiles", "setting": "setting"}, header=True))
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for set_name in args.tiles.split(","):
            t = time.perf_counter()
            tiles = TileSet.from_paths([TILE_SETS[set_name]], size=(args.tile_size, args.tile_size))
            decode_s = time.perf_counter() - t
            for cover_name in args.covers.split(","):
                cover = CORPUS / "covers" / f"{cover_name}.jpg"
                for setting in args.settings.split(","):
                    params = MosaicParams(cols=args.cols, tile_size=args.tile_size, **SETTINGS[setting])
                    out = folder / f"{cover_name}_{set_name}_{setting}.png"
                    row = run_one(cover, tiles, params, out, score)
                    row.update(cover=cover_name, tiles=set_name, setting=setting)
                    row["seconds"] = round(row["seconds"] + decode_s, 2)
                    rows.append(row)
                    print(format_row(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
