"""``tessera make``'s tile cache, in subprocesses as a user runs it: a second run decodes only
what changed, and gives the same mosaic; a killed run, two runs at once and a damaged cache
leave a cache the next run uses."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tests.conftest import REPO, read_image

COVER = "mate-FreshFlower.jpg"


def _cmd(corpus: Path, folder: Path, out: Path, *extra: str | Path) -> list[str]:
    return [sys.executable, "-m", "app", "make", str(corpus / "covers" / COVER), str(folder), "-o", str(out),
            "--cols", "30", "--tile-size", "12", *map(str, extra)]  # fmt: skip


def _make(corpus: Path, folder: Path, out: Path, *extra: str | Path) -> tuple[int, int]:
    run = subprocess.run(
        _cmd(corpus, folder, out, *extra), capture_output=True, text=True, cwd=REPO, timeout=180
    )
    assert run.returncode == 0, run.stderr
    found = re.search(r"tile cache: (\d+) from the cache, (\d+) decoded", run.stdout)
    assert found, run.stdout
    return int(found[1]), int(found[2])


def _photos(corpus: Path, folder: Path, names: list[Path]) -> None:
    folder.mkdir(exist_ok=True)
    for p in names:
        shutil.copy2(p, folder / p.name)


def _rows(cache: Path) -> int:
    with sqlite3.connect(cache / "tiles.sqlite3", timeout=30) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'tiles'").fetchall():
            return 0  # a run has just created the file, not yet its table
        return int(db.execute("SELECT count(*) FROM tiles").fetchone()[0])


def test_a_second_run_decodes_only_the_files_added_and_gives_the_same_mosaic(
    corpus: Path, photo_tiles: list[Path], tmp_path: Path
) -> None:
    folder, cache = tmp_path / "photos", tmp_path / "cache"
    _photos(corpus, folder, photo_tiles[:120])
    assert _make(corpus, folder, tmp_path / "a.png", "--cache", cache) == (0, 120)
    for p in photo_tiles[:5]:
        (folder / p.name).unlink()
    _photos(corpus, folder, photo_tiles[120:130])
    (folder / photo_tiles[5].name).write_bytes(photo_tiles[200].read_bytes())  # changed in place
    assert _make(corpus, folder, tmp_path / "b.png", "--cache", cache) == (114, 11)
    assert _rows(cache) == 125  # the five removed files are forgotten
    uncached = tmp_path / "c.png"
    run = subprocess.run(
        _cmd(corpus, folder, uncached, "--no-cache"), capture_output=True, text=True, cwd=REPO
    )
    assert run.returncode == 0 and "tile cache" not in run.stdout, run.stderr
    assert np.array_equal(np.asarray(read_image(tmp_path / "b.png")), np.asarray(read_image(uncached)))


def test_a_killed_run_leaves_a_cache_the_next_run_uses(
    corpus: Path, photo_tiles: list[Path], tmp_path: Path
) -> None:
    folder, cache = tmp_path / "photos", tmp_path / "cache"
    _photos(corpus, folder, photo_tiles)
    proc = subprocess.Popen(_cmd(corpus, folder, tmp_path / "a.png", "--cache", cache, "--workers", "1"),
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    try:
        while not (cache / "tiles.sqlite3").exists() or _rows(cache) == 0:
            assert proc.poll() is None and time.monotonic() < deadline, "no tile was cached"
            time.sleep(0.05)
    finally:  # killed here, whatever happened: a failure leaves no run behind
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    kept = _rows(cache)
    assert 0 < kept < 300
    cached, decoded = _make(corpus, folder, tmp_path / "b.jpg", "--cache", cache)
    assert cached >= kept and cached + decoded == 300


def test_two_runs_at_once_share_the_cache(corpus: Path, photo_tiles: list[Path], tmp_path: Path) -> None:
    folder, cache = tmp_path / "photos", tmp_path / "cache"
    _photos(corpus, folder, photo_tiles)
    runs = [
        subprocess.Popen(
            _cmd(corpus, folder, tmp_path / f"{i}.jpg", "--cache", cache),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for proc in runs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        assert "tile cache:" in out
    assert _make(corpus, folder, tmp_path / "c.jpg", "--cache", cache) == (300, 0)


def test_a_damaged_cache_is_set_aside(corpus: Path, photo_tiles: list[Path], tmp_path: Path) -> None:
    folder, cache = tmp_path / "photos", tmp_path / "cache"
    _photos(corpus, folder, photo_tiles[:70])
    cache.mkdir()
    (cache / "tiles.sqlite3").write_bytes(b"this is not a database" * 100)
    assert _make(corpus, folder, tmp_path / "a.jpg", "--cache", cache) == (0, 70)
    assert _make(corpus, folder, tmp_path / "b.jpg", "--cache", cache) == (70, 0)


def test_the_cache_lives_in_xdg_cache_home_unless_told(
    corpus: Path, photo_tiles: list[Path], tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    _photos(corpus, folder, photo_tiles[:20])
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    env.pop("TESSERA_CACHE_DIR", None)
    none = subprocess.run(_cmd(corpus, folder, tmp_path / "n.jpg", "--no-cache"), env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert none.returncode == 0, none.stderr
    assert not (tmp_path / "xdg").exists()
    run = subprocess.run(_cmd(corpus, folder, tmp_path / "a.jpg"), env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=180)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "tile cache: 0 from the cache, 20 decoded" in run.stdout
    assert _rows(tmp_path / "xdg" / "tessera") == 20
    env["TESSERA_CACHE_DIR"] = str(tmp_path / "set")
    run = subprocess.run(_cmd(corpus, folder, tmp_path / "b.jpg"), env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=180)  # fmt: skip
    assert "tile cache: 0 from the cache, 20 decoded" in run.stdout, run.stderr
    assert _rows(tmp_path / "set") == 20


def test_other_feature_settings_reuse_the_cached_tiles_and_match_an_uncached_run(
    corpus: Path, photo_tiles: list[Path], tmp_path: Path
) -> None:
    folder, cache = tmp_path / "photos", tmp_path / "cache"
    _photos(corpus, folder, photo_tiles[:100])
    assert _make(corpus, folder, tmp_path / "a.png", "--cache", cache) == (0, 100)
    for settings in (["--cell-grid", "2"], ["--color-space", "oklab"], []):  # the last: back to the first
        assert _make(corpus, folder, tmp_path / "b.png", "--cache", cache, *settings) == (100, 0)
        uncached = tmp_path / "c.png"
        run = subprocess.run(
            _cmd(corpus, folder, uncached, "--no-cache", *settings), capture_output=True, text=True, cwd=REPO
        )
        assert run.returncode == 0, run.stderr
        assert np.array_equal(np.asarray(read_image(tmp_path / "b.png")), np.asarray(read_image(uncached)))
    with sqlite3.connect(cache / "tiles.sqlite3") as db:  # the features went in with the tiles
        assert db.execute("SELECT count(*) FROM tiles WHERE features IS NOT NULL").fetchone()[0] == 100
