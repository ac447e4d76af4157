"""Shared pieces of the benchmarks: where inputs live, timing with medians, peak memory of a
child process, and plain-text tables.

Every bench script puts the repository on ``sys.path`` by importing this module first.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CORPUS = REPO.parent / "shared" / "corpus"
DECODE_FLOOR = REPO.parent / "shared" / "tools" / "decode_floor.py"
#: Generated inputs (12 MP phone-like JPEGs, thousands of tiles) live here, never in the repository.
SCRATCH = Path(os.environ.get("TESSERA_BENCH_DIR", "/tmp/tessera-bench"))
COVER = CORPUS / "covers" / "mate-LadyBird.jpg"


def median_time(run: Callable[[], object], repeats: int) -> float:
    """Median wall seconds of ``repeats`` calls of ``run``."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


@dataclass(frozen=True)
class ChildRun:
    """One finished child process: wall seconds, peak RSS in MB, its stdout and the user + system
    CPU seconds of it and the children it waited for (None without ``/usr/bin/time``)."""

    seconds: float
    peak_mb: float
    stdout: str
    cpu: float | None = None


def run_child(cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> ChildRun:
    """Run ``cmd`` to completion and measure its wall time and peak RSS (largest of its process tree,
    through ``/usr/bin/time`` when present, else ``getrusage`` of the children)."""
    timer = Path("/usr/bin/time")
    full = [str(timer), "-f", "@@maxrss=%M @@cpu=%U+%S", *cmd] if timer.exists() else list(cmd)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    proc = subprocess.run(full, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    cpu = None
    for line in proc.stderr.splitlines():
        if line.startswith("@@maxrss="):
            rss, _, used = line.partition(" @@cpu=")
            peak_kb = int(rss.split("=", 1)[1])
            user, _, system = used.partition("+")
            cpu = float(user) + float(system) if system else None
    if peak_kb == before and not timer.exists():
        peak_kb = 0  # an earlier, larger child hides this one: no figure rather than a wrong one
    return ChildRun(seconds, peak_kb / 1024, proc.stdout, cpu)


def median_child(cmd: Sequence[str], repeats: int, **kwargs: object) -> ChildRun:
    """The run of median time among ``repeats``; its peak RSS is the median of all runs."""
    runs = sorted((run_child(cmd, **kwargs) for _ in range(repeats)), key=lambda r: r.seconds)  # type: ignore[arg-type]
    mid = runs[len(runs) // 2]
    return ChildRun(mid.seconds, statistics.median(r.peak_mb for r in runs), mid.stdout)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table, right-aligned numbers, ready for docs/speed.md."""
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
        "| " + " | ".join("-" * w for w in widths) + " |",
    ]
    for row in cells:
        lines.append("| " + " | ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
