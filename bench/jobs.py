"""Jobs beside requests: does a render slow the web process down, and do two users' mosaics
finish in about the time of one each on two cores?

    python bench/jobs.py                       # jobs in processes (the default) and on threads
    python bench/jobs.py --mode processes --repeats 5 --cols 160

For each mode a server is started on loopback (``TESSERA_JOB_PROCESSES`` true or false). It
prints the median ``/healthz`` latency at rest and while a render runs (their ratio), and the
median time of one mosaic alone and of two made at once by two users (``two / one``: 1.0 when
the two run side by side on two cores, 2.0 when they queue or share one core), and the CPU
seconds the web process itself spent while one mosaic rendered (what competes with requests
for its GIL: with job processes only the status polls).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
from _common import CORPUS, REPO

COVER = CORPUS / "covers" / "mate-LadyBird.jpg"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, processes: bool) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = tempfile.mkdtemp(prefix="tessera-jobs-")
        env = {**os.environ, "TESSERA_DATA_DIR": self.data, "TESSERA_WORKERS": "2",
               "TESSERA_JOB_PROCESSES": "true" if processes else "false"}  # fmt: skip
        command = ["uvicorn", "app.main:app", "--port", str(self.port), "--log-level", "error"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *command],
            cwd=REPO, env=env,
        )  # fmt: skip
        for _ in range(300):
            try:
                httpx.get(f"{self.url}/healthz", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the web process (not its job processes) has used."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def _session(client: httpx.Client, tiles: list[Path]) -> str:
    files = [("tiles", (p.name, p.read_bytes(), "image/jpeg")) for p in tiles]
    session = client.post("/api/sessions", files=files).json()
    while client.get(session["status_url"]).json()["state"] == "indexing":
        time.sleep(0.05)
    return str(session["status_url"])


def _mosaic(client: httpx.Client, session_url: str, cols: int) -> float:
    """Seconds from asking for a mosaic until its record is ready."""
    t = time.perf_counter()
    made = client.post(
        f"{session_url}/mosaics",
        files={"cover": (COVER.name, COVER.read_bytes(), "image/jpeg")},
        data={"cols": str(cols), "tile_size": "24"},
    ).json()
    while True:
        record: dict[str, Any] = client.get(made["status_url"]).json()
        if record["state"] in ("ready", "failed"):
            break
        time.sleep(0.02)
    if record["state"] != "ready":
        raise RuntimeError(record)
    return time.perf_counter() - t


def _healthz(client: httpx.Client, seconds: float | None, stop: threading.Event | None = None) -> list[float]:
    out = []
    end = time.monotonic() + (seconds or 1e9)
    while time.monotonic() < end and not (stop and stop.is_set()):
        t = time.perf_counter()
        client.get("/healthz")
        out.append(time.perf_counter() - t)
        time.sleep(0.02)
    return out


def _idle(client: httpx.Client) -> None:
    while not client.get("/healthz").json()["jobs_idle"]:
        time.sleep(0.05)


def measure(processes: bool, args: argparse.Namespace) -> dict[str, float]:
    server = Server(processes)
    tiles = sorted((CORPUS / "tiles_photo").glob("*.jpg"))
    try:
        with httpx.Client(base_url=server.url, timeout=300) as client:
            a, b = _session(client, tiles[: args.tiles]), _session(client, tiles[-args.tiles :])
            _mosaic(client, a, args.cols)  # warm: libraries at this shape, imports
            _mosaic(client, b, args.cols)
            _idle(client)
            rest = _healthz(client, 2.0)
            busy: list[float] = []
            one: list[float] = []
            two: list[float] = []
            cpu: list[float] = []
            for _ in range(args.repeats):
                _idle(client)
                stop = threading.Event()
                with httpx.Client(base_url=server.url, timeout=60) as probe:
                    poller = threading.Thread(
                        target=lambda p=probe, s=stop: busy.extend(_healthz(p, None, s))
                    )
                    poller.start()
                    before = server.cpu_seconds()
                    one.append(_mosaic(client, a, args.cols))
                    cpu.append(server.cpu_seconds() - before)
                    stop.set()
                    poller.join()
                _idle(client)
                with httpx.Client(base_url=server.url, timeout=300) as other:
                    times: list[float] = []
                    t = threading.Thread(target=lambda o=other, ts=times: ts.append(_mosaic(o, b, args.cols)))
                    started = time.perf_counter()
                    t.start()
                    _mosaic(client, a, args.cols)
                    t.join()
                    two.append(time.perf_counter() - started)
    finally:
        server.stop()
    return {
        "healthz_rest_ms": statistics.median(rest) * 1000,
        "healthz_busy_ms": statistics.median(busy) * 1000,
        "healthz_busy_p95_ms": sorted(busy)[int(len(busy) * 0.95)] * 1000,
        "one_s": statistics.median(one),
        "two_s": statistics.median(two),
        "web_cpu_s": statistics.median(cpu),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=("both", "processes", "threads"), default="both")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cols", type=int, default=160)
    parser.add_argument("--tiles", type=int, default=150)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    modes = {"both": (True, False), "processes": (True,), "threads": (False,)}[args.mode]
    for processes in modes:
        r = measure(processes, args)
        print(
            f"{'processes' if processes else 'threads':<9}  healthz at rest {r['healthz_rest_ms']:.1f} ms, "
            f"during a render median {r['healthz_busy_ms']:.1f} ms (p95 {r['healthz_busy_p95_ms']:.1f} ms, "
            f"ratio {r['healthz_busy_ms'] / r['healthz_rest_ms']:.2f}x); one mosaic {r['one_s']:.2f} s, "
            f"two users at once {r['two_s']:.2f} s (two/one {r['two_s'] / r['one_s']:.2f}x); "
            f"web process CPU during one mosaic {r['web_cpu_s']:.2f} s"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
