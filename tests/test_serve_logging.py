"""``tessera serve`` and ``tessera worker`` configure logging once, at their entry point: the app's
own INFO lines reach the output, each line once."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.web.conftest import free_port


def start(*args: str, data_dir: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "app", *args],
        cwd=REPO,
        env={**os.environ, "TESSERA_DATA_DIR": str(data_dir), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> str:
    """Stop the process as an operator would; returns what it printed (unless read elsewhere)."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


def test_serve_shows_the_apps_info_lines_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    proc = start("serve", "--port", str(port), data_dir=data)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"tessera serve exited: {stop(proc)}"
            assert time.monotonic() < deadline, f"tessera serve did not answer: {stop(proc)}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
    finally:
        out = stop(proc)
    assert proc.returncode in (0, -signal.SIGTERM), out  # uvicorn re-raises the signal it shut down on
    lines = out.splitlines()
    serving = [line for line in lines if "serving with data in" in line]
    assert serving == [f"INFO:     app.main: serving with data in {data}"], out
    assert sum("Uvicorn running on" in line for line in lines) == 1, out
    assert sum('"GET /healthz HTTP/1.1" 200' in line for line in lines) == 1, out


def test_worker_logs_in_one_format_once(tmp_path: Path) -> None:
    if importlib.util.find_spec("celery") is None:
        if os.environ.get("CI"):
            pytest.fail("celery is missing (pip install '.[scale]')")
        pytest.skip("celery is missing (pip install '.[scale]')")
    broker = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens: the worker logs its retries
    proc = start("worker", "--loglevel", "info", data_dir=tmp_path / "data", TESSERA_BROKER_URL=broker)
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while not any("(2/100)" in line for line in lines) and time.monotonic() < deadline:
        time.sleep(0.1)
    stop(proc, signal.SIGINT)
    reader.join(20)
    out = "\n".join(lines)
    refused = [line for line in lines if "Cannot connect to redis" in line]
    assert len(refused) >= 2, out
    assert all(line.startswith("ERROR celery.worker.consumer.consumer: ") for line in refused), out
    assert sum("(1/100)" in line for line in lines) == 1, out  # one handler: no line twice
