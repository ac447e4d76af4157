"""The process dispatcher: jobs run in processes of their own, which a cancel kills (with their
children) within a second; queued jobs are dropped; jobs a job submits come back and run."""

from __future__ import annotations

import json
import multiprocessing.connection
import os
import subprocess
import time
from pathlib import Path

from app.jobs.dispatch import ForwardingDispatcher, ProcessDispatcher, job_process_started
from app.jobs.kinds import ANIMATION, PYRAMID, RENDER
from app.settings import Settings


def _entry(
    settings: Settings, kind: str, record_id: str, conn: multiprocessing.connection.Connection
) -> None:
    """A stand-in job: ``record_id`` is ``<folder>/<name>``. It notes its pid, its child's pid and
    its process group, then (``sleep``) waits, or (``chain``) submits a pyramid job on itself."""
    job_process_started(conn)
    folder, name = record_id.rsplit("/", 1)
    child = subprocess.Popen(["sleep", "60"]) if name.startswith("sleep") else None
    note = {"pid": os.getpid(), "pgid": os.getpgid(0), "child": child.pid if child else None, "kind": kind}
    (Path(folder) / f"{name}.{kind}.json").write_text(json.dumps(note))
    if name.startswith("chain") and kind == RENDER:
        ForwardingDispatcher(conn).submit(PYRAMID, record_id)
    if child is not None:
        child.wait()


def _wait_file(path: Path, timeout: float = 30) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} never written"
        time.sleep(0.02)
    time.sleep(0.05)
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def _wait_idle(dispatcher: ProcessDispatcher, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not dispatcher.idle():
        assert time.monotonic() < deadline, "jobs still running"
        time.sleep(0.02)


def test_cancel_kills_a_running_job_and_its_children_and_drops_a_queued_one(tmp_path: Path) -> None:
    dispatcher = ProcessDispatcher(1, settings=Settings(data_dir=tmp_path / "data"), entry=_entry)
    try:
        running, queued = f"{tmp_path}/sleep-a", f"{tmp_path}/sleep-b"
        dispatcher.submit(ANIMATION, running)
        dispatcher.submit(ANIMATION, queued)  # one worker: this one waits
        note = _wait_file(tmp_path / f"sleep-a.{ANIMATION}.json")
        assert note["pgid"] == note["pid"] != os.getpgid(0)  # its own process group
        assert _alive(note["pid"]) and _alive(note["child"])

        dispatcher.cancel(ANIMATION, queued)
        started = time.monotonic()
        dispatcher.cancel(ANIMATION, running)
        while _alive(note["pid"]) or _alive(note["child"]):
            assert time.monotonic() - started < 1.0, "the job or its child outlived the cancel"
            time.sleep(0.01)
        _wait_idle(dispatcher)
        assert not (tmp_path / f"sleep-b.{ANIMATION}.json").exists()  # dropped, never started
    finally:
        dispatcher.shutdown(wait=False)


def test_jobs_a_job_submits_run_and_processes_run_side_by_side(tmp_path: Path) -> None:
    dispatcher = ProcessDispatcher(2, settings=Settings(data_dir=tmp_path / "data"), entry=_entry)
    try:
        dispatcher.submit(RENDER, f"{tmp_path}/chain-x")
        dispatcher.submit(ANIMATION, f"{tmp_path}/sleep-y")  # holds its worker while the chain runs
        first = _wait_file(tmp_path / f"chain-x.{RENDER}.json")
        follow = _wait_file(tmp_path / f"chain-x.{PYRAMID}.json")  # submitted from the job process
        sleeper = _wait_file(tmp_path / f"sleep-y.{ANIMATION}.json")
        assert len({first["pid"], follow["pid"], sleeper["pid"], os.getpid()}) == 4
        deadline = time.monotonic() + 30
        while dispatcher.running() != [(ANIMATION, f"{tmp_path}/sleep-y")]:  # the chain ends
            assert time.monotonic() < deadline, dispatcher.running()
            time.sleep(0.02)
        dispatcher.cancel(ANIMATION, f"{tmp_path}/sleep-y")
        _wait_idle(dispatcher)
    finally:
        dispatcher.shutdown(wait=True)
