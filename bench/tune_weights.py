#!/usr/bin/env python3
"""Sweep the feature weights and count the issue's comparisons won against the unaltered peers.

    python bench/peers.py --covers mate-LadyBird,...,mate-YellowFlower --tiles photo --json peers.json
    python bench/tune_weights.py peers.json --chroma 0.1 --mean 1.25,1.5,2 --lightness 1.5,2,2.5

For every combination (cell_grid 4 unless ``--grid``, tint 0, photo tiles, 60 columns, 16 px) each
cover's mosaic is scored with ``../shared/tools/quality.py``; a comparison is won when view_de or
ssim4 is below pytomosaic's, photomosaic's, metapixel's and phomo's, and cell_de below metapixel's and
phomo's (10 per cover). This is how ``features.DEFAULT_WEIGHTS`` was chosen (docs/quality.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import CORPUS, COVERS, TILE_SETS, load_metric, run_one

import app.engine.features as features
from app.engine import MosaicParams, TileSet

UNALTERED = ("pytomosaic", "photomosaic", "metapixel", "phomo")


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def wins(ours: dict[str, float], peers: dict[str, dict[str, float]]) -> int:
    won = 0
    for peer in UNALTERED:
        figures = ("view_de", "ssim4", "cell_de") if peer in ("metapixel", "phomo") else ("view_de", "ssim4")
        won += sum(ours[f] < peers[peer][f] for f in figures)
    return won


def main() -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("peers", type=Path, help="JSON written by bench/peers.py --tiles photo")
    parser.add_argument("--grid", type=int, default=4)
    parser.add_argument("--chroma", type=floats, default=[0.1], help="chroma compression k values")
    parser.add_argument("--mean", type=floats, default=[1.5], help="mean weights")
    parser.add_argument("--lightness", type=floats, default=[2.0], help="lightness structure weights")
    parser.add_argument("--colour", type=floats, default=[1.0], help="a/b structure weights")
    args = parser.parse_args()
    peer_rows = [r for r in json.loads(args.peers.read_text()) if r["tiles"] == "photo" and "error" not in r]
    by_cover = {c: {r["peer"]: r for r in peer_rows if r["cover"] == c} for c in COVERS}
    tiles = TileSet.from_paths([TILE_SETS["photo"]], size=(16, 16))
    score = load_metric()
    with tempfile.TemporaryDirectory() as tmp:
        for k, mean, light, colour in itertools.product(args.chroma, args.mean, args.lightness, args.colour):
            weights = features.FeatureWeights(mean, (light, colour, colour), k)
            features.weights_for = lambda space, w=weights: w  # type: ignore[misc]
            total, parts = 0, []
            for cover in COVERS:
                params = MosaicParams(cols=60, tile_size=16, cell_grid=args.grid, tint=0)
                row = run_one(CORPUS / "covers" / f"{cover}.jpg", tiles, params, Path(tmp) / "m.png", score)
                won = wins(row, by_cover[cover])
                total += won
                parts.append(f"{cover} {row['cell_de']:.2f}/{row['view_de']:.2f}/{row['ssim4']:.3f} {won}/10")
            head = f"k={k} mean={mean} L={light} ab={colour}: {total}/{10 * len(COVERS)}"
            print(head, *parts, sep=" | ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
