"""Jobs beside requests: does a render slow the web process down, and do two users' mosaics
finish in about the time of one each on two cores?

    python bench/jobs.py                       # jobs in processes (the default) and on threads
    python bench/jobs.py --mode processes --repeats 5 --cols 160
    python bench/jobs.py --baseline /tmp/main  # also the job processes of another checkout

For each mode a server is started on loopback (``TESSERA_JOB_PROCESSES`` true or false; with
``--baseline DIR``, a third one runs the code in DIR, e.g. ``git archive main | tar -x -C DIR``).
All are started first and measured in turns, repeat by repeat, so the machine's load falls on
each alike. It prints the median ``/healthz`` latency at rest and while a render runs (their
ratio); the median time of one mosaic alone, and the job's own time as its record reports it
(``job``: from taking the job to writing the file, library loading included); the median time
of two made at once by two users (``two / one``: 1.0 when the two run side by side on two cores,
2.0 when they queue or share one core); and the CPU seconds the web process itself spent while
one mosaic rendered (what competes with requests for its GIL: with job processes only the
status polls). The status is polled, and /healthz probed during the render, every ``--poll``
seconds (0.1; the page polls every 0.4): at 0.02 on a loaded machine the web process's own CPU
share, answering 100 requests a second, slows a job process beside it, where on threads the
requests wait for the render instead.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
from _common import CORPUS, REPO

from app.jobs.records import SqliteRecords

COVER = CORPUS / "covers" / "mate-LadyBird.jpg"
POLL_SECONDS = 0.1  # between status polls, and between /healthz probes during a render (--poll)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, processes: bool, cwd: Path = REPO) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = tempfile.mkdtemp(prefix="tessera-jobs-")
        env = {**os.environ, "TESSERA_DATA_DIR": self.data, "TESSERA_WORKERS": "2",
               "TESSERA_JOB_PROCESSES": "true" if processes else "false", "PYTHONPATH": str(cwd)}  # fmt: skip
        command = ["uvicorn", "app.main:app", "--port", str(self.port), "--log-level", "error"]
        self.proc = subprocess.Popen([sys.executable, "-m", *command], cwd=cwd, env=env)
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


def _mosaic(client: httpx.Client, session_url: str, cols: int, data: str) -> tuple[float, float]:
    """Seconds from asking for a mosaic until its record is ready, and the job's own seconds
    (from the record in the server's data folder ``data``: the API does not show timings)."""
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
        time.sleep(POLL_SECONDS)
    if record["state"] != "ready":
        raise RuntimeError(record)
    wall = time.perf_counter() - t
    stored = SqliteRecords(Path(data) / "tessera.sqlite3").mosaic(made["id"])
    return wall, float(stored.result["timings"]["job"]) if stored else float("nan")


def _healthz(client: httpx.Client, seconds: float | None, stop: threading.Event | None = None) -> list[float]:
    out = []
    end = time.monotonic() + (seconds or 1e9)
    while time.monotonic() < end and not (stop and stop.is_set()):
        t = time.perf_counter()
        client.get("/healthz")
        out.append(time.perf_counter() - t)
        time.sleep(POLL_SECONDS)
    return out


def _idle(client: httpx.Client) -> None:
    while not client.get("/healthz").json()["jobs_idle"]:
        time.sleep(0.05)


@dataclass
class Mode:
    name: str
    server: Server
    client: httpx.Client
    sessions: tuple[str, str] = ("", "")
    rest: list[float] = field(default_factory=list)
    busy: list[float] = field(default_factory=list)
    one: list[float] = field(default_factory=list)
    job: list[float] = field(default_factory=list)
    two: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def _prepare(mode: Mode, args: argparse.Namespace) -> None:
    tiles = sorted((CORPUS / "tiles_photo").glob("*.jpg"))
    client = mode.client
    a, b = _session(client, tiles[: args.tiles]), _session(client, tiles[-args.tiles :])
    mode.sessions = (a, b)
    _mosaic(client, a, args.cols, mode.server.data)  # warm: libraries at this shape, imports
    _mosaic(client, b, args.cols, mode.server.data)
    _idle(client)
    mode.rest += _healthz(client, 2.0)


def _measure_once(mode: Mode, args: argparse.Namespace) -> None:
    """One mosaic alone (with /healthz polled meanwhile), then two users' at once."""
    client, server, (a, b) = mode.client, mode.server, mode.sessions
    _idle(client)
    stop = threading.Event()
    with httpx.Client(base_url=server.url, timeout=60) as probe:
        poller = threading.Thread(target=lambda: mode.busy.extend(_healthz(probe, None, stop)))
        poller.start()
        before = server.cpu_seconds()
        wall, job = _mosaic(client, a, args.cols, mode.server.data)
        mode.cpu.append(server.cpu_seconds() - before)
        mode.one.append(wall)
        mode.job.append(job)
        stop.set()
        poller.join()
    _idle(client)
    with httpx.Client(base_url=server.url, timeout=300) as other:
        t = threading.Thread(target=lambda: _mosaic(other, b, args.cols, server.data))
        started = time.perf_counter()
        t.start()
        _mosaic(client, a, args.cols, mode.server.data)
        t.join()
        mode.two.append(time.perf_counter() - started)


def _report(mode: Mode) -> str:
    rest, busy = statistics.median(mode.rest) * 1000, statistics.median(mode.busy) * 1000
    p95 = sorted(mode.busy)[int(len(mode.busy) * 0.95)] * 1000
    one, two = statistics.median(mode.one), statistics.median(mode.two)
    return (
        f"{mode.name:<14} healthz at rest {rest:.1f} ms, during a render median {busy:.1f} ms "
        f"(p95 {p95:.1f} ms, ratio {busy / rest:.2f}x); one mosaic {one:.2f} s (job "
        f"{statistics.median(mode.job):.2f} s), two users at once {two:.2f} s (two/one {two / one:.2f}x); "
        f"web process CPU during one mosaic {statistics.median(mode.cpu):.2f} s"
    )


def main() -> None:
    global POLL_SECONDS
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=("both", "processes", "threads"), default="both")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cols", type=int, default=160)
    parser.add_argument("--tiles", type=int, default=150)
    parser.add_argument("--baseline", type=Path, help="also measure job processes of the code in this folder")
    parser.add_argument("--poll", type=float, default=POLL_SECONDS, help="seconds between polls (page: 0.4)")
    args = parser.parse_args()
    POLL_SECONDS = args.poll
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    wanted = {"both": (True, False), "processes": (True,), "threads": (False,)}[args.mode]
    servers = [("processes" if p else "threads", Server(p)) for p in wanted]
    if args.baseline:
        servers.append(("baseline proc", Server(True, args.baseline.resolve())))
    modes = [Mode(name, server, httpx.Client(base_url=server.url, timeout=300)) for name, server in servers]
    loads = []
    try:
        for mode in modes:
            _prepare(mode, args)
        for _ in range(args.repeats):
            for mode in modes:  # in turns: the load falls on every mode alike
                _measure_once(mode, args)
                loads.append(os.getloadavg()[0])
    finally:
        for mode in modes:
            mode.client.close()
            mode.server.stop()
    for mode in modes:
        print(_report(mode))
    print(f"load average during: median {statistics.median(loads):.2f}, max {max(loads):.2f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
