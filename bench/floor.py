"""Cold ``tessera make`` against the decode floor, and a second run through the tile cache.

    python bench/floor.py [--repeats 3] [--case small|phone|all] [--change 0.01]

Cases (the issue's): 20,000 small photos (150-390 px) into 120 columns of 16 px, and 300
phone-size 12 MP JPEGs into 80 columns of 32 px. Each repeat, interleaved:

* the floor: ``../shared/tools/decode_floor.py`` on the same folder at the tile size (a bare
  reduced-size decode on all cores; its interpreter start and imports are not counted in its
  wall time, which it prints itself);
* cold: ``tessera make`` with a new, empty tile cache (interpreter start included);
* second: ``tessera make`` again with another cover, after ``--change`` of the folder's files
  (1 %, at least one file) were removed and as many new ones added, through the cache the cold
  run filled (it decodes only the new ones).

Prints medians of wall seconds and of CPU seconds (user + system of the process and the workers
it waited for, from ``/usr/bin/time``: less sensitive to a busy machine than wall time), the
ratios ``cold / floor`` (target <= 1.25) and ``second / cold`` (target <= 0.2), and the load
average before and after.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from _common import CORPUS, DECODE_FLOOR, REPO, SCRATCH, files_in, run_child, table
from inputs import phone_dir, tiles_dir

COVERS = (CORPUS / "covers" / "mate-LadyBird.jpg", CORPUS / "covers" / "mate-FreshFlower.jpg")


def floor_run(folder: Path, px: int) -> tuple[float, float]:
    """The floor's own wall seconds (decoding only) and its CPU seconds (the whole process)."""
    run = run_child([sys.executable, str(DECODE_FLOOR), str(folder), str(px)])
    return float(run.stdout.split()[0]), run.cpu or 0.0


def make(cover: Path, folder: Path, cols: int, px: int, cache: Path, out: Path) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "app", "make", str(cover), str(folder), "-o", str(out)]
    cmd += ["--cols", str(cols), "--tile-size", str(px), "--cache", str(cache), "-q"]
    run = run_child(cmd, cwd=REPO)
    return run.seconds, run.cpu or 0.0


def measure(name: str, source: Path, cols: int, px: int, repeats: int, change: float) -> list[object]:
    files = files_in(source)
    changed = max(1, round(len(files) * change))
    kept, added = files[: len(files) - changed], files[len(files) - changed :]
    floors, colds, seconds = [], [], []
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp_name:
        tmp = Path(tmp_name)
        for r in range(repeats):
            work = tmp / f"work{r}"  # hard links: the same bytes, a folder that may change
            work.mkdir()
            for f in kept:
                (work / f.name).hardlink_to(f)
            if r == 0:
                floor_run(work, px)  # page cache
            floors.append(floor_run(work, px))
            cache = tmp / f"cache{r}"
            colds.append(make(COVERS[0], work, cols, px, cache, tmp / "cold.jpg"))
            for f in kept[:changed]:
                (work / f.name).unlink()
            for f in added:
                (work / f.name).hardlink_to(f)
            seconds.append(make(COVERS[1], work, cols, px, cache, tmp / "second.jpg"))
            print(f"  {name} repeat {r + 1}: floor {floors[-1][0]:.2f} s, cold {colds[-1][0]:.2f} s, "
                  f"second {seconds[-1][0]:.2f} s; load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
            shutil.rmtree(work)
            shutil.rmtree(cache)
    (floor, floor_cpu), (cold, cold_cpu), (second, second_cpu) = (
        (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
        for runs in (floors, colds, seconds)
    )
    return [
        name, len(kept), changed, cols, px, floor, cold, cold / floor, second, second / cold,
        floor_cpu, cold_cpu, second_cpu, second_cpu / cold_cpu,
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--case", choices=("all", "small", "phone"), default="all")
    parser.add_argument("--small-dir", type=Path, help="another folder of small photos (default: generated)")
    parser.add_argument("--phone-dir", type=Path, help="another folder of phone JPEGs (default: generated)")
    parser.add_argument("--change", type=float, default=0.01, help="share of files removed and added (0.01)")
    args = parser.parse_args()
    SCRATCH.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    rows = []
    if args.case in ("all", "small"):
        small = args.small_dir or tiles_dir(20000)
        rows.append(measure("small photos", small, 120, 16, args.repeats, args.change))
    if args.case in ("all", "phone"):
        rows.append(measure("12 MP phone", args.phone_dir or phone_dir(), 80, 32, args.repeats, args.change))
    print(f"\nmedians of {args.repeats}; cold includes interpreter start, the floor does not\n")
    header = ["input", "files", "changed", "cols", "px", "floor s", "cold s", "cold/floor", "second s",
              "second/cold", "floor cpu s", "cold cpu s", "second cpu s", "second/cold cpu"]  # fmt: skip
    print(table(header, rows))
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
