"""The quality options and report through ``tessera make``, in a subprocess, as a user runs it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, read_image


def tessera(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *map(str, args)], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_every_quality_flag_reaches_the_engine_and_the_report_is_printed(
    corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "m.png"
    run = tessera(
        "make", corpus / "covers" / "mate-Dune.jpg", corpus / "tiles_photo", "-o", out, "--cols", "24",
        "--tile-size", "8", "--color-space", "oklab", "--cell-grid", "3", "--max-uses", "3",
        "--min-distance", "1", "--tint", "15", "--aspect", "4:3",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    found = re.search(
        r"quality: colour error per cell ([\d.]+) \(mean CIEDE2000\), distinct tiles used (\d+), "
        r"most uses of one tile (\d+), neighbours with the same tile ([\d.]+) %, library used ([\d.]+) %",
        run.stdout,
    )
    assert found, run.stdout
    cell_de, distinct, most, same = float(found[1]), int(found[2]), int(found[3]), float(found[4])
    assert most <= 3 and same == 0.0 and 0 < cell_de < 40
    image = np.asarray(read_image(out))
    assert image.shape[1] == 24 * 8 and image.shape[0] % 6 == 0  # 4:3 cells: 8 x 6 px
    rows = image.shape[0] // 6
    assert distinct >= 24 * rows / 3


def test_unique_flag(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.png"
    run = tessera("make", corpus / "covers" / "mate-Aqua.jpg", corpus / "tiles_photo", "-o", out,
                  "--cols", "12", "--tile-size", "8", "--unique")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "most uses of one tile 1," in run.stdout


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--max-uses", "0"), ("--min-distance", "-2"), ("--tint", "150"), ("--cell-grid", "9")],
)
def test_bad_quality_flags_exit_2_naming_the_flag(
    corpus: Path, tmp_path: Path, flag: str, value: str
) -> None:
    cover = corpus / "covers" / "mate-Aqua.jpg"
    run = tessera("make", cover, corpus / "tiles_photo", "-o", tmp_path / "m.jpg", flag, value)
    assert run.returncode == 2
    assert f"bad {flag}" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_rule_the_library_is_too_small_for_is_printed(corpus: Path, tmp_path: Path) -> None:
    few = tmp_path / "few"
    few.mkdir()
    for tile in sorted((corpus / "tiles_photo").iterdir())[:10]:
        (few / tile.name).write_bytes(tile.read_bytes())
    out = tmp_path / "m.png"
    run = tessera("make", corpus / "covers" / "mate-Aqua.jpg", few, "-o", out, "--cols", "12",
                  "--tile-size", "8", "--max-uses", "2", "--tint", "0")  # fmt: skip
    assert run.returncode == 0, run.stderr
    found = re.search(r"rule not kept: --max-uses asked 2, used (\d+) \((.+)\)", run.stdout)
    assert found, run.stdout
    rows = np.asarray(read_image(out)).shape[0] // 8
    assert int(found[1]) == -(-12 * rows // 10)  # as evenly as 10 tiles allow
    assert f"need {-(-12 * rows // 2)} tiles" in found[2]
    kept = tessera("make", corpus / "covers" / "mate-Aqua.jpg", few, "-o", out, "--cols", "4",
                   "--tile-size", "8", "--max-uses", "2")  # fmt: skip
    assert kept.returncode == 0, kept.stderr
    assert "rule not kept" not in kept.stdout
