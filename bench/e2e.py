"""End to end, cold: a new ``tessera make`` process from a folder of tile photos to a finished
JPEG, its wall time and peak memory, against the decoder's floor on the same files.

    python bench/e2e.py [--quick] [--repeats N]

Rows: 1,000 and 10,000 generated small tiles x 80 and 200 columns x 32 and 64 px tiles; the
issue's two headline cases (300 phone photos of 12 MP into 80 columns of 32 px; 5,000 small
tiles into 80 x 120 cells of 24 px); and 20,000 tiles at 64 px (the memory target, < 1 GB).
Peak RSS is that of the largest process of the run (``/usr/bin/time``), the main one.
The floor (``decode_floor.py``) excludes the interpreter start; ``tessera make`` includes it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

from _common import COVER, DECODE_FLOOR, REPO, SCRATCH, run_child, table
from inputs import phone_dir, tiles_dir
from PIL import Image

OUTPUT = SCRATCH / "e2e-out.jpg"


def portrait_cover() -> Path:
    """A 2:3 crop of the usual cover, so 80 columns give 120 rows (the issue's 80 x 120 case)."""
    path = SCRATCH / "cover_portrait_2x3.jpg"
    if not path.exists():
        with Image.open(COVER) as im:
            height = im.height
            width = height * 2 // 3
            left = (im.width - width) // 2
            im.convert("RGB").crop((left, 0, left + width, height)).save(path, quality=92)
    return path


def floor_seconds(folder: Path, px: int) -> float:
    cmd = [sys.executable, str(DECODE_FLOOR), str(folder), str(px)]
    return float(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()[0])


def make_cmd(cover: Path, folder: Path, cols: int, px: int) -> list[str]:
    app = [sys.executable, "-m", "app", "make", str(cover), str(folder), "-o", str(OUTPUT)]
    return [*app, "--cols", str(cols), "--tile-size", str(px), "-q"]


def measure(name: str, cover: Path, folder: Path, cols: int, px: int, repeats: int) -> list[object]:
    """Interleaved runs of the floor and of ``tessera make``; medians of each."""
    count = len([p for p in folder.iterdir() if p.is_file()])
    floors, walls, peaks = [], [], []
    floor_seconds(folder, px)  # page cache
    for _ in range(repeats):
        floors.append(floor_seconds(folder, px))
        run = run_child(make_cmd(cover, folder, cols, px), cwd=REPO)
        walls.append(run.seconds)
        peaks.append(run.peak_mb)
    floor, wall = statistics.median(floors), statistics.median(walls)
    output_mb = _output_megabytes()
    return [name, count, cols, px, wall, floor, wall / floor, statistics.median(peaks), output_mb]


def _output_megabytes() -> float:
    Image.MAX_IMAGE_PIXELS = None  # our own poster, not an untrusted upload
    with Image.open(OUTPUT) as im:
        return im.width * im.height * 3 / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 tiles and the phone photos only")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    SCRATCH.mkdir(parents=True, exist_ok=True)
    cases: list[tuple[str, Path, Path, int, int]] = []
    counts = [1000] if args.quick else [1000, 10000]
    for count in counts:
        for cols in (80, 200):
            for px in (32, 64):
                cases.append(("small tiles", COVER, tiles_dir(count), cols, px))
    cases.append(("12 MP phone", COVER, phone_dir(), 80, 32))
    if not args.quick:
        cases.append(("small tiles 80x120", portrait_cover(), tiles_dir(5000), 80, 24))
        cases.append(("memory target", COVER, tiles_dir(20000), 80, 64))
    rows = [measure(*case, repeats) for case in cases]
    print(f"\nCold `tessera make` to JPEG, median of {repeats} (cover {COVER.name} unless 80x120)\n")
    header = ["input", "tiles", "cols", "px", "make s", "floor s", "x floor", "peak MB", "output MB"]
    print(table(header, rows))


if __name__ == "__main__":
    main()
