"""Speed and memory of the peers against ``tessera make`` on the same inputs, as ratios.

    python bench/peer_speed.py [--quick] [--venv /tmp/peers] [--peers phomo,mosaicraft,metapixel]

Every tool gets the same cover, tile folder, columns and tile size, repetition allowed, and its
own tile loading counted in its time (settings as ../shared/PEERS.md describes: phomo greedy with
n = cells; mosaicraft preset "fast" with its grid forced to COLS x ROWS; metapixel
prepare + ``--search=local --distance=0`` on the cover pre-resized). Python peers run from their own
virtual environment (``--venv``; create it as PEERS.md says), metapixel from apt. Each tool is run
cold in a fresh process; peak RSS is that of its largest process. Peers run once (they take a
minute where tessera takes seconds); tessera's figure is the median of three.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

from _common import COVER, REPO, ChildRun, run_child, table
from e2e import portrait_cover
from inputs import phone_dir, tiles_dir
from PIL import Image, ImageOps

PEERS = ("phomo", "mosaicraft", "metapixel", "pytomosaic")

# pytomosaic: its only knob is the cell size in cover pixels, so the cover is pre-resized.
_PYTOMOSAIC = """
import sys
from pytomosaic import createMosaic
cover, tiles, px, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
createMosaic(cover, tiles, cropSize=px).save(out)
"""

# mosaicraft's CLI only takes a target tile count: replace its grid function to force COLS x ROWS.
_MOSAICRAFT = """
import sys
import mosaicraft.core as core
from mosaicraft import MosaicGenerator
cover, tiles, cols, rows, px, out = sys.argv[1:7]
cols, rows, px = int(cols), int(rows), int(px)
core.calc_grid = lambda target, w, h: (cols, rows, cols * rows)
gen = MosaicGenerator(tiles, preset="fast")
gen.generate(cover, out, target_tiles=cols * rows, tile_size=px, dedup_radius=0)
"""


def rows_for(cover: Path, cols: int) -> int:
    with Image.open(cover) as im:
        width, height = ImageOps.exif_transpose(im).size
    return round(cols * height / width)


def cover_at(cover: Path, cols: int, rows: int, px: int, tmp: Path) -> Path:
    """The cover resized to COLS*PX x ROWS*PX, for tools whose cell size is in cover pixels."""
    path = tmp / "cover.png"
    with Image.open(cover) as im:
        ImageOps.exif_transpose(im).convert("RGB").resize((cols * px, rows * px)).save(path)
    return path


def peer_cmd(peer: str, cover: Path, tiles: Path, cols: int, px: int, tmp: Path, venv: Path) -> list[str]:
    rows, out = rows_for(cover, cols), tmp / "mosaic.png"
    if peer == "phomo":
        cmd = [str(venv / "bin" / "phomo"), str(cover), str(tiles), "-o", str(out), "-c", str(cols / rows)]
        cmd += ["-s", str(cols * px), str(rows * px), "-C", "1", "-S", str(px), str(px)]
        return [*cmd, "-n", str(cols * rows), "--greedy", "-j", "2"]
    if peer == "mosaicraft":
        args = [str(cover), str(tiles), str(cols), str(rows), str(px), str(out)]
        return [str(venv / "bin" / "python"), "-c", _MOSAICRAFT, *args]
    if peer == "metapixel":
        lib, small = tmp / "lib", cover_at(cover, cols, rows, px, tmp)
        script = f"""
            set -e
            export HOME='{tmp}'
            rm -rf '{lib}' && mkdir -p '{lib}'
            metapixel-prepare --width={px} --height={px} '{tiles}' '{lib}' >/dev/null
            metapixel --width={px} --height={px} --search=local --distance=0 --library='{lib}' \\
                --metapixel '{small}' '{out}' >/dev/null
        """
        return ["bash", "-c", textwrap.dedent(script)]
    if peer == "pytomosaic":
        small = cover_at(cover, cols, rows, px, tmp)
        return [str(venv / "bin" / "python"), "-c", _PYTOMOSAIC, str(small), str(tiles), str(px), str(out)]
    raise ValueError(f"unknown peer {peer!r}")


def tessera_cmd(cover: Path, tiles: Path, cols: int, px: int, tmp: Path) -> list[str]:
    """A cold run: a new, empty tile cache each time (as a first run on a folder)."""
    out = tmp / "mosaic.jpg"
    cache = Path(tempfile.mkdtemp(dir=tmp, prefix="cache-"))
    app = [sys.executable, "-m", "app", "make", str(cover), str(tiles), "-o", str(out), "--cache", str(cache)]
    return [*app, "--cols", str(cols), "--tile-size", str(px), "-q"]


def run_case(
    name: str, tiles: Path, cols: int, px: int, peers: list[str], venv: Path, cover: Path = COVER
) -> list[list[object]]:
    count = len([p for p in tiles.iterdir() if p.is_file()])
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ours = [run_child(tessera_cmd(cover, tiles, cols, px, tmp), cwd=REPO) for _ in range(3)]
        base = ChildRun(
            statistics.median(r.seconds for r in ours), statistics.median(r.peak_mb for r in ours), ""
        )
        rows.append(
            [name, count, f"{cols}x{rows_for(cover, cols)}", px, "tessera", base.seconds, 1.0, base.peak_mb]
        )
        for peer in peers:
            try:
                run = run_child(peer_cmd(peer, cover, tiles, cols, px, tmp, venv), cwd=tmp)
            except RuntimeError as exc:
                print(f"{peer} failed: {exc}", file=sys.stderr)
                continue
            ratio = run.seconds / base.seconds
            rows.append(
                [name, count, f"{cols}x{rows_for(cover, cols)}", px, peer, run.seconds, ratio, run.peak_mb]
            )
            print(f"{name}: {peer} {run.seconds:.1f} s ({ratio:.1f}x tessera)", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only 1,000 small tiles")
    parser.add_argument(
        "--case", choices=("all", "small", "phone", "80x120"), default="all",
        help="80x120: 5,000 small tiles into 80 x 120 cells of 24 px (the issue's end-to-end case)",
    )  # fmt: skip
    parser.add_argument("--venv", type=Path, default=Path("/tmp/peers"))
    parser.add_argument("--peers", default=",".join(PEERS))
    args = parser.parse_args()
    peers = args.peers.split(",")
    rows: list[list[object]] = []
    if args.case in ("all", "small"):
        rows += run_case("small tiles", tiles_dir(1000), 80, 32, peers, args.venv)
    if args.case in ("all", "phone") and not args.quick:
        rows += run_case("12 MP phone", phone_dir(), 80, 32, peers, args.venv)
    if args.case in ("all", "80x120") and not args.quick:
        rows += run_case("small tiles 80x120", tiles_dir(5000), 80, 24, peers, args.venv, portrait_cover())
    print(f"\nCold runs, cover {COVER.name}; x tessera = peer seconds / tessera seconds\n")
    print(table(["input", "tiles", "grid", "px", "tool", "seconds", "x tessera", "peak MB"], rows))


if __name__ == "__main__":
    main()
