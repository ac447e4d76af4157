"""Peak memory of the hostile-but-valid requests of issue 17, against the current code.

    python bench/attacks.py

Decodes run in a fresh child process (peak RSS growth); the upload and header attacks run
against a real server (``uvicorn app.main:app`` / ``tessera serve``) whose peak RSS (VmHWM)
growth is read from /proc. Inputs are generated in a temporary folder.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)

from tests.hostile import (
    DECODE_COVER,
    DECODE_TILE,
    child_peak_mb,
    float_tiff,
    grey16_png,
    palette_png,
    shape_attack,
)
from tests.web.conftest import LiveServer, free_port

REPO = Path(__file__).resolve().parents[1]


def _hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _serve(data: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "TESSERA_DATA_DIR": str(data), "TMPDIR": str(data)}
    proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    for _ in range(150):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the server did not start")


def _send_until_refused(port: int, head: bytes, filler: bytes, total: int) -> int:
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head)
        try:
            while sent < total and not select.select([sock], [], [], 0)[0]:  # until it answers
                sock.sendall(filler)
                sent += len(filler)
        except (BrokenPipeError, ConnectionResetError):
            pass
    return sent


def main() -> None:
    print(f"load: {os.getloadavg()[0]:.1f} (1-minute average, {os.cpu_count()} cores)")
    print(f"{'attack':<52} {'peak MB':>9}  note")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for label, make, name in [
            ("16-bit grey PNG 9400x9400 (0.2 MB) as a tile", grey16_png, "g.png"),
            ("float TIFF 9400x9400 as a tile", float_tiff, "f.tif"),
            ("palette PNG 9400x9400, transparent, as a tile", palette_png, "p.png"),
        ]:
            path = make(root / name)
            peak = child_peak_mb(DECODE_TILE, str(path))
            print(f"{label:<52} {peak:>9.0f}  (issue: +2.9 GB for the 16-bit PNG)")
        path = root / "g.png"
        print(f"{'16-bit grey PNG 9400x9400 as a cover':<52} {child_peak_mb(DECODE_COVER, str(path)):>9.0f}")

        proc, port = _serve(root / "data")
        try:
            before = _hwm_mb(proc.pid)
            boundary = "b0undary"
            part = 300 * 1024 * 1024
            head = (
                "POST /api/sessions HTTP/1.1\r\nHost: x\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {part + 200}\r\n\r\n--{boundary}\r\n"
                "Content-Disposition: form-data; name=tiles; filename=huge.png\r\n\r\n"
            ).encode()
            sent = _send_until_refused(port, head, b"\0" * 262144, part)
            note = f"{sent / 1048576:.0f} MB sent before the answer (was: 300 MB spooled, then 413)"
            print(f"{'300 MB file part (file limit 50 MiB)':<52} {_hwm_mb(proc.pid) - before:>9.0f}  {note}")
            before = _hwm_mb(proc.pid)
            sent = _send_until_refused(
                port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ", b"a" * 65536, 50 * 1048576
            )
            note = f"{sent / 1048576:.1f} MB sent before the server answered or hung up"
            print(f"{'50 MB header line':<52} {_hwm_mb(proc.pid) - before:>9.0f}  {note}")
        finally:
            proc.terminate()
            proc.wait(10)

        server = LiveServer(root / "shape-data", env={"TESSERA_JOB_PROCESSES": "false"}).start()
        try:  # jobs on the server's own threads: its peak memory is the job's
            assert server.proc is not None
            cover = REPO.parent / "shared" / "corpus" / "covers" / "mate-Dune.jpg"
            peak, written = shape_attack(server.url, server.proc.pid, server.data_dir, cover)
            note = f"{written / 1048576:.1f} MB written (issue: +2.0 GB memory, 0.9 GB on disk)"
            print(f"{'300 1x1 PNGs, 8 cells at 512 px, aspect 1:4':<52} {peak:>9.0f}  {note}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
