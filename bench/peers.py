#!/usr/bin/env python3
"""Run the peer mosaic tools on the same inputs as bench/quality.py and score them the same way.

    python3 -m venv /tmp/peers
    /tmp/peers/bin/pip install phomo 'mosaicraft[faiss]' photomosaic pytomosaic requests
    apt-get install -y metapixel
    python bench/peers.py --covers mate-LadyBird,skimage-astronaut --tiles photo

Fair settings as ../shared/PEERS.md describes them: same cover, tile folder, columns and tile size
for every tool, rows = round(cols * H / W), repetition allowed, the tool's own tile loading counted
in its time. Each Python peer runs in its own virtual environment (``--venv``), in a subprocess.
Not imported by the tests and not needed by CI.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import CORPUS, TILE_SETS, format_row, load_metric

PEERS = ["pytomosaic", "photomosaic", "metapixel", "phomo", "mosaicraft"]

_PYTOMOSAIC = """
import sys
from pytomosaic import createMosaic
cover, tiles, px, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
createMosaic(cover, tiles, cropSize=px).save(out)
"""

# photomosaic 0.3.1 on NumPy 2 / current scikit-image: np.product is gone and crop_to_fit passes
# float crop widths; both patched. adapt_to_pool (palette remapping of the cover) is skipped, so
# this is its plain nearest-mean-colour mosaic, built from its public functions.
_PHOTOMOSAIC = """
import sys, glob
import numpy as np
np.product = np.prod
import photomosaic as pm
import photomosaic.photomosaic as pmm
from skimage import img_as_float
from skimage.io import imread, imsave
from skimage.transform import resize
from skimage.util import crop

def crop_to_fit(image, shape):
    d = np.argmin(np.array(image.shape)[:2] / np.array(shape))
    enlarged = tuple(np.ceil(np.array(image.shape[:len(shape)]) * shape[d] / image.shape[d]).astype(int))
    resized = resize(image, enlarged + image.shape[len(shape):], mode="constant", anti_aliasing=False)
    widths = [(int(np.floor((a - t) / 2)), int(np.ceil((a - t) / 2))) for a, t in zip(resized.shape, shape)]
    widths += [(0, 0)] * (resized.ndim - len(shape))
    return crop(resized, widths)

pmm.crop_to_fit = crop_to_fit
cover, tiles, rows, cols, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
pool = pm.make_pool(tiles + "/*")
image = pm.rescale_commensurate(img_as_float(imread(cover)[..., :3]), (rows, cols), 0)
converted = pm.perceptual(image)
parts = pm.partition(converted, grid_dims=(rows, cols), depth=0)
colors = [np.mean(converted[p].reshape(-1, 3), 0) for p in parts]
match = pm.simple_matcher(pool)
mosaic = pm.draw_mosaic(np.ones_like(image), parts, [match(c) for c in colors])
imsave(out, (np.clip(mosaic, 0, 1) * 255).round().astype(np.uint8))
"""

# mosaicraft's CLI only takes a target tile count, so its grid function is replaced to force
# COLS x ROWS; preset "fast" (k-NN + error diffusion) with no dedup radius = repetition allowed.
_MOSAICRAFT = """
import sys
import mosaicraft.core as core
from mosaicraft import MosaicGenerator
cover, tiles, rows, cols, px, out = sys.argv[1:7]
rows, cols, px = int(rows), int(cols), int(px)
core.calc_grid = lambda target, w, h: (cols, rows, cols * rows)
gen = MosaicGenerator(tiles, preset="fast")
gen.generate(cover, out, target_tiles=cols * rows, tile_size=px, dedup_radius=0)
"""


def resized_cover(cover: Path, cols: int, rows: int, px: int, folder: Path) -> Path:
    """The cover resized to exactly COLS*PX x ROWS*PX (for tools that take cells in cover pixels)."""
    with Image.open(cover) as im:
        upright = ImageOps.exif_transpose(im).convert("RGB")
    path = folder / f"{cover.stem}_{cols}x{rows}.png"
    upright.resize((cols * px, rows * px), Image.Resampling.LANCZOS).save(path)
    return path


def peer_command(
    peer: str, cover: Path, tiles: Path, cols: int, rows: int, px: int, out: Path, tmp: Path, python: str
) -> tuple[list[str] | str, dict[str, str]]:
    """The command line (or shell script) that runs ``peer`` and writes ``out``, and its env."""
    env = dict(os.environ)
    small = str(resized_cover(cover, cols, rows, px, tmp))
    if peer == "pytomosaic":
        return [python, "-c", _PYTOMOSAIC, small, str(tiles), str(px), str(out)], env
    if peer == "photomosaic":
        return [python, "-c", _PHOTOMOSAIC, small, str(tiles), str(rows), str(cols), str(out)], env
    if peer == "mosaicraft":
        return [
            python,
            "-c",
            _MOSAICRAFT,
            str(cover),
            str(tiles),
            str(rows),
            str(cols),
            str(px),
            str(out),
        ], env
    if peer == "phomo":
        phomo = str(Path(python).parent / "phomo")
        cmd = [phomo, str(cover), str(tiles), "-o", str(out), "-c", str(cols / rows)]
        cmd += ["-s", str(cols * px), str(rows * px), "-C", "1", "-S", str(px), str(px)]
        cmd += ["-n", str(cols * rows), "--greedy", "-j", "2"]
        return cmd, env
    if peer == "metapixel":
        lib = tmp / "metapixel-lib"
        env["HOME"] = str(tmp)  # so no ~/.metapixelrc is read
        script = textwrap.dedent(f"""
            set -e
            rm -rf '{lib}' && mkdir -p '{lib}'
            metapixel-prepare --width={px} --height={px} '{tiles}' '{lib}' >/dev/null
            metapixel --width={px} --height={px} --search=local --distance=0 --library='{lib}' \
                --metapixel '{small}' '{out}' >/dev/null
        """)
        return script, env
    raise ValueError(f"unknown peer {peer}")


def run_peer(peer: str, cover: Path, tiles: Path, cols: int, px: int, python: str) -> dict[str, Any]:
    with Image.open(cover) as im:
        width, height = ImageOps.exif_transpose(im).size
    rows = round(cols * height / width)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        out = tmp / "mosaic.png"
        cmd, env = peer_command(peer, cover, tiles, cols, rows, px, out, tmp, python)
        started = time.perf_counter()
        run = subprocess.run(
            cmd, shell=isinstance(cmd, str), env=env, capture_output=True, text=True, timeout=900, cwd=tmp
        )
        seconds = time.perf_counter() - started
        if run.returncode != 0 or not out.exists():
            return {"peer": peer, "error": (run.stderr or run.stdout)[-400:]}
        figures = load_metric()(str(cover), str(out), cols, rows)
    return {"peer": peer, "seconds": round(seconds, 2), "cols": cols, "rows": rows, **figures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--covers", default="mate-LadyBird,skimage-astronaut")
    parser.add_argument("--tiles", default="photo")
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--cols", type=int, default=60)
    parser.add_argument("--tile-size", type=int, default=16)
    parser.add_argument("--venv", default="/tmp/peers", help="virtual environment holding the Python peers")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    python = str(Path(args.venv) / "bin" / "python")
    rows: list[dict[str, Any]] = []
    print(format_row({"cover": "cover", "tiles": "tiles", "setting": "peer"}, header=True))
    for set_name in args.tiles.split(","):
        for cover_name in args.covers.split(","):
            cover = CORPUS / "covers" / f"{cover_name}.jpg"
            for peer in args.peers.split(","):
                row = run_peer(peer, cover, TILE_SETS[set_name], args.cols, args.tile_size, python)
                row.update(cover=cover_name, tiles=set_name, setting=peer)
                rows.append(row)
                if "error" in row:
                    print(f"{cover_name:<18} {set_name:<6} {peer:<12} FAILED: {row['error']!r}", flush=True)
                else:
                    print(format_row(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
