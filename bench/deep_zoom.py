"""Benchmark: the 1.6 GP zoom pyramid of a 200 x 125-tile mosaic, its deepest tiles on request.

    python bench/deep_zoom.py [--tiles 60] [--cols 200] [--tile-size 32] [--photos 300]

Starts a real server (``python -m app serve``) on a scratch data folder, uploads ``--photos``
photos (320 px crops of the corpus covers: real pictures, large enough for 256 px cells), makes a
mosaic of mate-LadyBird (2560 x 1600: 125 rows at 200 columns) and, once its pyramid is ready,
asks for deepest-level tiles at random places: one at a time (latency), then a viewer's screenful
at once (24 tiles from 4 connections). Prints the pyramid's size, tile times (median, max) and the
server's memory (RSS before the first deep tile, after, and its peak).
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
from _common import CORPUS, REPO, SCRATCH
from PIL import Image

from app.engine.pyramid import DziLayout

COVER = CORPUS / "covers" / "mate-LadyBird.jpg"


def photos(count: int) -> list[Path]:
    """``count`` 320 x 320 (or 320 x 400) JPEG crops of the corpus covers, made once."""
    folder = SCRATCH / f"deep-photos-{count}"
    made = sorted(folder.glob("*.jpg"))
    if len(made) == count:
        return made
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    covers = sorted((CORPUS / "covers").glob("mate-*.jpg"))
    for i in range(count):
        with Image.open(covers[i % len(covers)]) as im:
            w, h = 320, 320 if i % 2 else 400
            x, y = rng.randrange(im.width - w), rng.randrange(im.height - h)
            im.convert("RGB").crop((x, y, x + w, y + h)).save(folder / f"p{i:04d}.jpg", quality=90)
    return sorted(folder.glob("*.jpg"))


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(get: object, until: object, seconds: float = 600) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + seconds
    while True:
        record = get()  # type: ignore[operator]
        if until(record):  # type: ignore[operator]
            return record  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise TimeoutError(str(record)[:500])
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=60, help="deepest tiles asked one at a time")
    parser.add_argument("--cols", type=int, default=200)
    parser.add_argument("--tile-size", type=int, default=32)
    parser.add_argument("--photos", type=int, default=300)
    args = parser.parse_args()
    files = photos(args.photos)
    with tempfile.TemporaryDirectory(dir=SCRATCH) as data:
        port = free_port()
        env = {**os.environ, "TESSERA_DATA_DIR": data, "TESSERA_LOG_LEVEL": "WARNING"}
        server = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(port)], cwd=REPO, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            run(f"http://127.0.0.1:{port}", server.pid, files, args)
        finally:
            server.terminate()
            server.wait(timeout=30)


def run(base: str, pid: int, files: list[Path], args: argparse.Namespace) -> None:
    client = httpx.Client(base_url=base, timeout=120)
    wait(lambda: _try(client, "/api/health"), lambda r: r is not None, 60)
    started_mb = rss_mb(pid)
    session = client.post(
        "/api/sessions", files=[("tiles", (p.name, p.read_bytes(), "image/jpeg")) for p in files]
    ).json()
    wait(lambda: client.get(session["status_url"]).json(), lambda s: s["state"] != "indexing")
    t = time.perf_counter()
    created = client.post(
        f"/api/sessions/{session['id']}/mosaics",
        files={"cover": (COVER.name, COVER.read_bytes(), "image/jpeg")},
        data={"cols": str(args.cols), "tile_size": str(args.tile_size)},
    ).json()
    mosaic = wait(lambda: client.get(created["status_url"]).json(), lambda m: m["dzi_url"] is not None)
    built = time.perf_counter() - t
    layout = DziLayout.from_descriptor(client.get(mosaic["dzi_url"]).text)
    files_url = mosaic["dzi_url"].removesuffix(".dzi") + "_files"
    deepest = layout.max_level
    cols, rows = layout.tile_counts(deepest)
    before_mb = rss_mb(pid)
    rng = random.Random(13)
    times = []
    for _ in range(args.tiles):
        col, row = rng.randrange(cols), rng.randrange(rows)
        t = time.perf_counter()
        response = client.get(f"{files_url}/{deepest}/{col}_{row}.jpg")
        times.append(time.perf_counter() - t)
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg", response.text
    c0, r0 = rng.randrange(cols - 6), rng.randrange(rows - 4)
    screen = [(c0 + c, r0 + r) for r in range(4) for c in range(6)]

    def fetch(cell: tuple[int, int]) -> int:
        return client.get(f"{files_url}/{deepest}/{cell[0]}_{cell[1]}.jpg").status_code

    t = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(fetch, screen))
    screenful = time.perf_counter() - t
    assert set(codes) == {200}, codes
    after_mb, peak_mb = rss_mb(pid), rss_mb(pid, "VmHWM")
    print(f"load: {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} cores")
    print(f"mosaic {mosaic['cols']} x {mosaic['rows']} tiles of {args.tile_size} px, render "
          f"{mosaic['width']} x {mosaic['height']} px; made in {built:.1f} s")  # fmt: skip
    gigapixels = layout.width * layout.height / 1e9
    print(f"zoom pyramid {layout.width:,} x {layout.height:,} px ({gigapixels:.2f} GP), "
          f"{layout.levels} levels, deepest {cols} x {rows} tiles of {layout.tile_size} px")  # fmt: skip
    print(f"deepest tiles one at a time ({len(times)}): median {statistics.median(times) * 1000:.0f} ms, "
          f"max {max(times) * 1000:.0f} ms; a screenful (24, 4 at once): {screenful:.2f} s")  # fmt: skip
    print(f"server RSS: {started_mb:.0f} MB at start, {before_mb:.0f} MB before the first deep tile, "
          f"{after_mb:.0f} MB after; peak {peak_mb:.0f} MB; growth from start {peak_mb - started_mb:.0f} MB "
          f"(bound 2048 MB)")  # fmt: skip


def _try(client: httpx.Client, path: str) -> object:
    try:
        return client.get(path).json()
    except httpx.HTTPError:
        return None


if __name__ == "__main__":
    main()
