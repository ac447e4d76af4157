"""A cluster on loopback for the scale tests: one Redis, one S3 server (moto), web processes and
Celery workers, each process with its own data folder (as if on its own machine).

Redis (Debian's ``redis-server``) and moto's server are started here and stopped at the end.
Outside CI a missing one skips these tests; with CI=true it fails them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import REPO
from tests.web.conftest import LiveServer, free_port


def _require(program: str, hint: str) -> str:
    path = shutil.which(program)
    if path is None:
        message = f"{program} is not installed ({hint})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _wait_until(ready: object, proc: subprocess.Popen[bytes], log: Path, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited: {log.read_text(errors='replace')[-3000:]}")
        if ready():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not start in {timeout} s: {log.read_text(errors='replace')[-3000:]}")


def _stop(proc: subprocess.Popen[bytes], *, group: bool = False, timeout: float = 15) -> None:
    """SIGTERM to the process (only: as ``docker stop`` does), SIGKILL after ``timeout``; with
    ``group``, then SIGKILL to whatever of its process group is left."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    if group:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


@dataclass
class Services:
    """The shared backends: where every process of the cluster points."""

    redis_url: str
    s3_url: str
    bucket: str

    def env(self) -> dict[str, str]:
        return {
            "TESSERA_BROKER_URL": self.redis_url,
            "TESSERA_S3_ENDPOINT_URL": self.s3_url,
            "TESSERA_S3_BUCKET": self.bucket,
            "TESSERA_S3_REGION": "us-east-1",
            "TESSERA_S3_ACCESS_KEY": "testing",
            "TESSERA_S3_SECRET_KEY": "testing",
            "TESSERA_DECODE_THREADS": "1",
        }


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = _require("redis-server", "Debian: apt-get install redis-server; scripts/test.sh does")
    folder = tmp_path_factory.mktemp("redis")
    port = free_port()
    log = folder / "redis.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(folder)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)

    def ready() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        _wait_until(ready, proc, log, "redis-server", 20)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        _stop(proc)


@pytest.fixture(scope="session")
def s3_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = _require("moto_server", "PyPI: moto[server], in the test extra")
    folder = tmp_path_factory.mktemp("moto")
    port = free_port()
    log = folder / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [server, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT, cwd=folder
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/moto-api/", timeout=1).status_code < 500
        except httpx.TransportError:
            return False

    try:
        _wait_until(ready, proc, log, "moto_server", 30)
        yield url
    finally:
        _stop(proc)


@pytest.fixture
def backends(redis_url: str, s3_url: str) -> Iterator[Services]:
    """Empty backends for one test: Redis flushed, a bucket of its own."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushall()
    client.close()
    yield Services(redis_url, s3_url, f"tessera-{secrets.token_hex(4)}")


class Worker:
    """``tessera worker`` in its own process group (its pool processes with it)."""

    def __init__(self, name: str, data_dir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.data_dir = data_dir
        self.env = {**os.environ, "TESSERA_DATA_DIR": str(data_dir), **env}
        self.log = data_dir.parent / f"worker-{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def hostname(self) -> str:
        """The name its jobs are recorded under (Celery's ``name@host``)."""
        import socket

        return f"{self.name}@{socket.gethostname()}"

    def start(self) -> Worker:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app", "worker", "--name", self.name, "--loglevel", "INFO"],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        proc = self.proc
        _wait_until(lambda: b" ready." in self.log.read_bytes(), proc, self.log, f"worker {self.name}", 60)
        return self

    def kill(self) -> None:
        """SIGKILL to the worker and its pool processes at once: a machine lost mid-job."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc:
            _stop(self.proc, group=True, timeout=30)


@dataclass
class Cluster:
    backends: Services
    root: Path
    webs: list[LiveServer] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)

    def add_web(self, **env: str) -> LiveServer:
        index = len(self.webs) + 1
        server = LiveServer(self.root / f"web{index}" / "data", env={**self.backends.env(), **env}).start()
        self.webs.append(server)
        return server

    def add_worker(self, name: str, **env: str) -> Worker:
        worker = Worker(name, self.root / name / "data", {**self.backends.env(), **env}).start()
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        for web in self.webs:
            web.stop()


@pytest.fixture
def cluster(backends: Services, tmp_path: Path) -> Iterator[Cluster]:
    built = Cluster(backends, tmp_path)
    try:
        yield built
    finally:
        built.stop()
