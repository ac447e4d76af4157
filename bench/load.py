"""Load test: N simulated users upload tiles, poll, make a mosaic and download it, against a
server on loopback. Bounded in users, rounds and seconds; prints requests/s, errors and latency.

    python bench/load.py                      # starts its own server on a free port
    python bench/load.py --url http://127.0.0.1:8000 --users 20 --rounds 3

Only loopback addresses are accepted as targets.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx2 as httpx

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"


def _kind(method: str, url: str) -> str:
    parts = url.strip("/").split("/")
    if method == "GET" and parts[-1] == "image":
        return "GET image"
    if method == "GET":
        return "GET status"
    return f"{method} {'mosaic' if parts[-1] == 'mosaics' else parts[-1] if len(parts) < 3 else 'session'}"


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.by_kind: dict[str, list[float]] = {}
        self.errors: list[str] = []

    async def request(
        self, client: httpx.AsyncClient, method: str, url: str, **kwargs: object
    ) -> httpx.Response:
        t = time.perf_counter()
        try:
            response = await client.request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            self.errors.append(f"{method} {url}: {exc!r}")
            raise
        took = time.perf_counter() - t
        self.latencies.append(took)
        self.by_kind.setdefault(_kind(method, url), []).append(took)
        if response.status_code >= 400:
            self.errors.append(f"{method} {url}: {response.status_code} {response.text[:120]}")
        return response


async def user(
    number: int, client: httpx.AsyncClient, stats: Stats, args: argparse.Namespace, deadline: float
) -> int:
    tiles = sorted((CORPUS / "tiles_photo").glob("*.jpg"))
    mine = tiles[(number * 37) % 200 :][: args.tiles]
    covers = sorted((CORPUS / "covers").glob("*.jpg"))
    files = [("tiles", (p.name, p.read_bytes(), "image/jpeg")) for p in mine]
    session = (await stats.request(client, "POST", "/api/sessions", files=files)).json()
    done = 0
    while (await stats.request(client, "GET", session["status_url"])).json()["state"] == "indexing":
        await asyncio.sleep(args.poll)
    for round_ in range(args.rounds):
        if time.monotonic() > deadline:
            break
        cover = covers[(number + round_) % len(covers)]
        mosaic = (
            await stats.request(
                client, "POST", f"/api/sessions/{session['id']}/mosaics",
                files={"cover": (cover.name, cover.read_bytes(), "image/jpeg")},
                data={"cols": str(args.cols), "tile_size": "16"},
            )
        ).json()  # fmt: skip
        while True:
            record = (await stats.request(client, "GET", mosaic["status_url"])).json()
            if record["state"] in ("ready", "failed"):
                break
            await asyncio.sleep(args.poll)
        if record["state"] == "ready":
            await stats.request(client, "GET", record["image_url"])
            done += 1
        else:
            stats.errors.append(f"mosaic failed: {record['error']}")
    await stats.request(client, "DELETE", session["status_url"])
    return done


async def run(args: argparse.Namespace) -> None:
    stats = Stats()
    deadline = time.monotonic() + args.seconds
    limits = httpx.Limits(max_connections=args.users * 2)
    async with httpx.AsyncClient(base_url=args.url, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(user(i, client, stats, args, deadline) for i in range(args.users)), return_exceptions=True
        )
        elapsed = time.perf_counter() - started
    mosaics = sum(r for r in results if isinstance(r, int))
    crashed = [r for r in results if isinstance(r, BaseException)]
    lat = sorted(stats.latencies)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan")
    print(f"users {args.users}, rounds {args.rounds}, tiles/user {args.tiles}, cols {args.cols}")
    print(f"requests {len(lat)} in {elapsed:.1f} s = {len(lat) / elapsed:.1f} req/s; mosaics made {mosaics}")
    print(f"errors {len(stats.errors) + len(crashed)}")
    print(f"latency median {statistics.median(lat) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    for kind, values in sorted(stats.by_kind.items()):
        values.sort()
        print(
            f"  {kind:<14} n={len(values):<5} median {statistics.median(values) * 1000:7.1f} ms"
            f"  p99 {values[min(len(values) - 1, int(len(values) * 0.99))] * 1000:7.1f} ms"
        )
    for line in (stats.errors + [repr(c) for c in crashed])[:10]:
        print("  ", line)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running server (loopback only); default: start one")
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="mosaics per user")
    parser.add_argument("--tiles", type=int, default=60, help="tiles each user uploads")
    parser.add_argument("--cols", type=int, default=40)
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between status polls")
    parser.add_argument("--seconds", type=float, default=120, help="stop starting new rounds after this")
    args = parser.parse_args()
    args.users, args.rounds = min(args.users, 200), min(args.rounds, 20)
    server = None
    if args.url is None:
        port = _free_port()
        data = tempfile.mkdtemp(prefix="tessera-load-")
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port), "--log-level", "warning"],
            cwd=REPO, env={**os.environ, "TESSERA_DATA_DIR": data},
        )  # fmt: skip
        args.url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(f"{args.url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
    host = urlparse(args.url).hostname or ""
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        sys.exit("load tests run against loopback addresses only")
    try:
        asyncio.run(run(args))
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
