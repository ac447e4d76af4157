"""Hostile but valid inputs (issue 17) and the peak memory a child process spends on them.

Shared by the tests that assert each bound and by ``bench/attacks.py``, which prints the figures.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
#: The size of the issue's 16-bit PNG: under the default pixel limit, tiny once compressed.
SIDE = 9400


def grey16_png(path: Path, side: int = SIDE) -> Path:
    """A 16-bit greyscale PNG of ``side`` x ``side`` (stripes: a few hundred KB on disk)."""
    stripes = np.zeros((side, side), dtype=np.uint16)
    stripes[::2] = 40_000
    Image.fromarray(stripes).save(path, optimize=True)
    return path


def float_tiff(path: Path, side: int = SIDE) -> Path:
    """A 32-bit float greyscale TIFF (values 0..1), deflate-compressed."""
    stripes = np.zeros((side, side), dtype=np.float32)
    stripes[::2] = 0.6
    Image.fromarray(stripes).save(path, compression="tiff_deflate")
    return path


def palette_png(path: Path, side: int = SIDE) -> Path:
    """A palette PNG with a transparent entry (composited onto the background when decoded)."""
    index = (np.arange(side * side, dtype=np.uint32) % 7).astype(np.uint8).tobytes()
    im = Image.frombytes("P", (side, side), index)
    im.putpalette([0, 0, 0, 255, 0, 0] * 128)
    im.save(path, transparency=0)
    return path


def child_peak_mb(code: str, *args: str) -> float:
    """Run ``code`` in a fresh Python (repository importable; ``sys.argv[1:]`` = ``args``) and
    return how many MB its peak RSS grew while ``code`` ran: the high-water mark (VmHWM) is reset
    after the imports (Linux ``clear_refs``), so their own peak is not counted."""
    script = "\n".join([
        "import sys",
        "import numpy, PIL.Image, app.engine.tiles, app.engine.decode",
        "def _kb(key):",
        "    line = next(l for l in open('/proc/self/status') if l.startswith(key))",
        "    return int(line.split()[1])",
        "open('/proc/self/clear_refs', 'w').write('5')",  # the high-water mark starts again here
        "_base = _kb('VmRSS:')",
        textwrap.dedent(code),
        "print((_kb('VmHWM:') - _base) / 1024)",
    ])  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise AssertionError(f"child failed: {done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


#: Decode one file as a tile (what an upload's indexing does) / as a cover (what a render does).
DECODE_TILE = "app.engine.tiles.make_tile(sys.argv[1], name='x', size=(64, 64))"
DECODE_COVER = "app.engine.decode.load_rgb(sys.argv[1])"
