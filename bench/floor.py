"""Cold ``tessera make`` against the decode floor, and a second run through the tile cache.

    python bench/floor.py [--repeats 3] [--case small|phone|all]

Cases (the issue's): 20,000 small photos (150-390 px) into 120 columns of 16 px, and 300
phone-size 12 MP JPEGs into 80 columns of 32 px. Each repeat, interleaved:

* the floor: ``../shared/tools/decode_floor.py`` on the same folder at the tile size (a bare
  reduced-size decode on all cores; its interpreter start and imports are not counted);
* cold: ``tessera make`` with a new, empty tile cache (interpreter start included);
* second: ``tessera make`` again with another cover, after 50 files were removed from the
  folder and 100 added, through the cache the cold run filled (it decodes only the 100).

Prints medians and the ratios ``cold / floor`` (target <= 1.25) and ``second / cold``
(target <= 0.2), and the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import CORPUS, DECODE_FLOOR, REPO, SCRATCH, files_in, run_child, table
from inputs import phone_dir, tiles_dir

COVERS = (CORPUS / "covers" / "mate-LadyBird.jpg", CORPUS / "covers" / "mate-FreshFlower.jpg")


def floor_seconds(folder: Path, px: int) -> float:
    cmd = [sys.executable, str(DECODE_FLOOR), str(folder), str(px)]
    return float(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()[0])


def make(cover: Path, folder: Path, cols: int, px: int, cache: Path, out: Path) -> float:
    cmd = [sys.executable, "-m", "app", "make", str(cover), str(folder), "-o", str(out)]
    cmd += ["--cols", str(cols), "--tile-size", str(px), "--cache", str(cache), "-q"]
    return run_child(cmd, cwd=REPO).seconds


def measure(name: str, source: Path, cols: int, px: int, repeats: int) -> list[object]:
    files = files_in(source)
    kept, added = files[: len(files) - 100], files[len(files) - 100 :]
    floors, colds, seconds = [], [], []
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp_name:
        tmp = Path(tmp_name)
        for r in range(repeats):
            work = tmp / f"work{r}"  # hard links: the same bytes, a folder that may change
            work.mkdir()
            for f in kept:
                (work / f.name).hardlink_to(f)
            if r == 0:
                floor_seconds(work, px)  # page cache
            floors.append(floor_seconds(work, px))
            cache = tmp / f"cache{r}"
            colds.append(make(COVERS[0], work, cols, px, cache, tmp / "cold.jpg"))
            for f in kept[:50]:
                (work / f.name).unlink()
            for f in added:
                (work / f.name).hardlink_to(f)
            seconds.append(make(COVERS[1], work, cols, px, cache, tmp / "second.jpg"))
            shutil.rmtree(work)
            shutil.rmtree(cache)
    floor, cold, second = (statistics.median(v) for v in (floors, colds, seconds))
    return [name, len(kept), cols, px, floor, cold, cold / floor, second, second / cold]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--case", choices=("all", "small", "phone"), default="all")
    parser.add_argument("--small-dir", type=Path, help="another folder of small photos (default: generated)")
    parser.add_argument("--phone-dir", type=Path, help="another folder of phone JPEGs (default: generated)")
    args = parser.parse_args()
    SCRATCH.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    rows = []
    if args.case in ("all", "small"):
        rows.append(measure("small photos", args.small_dir or tiles_dir(20000), 120, 16, args.repeats))
    if args.case in ("all", "phone"):
        rows.append(measure("12 MP phone", args.phone_dir or phone_dir(), 80, 32, args.repeats))
    print(f"\nmedians of {args.repeats}; cold includes interpreter start, the floor does not\n")
    header = ["input", "files", "cols", "px", "floor s", "cold s", "cold/floor", "second s", "second/cold"]
    print(table(header, rows))
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
