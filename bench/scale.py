"""Does the queue spread work? A burst of mosaics rendered by 1 worker, then by 2.

Starts its own Redis (Debian's redis-server) and S3 server (moto), one web process and the
workers, all on 127.0.0.1 and each with its own data folder; uploads one tile library, then
posts a burst of mosaics at once and times until the last is ready. Prints both times and the
ratio, and stops everything it started.

    python bench/scale.py                      # 20 mosaics, 1 then 2 workers
    python bench/scale.py --mosaics 10 --cols 120 --tile-size 32
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2 as httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CORPUS = REPO.parent / "shared" / "corpus"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Processes:
    """Everything started here, stopped in reverse order (SIGTERM, then SIGKILL)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            argv, cwd=REPO, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.started.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # pool processes left behind, if any

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            self.stop(proc)


def wait_until(check: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.TransportError, OSError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"{what} did not start in {timeout} s")


def burst(url: str, session_id: str, covers: list[Path], args: argparse.Namespace) -> float:
    """Post ``args.mosaics`` mosaics at once; seconds until the last is ready."""
    started = time.perf_counter()
    posted = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for number in range(args.mosaics):
            cover = covers[number % len(covers)]
            response = client.post(
                f"/api/sessions/{session_id}/mosaics",
                files={"cover": (cover.name, cover.read_bytes(), "image/jpeg")},
                data={"cols": str(args.cols), "tile_size": str(args.tile_size)},
            )
            response.raise_for_status()
            posted.append(response.json()["status_url"])
        pending = set(posted)
        while pending:
            for status_url in list(pending):
                state = client.get(status_url).json()["state"]
                if state == "failed":
                    raise SystemExit(f"a mosaic failed: {client.get(status_url).json()}")
                if state == "ready":
                    pending.discard(status_url)
            time.sleep(0.05)
    return time.perf_counter() - started


def jobs_per_worker(redis_url: str, session_id: str) -> dict[str, int]:
    """How many of the session's renders each worker ran (from the shared records)."""
    from app.jobs.redis_backend import RedisRecords, connect

    counts = Counter(m.worker or "?" for m in RedisRecords(connect(redis_url)).mosaics_of(session_id))
    return {name.split("@")[0]: n for name, n in sorted(counts.items())}


def run(workers: int, args: argparse.Namespace, folder: Path) -> float:
    procs = Processes(folder)
    try:
        redis_port, s3_port, web_port = free_port(), free_port(), free_port()
        procs.start("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""])
        procs.start("moto", ["moto_server", "-H", "127.0.0.1", "-p", str(s3_port)])
        env = {
            "TESSERA_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
            "TESSERA_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
            "TESSERA_S3_BUCKET": f"bench-{secrets.token_hex(4)}",
            "TESSERA_S3_REGION": "us-east-1",
            "TESSERA_S3_ACCESS_KEY": "bench",
            "TESSERA_S3_SECRET_KEY": "bench",
            "TESSERA_WORKER_CONCURRENCY": "1",
            "TESSERA_DECODE_THREADS": "1",
        }
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{s3_port}/moto-api/", timeout=1), "moto_server")
        url = f"http://127.0.0.1:{web_port}"
        web_env = {**env, "TESSERA_DATA_DIR": str(folder / "web")}
        procs.start(
            "web", [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(web_port)], web_env
        )
        wait_until(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, "web")
        for number in range(1, workers + 1):
            worker_env = {**env, "TESSERA_DATA_DIR": str(folder / f"w{number}")}
            procs.start(
                f"w{number}", [sys.executable, "-m", "app", "worker", "--name", f"w{number}"], worker_env
            )
        for number in range(1, workers + 1):
            log = folder / f"w{number}.log"
            wait_until(lambda log=log: b" ready." in log.read_bytes(), f"worker w{number}")

        tiles = sorted((CORPUS / "tiles_photo").glob("*.jpg"))[: args.tiles]
        files = [("tiles", (p.name, p.read_bytes(), "image/jpeg")) for p in tiles]
        session = httpx.post(f"{url}/api/sessions", files=files, timeout=120).json()
        wait_until(
            lambda: httpx.get(f"{url}{session['status_url']}", timeout=5).json()["state"] == "ready",
            "index build", timeout=300,
        )  # fmt: skip
        covers = sorted((CORPUS / "covers").glob("mate-*.jpg"))
        # Warm every worker's cache of the library first: the burst measures rendering.
        burst(url, session["id"], covers, argparse.Namespace(**{**vars(args), "mosaics": 2 * workers}))
        before = jobs_per_worker(env["TESSERA_BROKER_URL"], session["id"])
        seconds = burst(url, session["id"], covers, args)
        after = jobs_per_worker(env["TESSERA_BROKER_URL"], session["id"])
        spread = {name: n - before.get(name, 0) for name, n in after.items()}
        print(f"  renders per worker in the burst: {spread}", flush=True)
        return seconds
    finally:
        procs.stop_all()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mosaics", type=int, default=20, help="mosaics in the burst (default: 20)")
    parser.add_argument("--cols", type=int, default=200, help="tiles across (default: 200)")
    parser.add_argument("--tile-size", type=int, default=40, help="tile width in px (default: 40)")
    parser.add_argument("--tiles", type=int, default=100, help="tile photos in the library (default: 100)")
    args = parser.parse_args()
    for program in ("redis-server", "moto_server"):
        if shutil.which(program) is None:
            raise SystemExit(f"{program} is needed (bash scripts/test.sh installs it)")
    times = {}
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as tmp:
        for workers in (1, 2):
            folder = Path(tmp) / f"{workers}-workers"
            folder.mkdir()
            times[workers] = run(workers, args, folder)
            label = f"{workers} worker{'s' if workers > 1 else ' '}"
            print(f"{label}: {args.mosaics} mosaics in {times[workers]:6.2f} s", flush=True)
    print(f"speed-up with 2 workers: {times[1] / times[2]:.2f}x (ideal on 2 cores: 2.00x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
