"""The dispatchers: jobs run in long-lived job processes, which a cancel kills (with their
children) within a second and replaces; queued jobs are dropped; jobs a job submits come back
and run; queued jobs start in turns between sessions (processes and threads alike)."""

from __future__ import annotations

import json
import multiprocessing.connection
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from app.jobs.dispatch import (
    FairQueue,
    ForwardingDispatcher,
    LocalDispatcher,
    ProcessDispatcher,
    job_process_started,
    serve_jobs,
)
from app.jobs.kinds import ANIMATION, INDEX, PYRAMID, RENDER
from app.settings import Settings


def _stand_in(dispatcher: ForwardingDispatcher | None, kind: str, record_id: str) -> None:
    """A stand-in job: ``record_id`` is ``<folder>/<name>``. It appends its name to
    ``<folder>/order.txt``, notes its pid, its child's pid and its process group, then
    (``sleep``) waits, (``chain``) submits a pyramid job on itself, (``raise``) raises, or
    (``crash``) ends its process. While ``<folder>/hold`` exists, a job waits for it to go
    before it ends."""
    folder, name = record_id.rsplit("/", 1)
    with open(Path(folder) / "order.txt", "a") as order:
        order.write(f"{name}.{kind}\n")
    child = subprocess.Popen(["sleep", "60"]) if name.startswith("sleep") else None
    note = {"pid": os.getpid(), "pgid": os.getpgid(0), "child": child.pid if child else None, "kind": kind}
    (Path(folder) / f"{name}.{kind}.json").write_text(json.dumps(note))
    if name.startswith("chain") and kind == RENDER and dispatcher is not None:
        dispatcher.submit(PYRAMID, record_id)
    while (Path(folder) / "hold").exists():
        time.sleep(0.01)
    if name.startswith("raise"):
        raise RuntimeError("a job that fails")
    if name.startswith("crash"):
        os._exit(3)  # as an out-of-memory kill would end it
    if child is not None:
        child.wait()


def _entry(
    settings: Settings,
    conn: multiprocessing.connection.Connection,
    lifeline: multiprocessing.connection.Connection,
) -> None:
    job_process_started(lifeline)
    dispatcher = ForwardingDispatcher(conn)
    serve_jobs(dispatcher, lambda kind, record_id: _stand_in(dispatcher, kind, record_id))


def _session(kind: str, record_id: str) -> str:
    """The stand-in jobs' session: their name's first letter (``a1`` -> ``a``)."""
    return record_id.rsplit("/", 1)[1][:1]


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


def _wait_idle(dispatcher: LocalDispatcher, timeout: float = 30) -> None:
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

        dispatcher.submit(RENDER, f"{tmp_path}/after")  # the slot has a fresh process for it
        after = _wait_file(tmp_path / f"after.{RENDER}.json")
        assert after["pid"] != note["pid"] and after["pgid"] == after["pid"]
        _wait_idle(dispatcher)
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
        # Two job processes, neither this one; the follow-up ran in the same long-lived process
        # as the job that submitted it (the other one is busy).
        assert len({first["pid"], sleeper["pid"], os.getpid()}) == 3
        assert follow["pid"] == first["pid"]
        deadline = time.monotonic() + 30
        while dispatcher.running() != [(ANIMATION, f"{tmp_path}/sleep-y")]:  # the chain ends
            assert time.monotonic() < deadline, dispatcher.running()
            time.sleep(0.02)
        dispatcher.cancel(ANIMATION, f"{tmp_path}/sleep-y")
        _wait_idle(dispatcher)
    finally:
        dispatcher.shutdown(wait=True)
    assert not _alive(first["pid"])  # a shut-down dispatcher leaves no job process behind


def test_a_session_s_next_job_goes_to_the_process_that_ran_its_last(tmp_path: Path) -> None:
    dispatcher = ProcessDispatcher(
        2, settings=Settings(data_dir=tmp_path / "data"), entry=_entry, session_of=_session
    )
    try:
        pids: dict[str, int] = {}
        for name in ("a1", "b1", "a2", "b2", "a3"):
            dispatcher.submit(RENDER, f"{tmp_path}/{name}")
            pids[name] = _wait_file(tmp_path / f"{name}.{RENDER}.json")["pid"]
            _wait_idle(dispatcher)
        assert pids["a1"] == pids["a2"] == pids["a3"] != pids["b1"] == pids["b2"]
    finally:
        dispatcher.shutdown(wait=True)


def test_a_failing_job_leaves_its_process_and_a_crashed_one_is_replaced(tmp_path: Path) -> None:
    dispatcher = ProcessDispatcher(1, settings=Settings(data_dir=tmp_path / "data"), entry=_entry)
    try:
        pids = []
        for name in ("raise-1", "after-raise", "crash-1", "after-crash"):
            dispatcher.submit(RENDER, f"{tmp_path}/{name}")
            pids.append(_wait_file(tmp_path / f"{name}.{RENDER}.json")["pid"])
            _wait_idle(dispatcher)
        assert pids[0] == pids[1] == pids[2] != pids[3]  # the exception is logged, the exit is not survived
        assert not _alive(pids[2]) and _alive(pids[3])
    finally:
        dispatcher.shutdown(wait=True)
    assert not _alive(pids[3])


def _threads(tmp_path: Path) -> LocalDispatcher:
    return LocalDispatcher(
        1, run=lambda kind, record_id: _stand_in(None, kind, record_id), session_of=_session
    )


def _processes(tmp_path: Path) -> LocalDispatcher:
    settings = Settings(data_dir=tmp_path / "data")
    return ProcessDispatcher(1, settings=settings, entry=_entry, session_of=_session)


@pytest.mark.parametrize("make", [_processes, _threads], ids=["processes", "threads"])
def test_queued_jobs_start_in_turns_between_sessions(make: object, tmp_path: Path) -> None:
    """Session a queues five jobs, then b two and c one: with one worker, b's and c's start
    after a's first, between a's, not after all of them."""
    dispatcher = make(tmp_path)  # type: ignore[operator]
    try:
        (tmp_path / "hold").touch()  # the first job runs until all are queued
        for name in ("a1", "a2", "a3", "a4", "a5", "b1", "b2", "c1"):
            dispatcher.submit(RENDER, f"{tmp_path}/{name}")
        (tmp_path / "hold").unlink()
        _wait_idle(dispatcher)
        order = (tmp_path / "order.txt").read_text().split()
    finally:
        dispatcher.shutdown(wait=True)
    names = [line.split(".")[0] for line in order]
    # a1 ran while the rest were queued; then each session in turn (b and c were never served,
    # b first in line), then a's rest once b and c have none left.
    assert names == ["a1", "b1", "c1", "a2", "b2", "a3", "a4", "a5"]


def test_fair_queue_takes_the_session_with_fewest_running_then_served_longest_ago() -> None:
    from app.jobs.dispatch import _Job

    queue = FairQueue()
    jobs = {name: _Job(RENDER, name, name[0]) for name in ("a1", "a2", "a3", "b1", "c1")}
    for name in ("a1", "a2", "a3", "b1"):
        queue.put(jobs[name])
    first = queue.take()
    assert first is jobs["a1"]
    assert queue.take() is jobs["b1"]  # a has one running, b none
    queue.put(jobs["c1"])
    queue.done(jobs["a1"])
    # a and c have none running now; c was never served: it goes first
    assert queue.take() is jobs["c1"]
    assert queue.take() is jobs["a2"]
    queue.remove(jobs["a3"])
    assert queue.take() is None and len(queue) == 0


def test_threads_run_side_by_side_and_cancel_drops_queued(tmp_path: Path) -> None:
    gate = threading.Event()
    ran: list[str] = []

    def run(kind: str, record_id: str) -> None:
        ran.append(record_id)
        gate.wait(10)

    dispatcher = LocalDispatcher(2, run=run)
    try:
        for name in ("x", "y", "z"):
            dispatcher.submit(RENDER, name)
        deadline = time.monotonic() + 10
        while len(dispatcher.running()) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        dispatcher.cancel(RENDER, "z")  # queued: dropped
        gate.set()
        _wait_idle(dispatcher)
    finally:
        dispatcher.shutdown(wait=True)
    assert sorted(ran) == ["x", "y"]


def test_a_job_s_session_comes_from_its_record(tmp_path: Path) -> None:
    from app.jobs.records import SqliteRecords
    from app.jobs.services import session_of
    from app.jobs.zoom_records import SqliteZoomRecords

    tmp_path.mkdir(exist_ok=True)
    records = SqliteRecords(tmp_path / "records.sqlite3")
    zoom_records = SqliteZoomRecords(tmp_path / "records.sqlite3")
    records.create_session("s1")
    records.create_mosaic("m1", "s1", params={}, fmt="jpeg", cover_name="c.jpg")
    zoom_records.create_animation("a1", mosaic_id="m1", session_id="s1", spec={}, total=1)
    of = session_of(records, zoom_records)
    assert [
        of(kind, rid) for kind, rid in [(INDEX, "s1"), (RENDER, "m1"), (PYRAMID, "m1"), (ANIMATION, "a1")]
    ] == ["s1"] * 4
    assert of(RENDER, "gone") == of(ANIMATION, "gone") == ""  # deleted meanwhile: the shared turn
