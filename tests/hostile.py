"""Hostile but valid inputs (issue 17) and the peak memory a child process spends on them.

Shared by the tests that assert each bound and by ``bench/attacks.py``, which prints the figures.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

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


def tiny_png_zip(count: int = 300) -> bytes:
    """The issue's 48 KB zip: ``count`` PNGs of 1 x 1 pixel, each of another colour."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(count):
            png = io.BytesIO()
            Image.new("RGB", (1, 1), (i * 7 % 256, i * 13 % 256, i * 29 % 256)).save(png, "PNG")
            zf.writestr(f"p{i:03d}.png", png.getvalue())
    return buffer.getvalue()


#: The issue's mosaic at another shape: 8 cells (8 x 1 on a 2:1 cover) of 512 x 2048 pixels.
SHAPE_ATTACK = {"cols": "8", "tile_size": "512", "aspect": "1:4", "format": "jpeg"}


def shape_attack(url: str, pid: int, data_dir: Path, cover: Path) -> tuple[float, int]:
    """The issue's attack on the server at ``url`` (process ``pid``, running its jobs on its own
    threads, ``TESSERA_JOB_PROCESSES=false``; data folder ``data_dir``): the zip of 300 1 x 1
    PNGs, then :data:`SHAPE_ATTACK` and its zoom pyramid. Returns how many MB the server's peak
    memory grew and how many bytes the data folder grew for that mosaic (an ordinary small
    mosaic comes first, so what the first render loads is not counted)."""
    from app.storage import folder_size

    session = _post(
        f"{url}/api/sessions", files={"tiles": ("tiny.zip", tiny_png_zip(300), "application/zip")}
    )
    if _wait(f"{url}{session['status_url']}", {"ready", "failed"})["tiles_accepted"] != 300:
        raise AssertionError("the 300 PNGs were not all taken in")
    picture = wide_cover(cover)
    _mosaic_with_pyramid(url, session["id"], picture, {"cols": "8", "tile_size": "16"})
    disk, base = folder_size(data_dir), reset_peak(pid)
    mosaic = _mosaic_with_pyramid(url, session["id"], picture, SHAPE_ATTACK)
    if (mosaic["width"], mosaic["height"]) != (8 * 512, 2048):
        raise AssertionError(f"the mosaic is {mosaic['width']} x {mosaic['height']}")
    return proc_status_mb(pid, "VmHWM:") - base, folder_size(data_dir) - disk


def _post(url: str, **kwargs: Any) -> dict[str, Any]:
    import httpx2 as httpx

    response = httpx.post(url, timeout=60, **kwargs)
    if response.status_code != 202:
        raise AssertionError(f"{response.status_code}: {response.text}")
    return dict(response.json())


def _wait(url: str, until: set[str], timeout: float = 180) -> dict[str, Any]:
    import httpx2 as httpx

    deadline = time.monotonic() + timeout
    while True:
        record: dict[str, Any] = httpx.get(url, timeout=60).json()
        if record["state"] in until:
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"still {record['state']} after {timeout} s")
        time.sleep(0.2)


def _mosaic_with_pyramid(url: str, session_id: str, cover: bytes, options: dict[str, str]) -> dict[str, Any]:
    """Make a mosaic and wait for it and its zoom pyramid (cut from the same cells)."""
    files = {"cover": ("cover.jpg", cover, "image/jpeg")}
    created = _post(f"{url}/api/sessions/{session_id}/mosaics", files=files, data=options)
    status = f"{url}{created['status_url']}"
    mosaic = _wait(status, {"ready", "failed"})
    if mosaic["state"] != "ready":
        raise AssertionError(f"the mosaic failed: {mosaic['error']}")
    deadline = time.monotonic() + 180
    while (mosaic.get("pyramid") or {}).get("state") not in ("ready", "failed"):
        if time.monotonic() > deadline:
            raise AssertionError(f"its pyramid is still {mosaic.get('pyramid')}")
        time.sleep(0.2)
        mosaic = _wait(status, {"ready"})
    if mosaic["pyramid"]["state"] != "ready":
        raise AssertionError(f"its pyramid failed: {mosaic['pyramid']}")
    return mosaic


def wide_cover(source: Path) -> bytes:
    """A real photo cropped to 2:1 (one row of eight 1:4 cells), as JPEG bytes."""
    import io

    with Image.open(source) as im:
        im = im.convert("RGB")
        width, height = im.size
        crop = im.crop((0, (height - width // 2) // 2, width, (height - width // 2) // 2 + width // 2))
    out = io.BytesIO()
    crop.save(out, "JPEG", quality=90)
    return out.getvalue()


def reset_peak(pid: int) -> float:
    """Start the high-water mark (VmHWM) of process ``pid`` again; returns its RSS now, in MB."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return proc_status_mb(pid, "VmRSS:")


def proc_status_mb(pid: int, key: str) -> float:
    """A figure of /proc/<pid>/status (``VmRSS:``, ``VmHWM:``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {key} for process {pid}")
