"""Tile ingest throughput against the decoder's own limit.

    python bench/ingest.py [--quick] [--repeats N] [--px PX]

For each input set, every figure is the median of ``--repeats`` fresh processes (cold: no tile
cache; the files themselves are in the page cache after the first run). The floor is
``shared/tools/decode_floor.py``: reduced-size decode of the same files and nothing else, on a
process pool. "1 core" runs pin the process tree to one CPU with ``taskset``. Times exclude the
interpreter start for both sides (each measures itself around the work).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import CORPUS, DECODE_FLOOR, REPO, table
from inputs import phone_dir, tiles_dir


def child(folder: str, px: int, parallel: str) -> None:
    """Run inside the measured process: build the tile set, print the seconds it took."""
    from app.engine.tiles import TileSet

    t = time.perf_counter()
    tiles = TileSet.from_paths([folder], size=(px, px), parallel=parallel)  # type: ignore[arg-type]
    seconds = time.perf_counter() - t
    print(f"{seconds:.4f} {len(tiles)}")


def timed(cmd: list[str], one_core: bool) -> float:
    """Seconds the command prints as its first word (its own measurement of the work)."""
    if one_core and shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO)
    return float(out.stdout.split()[0])


def measure(name: str, folder: Path, px: int, repeats: int, cores: list[bool]) -> list[list[object]]:
    """One table row per (cores, method): seconds, tiles/s and the ratio to the floor.

    Runs are interleaved (floor, ours, floor, ours, ...) so load from other users of the machine
    hits both sides alike; each figure is a median."""
    count = len([p for p in folder.iterdir() if p.is_file()])
    floor_cmd = [sys.executable, str(DECODE_FLOOR), str(folder), str(px)]
    ours = [sys.executable, __file__, "--child", str(folder), str(px)]
    timed(floor_cmd, False)  # warm the page cache
    rows: list[list[object]] = []
    for one_core in cores:
        label = "1" if one_core else str(os.cpu_count())
        methods = ["process"] if one_core else ["process", "thread"]
        cmds = {"decode floor": floor_cmd} | {f"tessera ({m})": [*ours, m] for m in methods}
        times: dict[str, list[float]] = {key: [] for key in cmds}
        for _ in range(repeats):
            for key, cmd in cmds.items():
                times[key].append(timed(cmd, one_core))
        floor = statistics.median(times["decode floor"])
        for key, values in times.items():
            secs = statistics.median(values)
            rows.append([name, count, label, key, secs, count / secs, secs / floor])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no 10,000-tile set")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--px", type=int, default=32, help="tile size (default 32)")
    parser.add_argument("--child", nargs=3, metavar=("DIR", "PX", "PARALLEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.child[2])
        return
    repeats = args.repeats or (3 if args.quick else 5)
    sets = [("corpus tiles_photo", CORPUS / "tiles_photo"), ("12 MP phone JPEGs", phone_dir())]
    if not args.quick:
        sets.append(("generated small tiles", tiles_dir(10000)))
    rows: list[list[object]] = []
    for name, folder in sets:
        rows += measure(name, folder, args.px, repeats, [True, False])
    print(f"\nIngest to {args.px} px tiles, median of {repeats} cold processes\n")
    header = ["input", "files", "cores", "method", "seconds", "tiles/s", "x floor"]
    print(table(header, rows))


if __name__ == "__main__":
    main()
