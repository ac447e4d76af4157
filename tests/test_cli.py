"""``tessera make`` end to end, in a subprocess, as a user runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import REPO, cell_error, read_image


def tessera(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *map(str, args)], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_make_writes_a_mosaic_that_resembles_the_cover(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "mosaic.jpg"
    cover = corpus / "covers" / "mate-FreshFlower.jpg"
    run = tessera(
        "make", cover, corpus / "tiles_photo", corpus / "odd" / "truncated.jpg", "-o", out, "--cols", "40",
        "--tile-size", "20",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert f"wrote {out}" in run.stdout
    assert "tiles: 300 accepted, 1 rejected" in run.stdout
    assert "truncated.jpg: truncated or corrupt image" in run.stdout
    assert "time:" in run.stdout
    mosaic = read_image(out)
    rows = round(40 * 1203 / 1600)
    assert mosaic.size == (40 * 20, rows * 20)
    assert cell_error(read_image(cover, "RGB"), mosaic, 40, rows) < 12


@pytest.mark.parametrize("ext", ["png", "webp"])
def test_output_format_follows_the_extension(corpus: Path, tmp_path: Path, ext: str) -> None:
    out = tmp_path / f"m.{ext}"
    run = tessera("make", corpus / "covers" / "skimage-astronaut.jpg", corpus / "tiles_emoji", "-o", out,
                  "--cols", "10", "--tile-size", "8", "-q")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    with Image.open(out) as im:
        assert im.format == ext.upper() and im.size == (80, 80)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["covers/nope.jpg", "tiles_photo"], 1, "nope.jpg: cannot read file"),
        (["odd/text_named.jpg", "tiles_photo"], 1, "not a supported image"),
        (["odd/bomb_30000x30000.png", "tiles_photo"], 1, "too large"),
        (["covers/mate-Dune.jpg", "odd/empty.jpg", "odd/truncated.jpg"], 1, "no usable tiles"),
        (["covers/mate-Dune.jpg", "tiles_photo", "--cols", "0"], 2, "bad --cols"),
        (["covers/mate-Dune.jpg", "tiles_photo", "--tile-size", "100000"], 2, "bad --tile-size"),
        (["covers/mate-Dune.jpg", "tiles_photo", "-o", "x.gif"], 2, "bad --output"),
        (["covers/mate-Dune.jpg", "tiles_photo", "-o", "no/such/dir/x.jpg"], 2, "does not exist"),
        (["covers/mate-Dune.jpg", "tiles_photo", "--aspect", "wide"], 2, "--aspect"),
    ],
)
def test_bad_input_exits_non_zero_with_a_message(
    corpus: Path, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    resolved = [str(corpus / a) if "/" in a and not a.startswith("no/") else a for a in args]
    run = subprocess.run(
        [sys.executable, "-m", "app", "make", *resolved],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert run.returncode == code, run.stderr
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    assert not list(tmp_path.iterdir()), "a failed run left files behind"


def test_console_script_is_installed() -> None:
    exe = shutil.which("tessera")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the tessera console script is not installed (pip install -e .)")
        pytest.skip("tessera is not installed in this environment")
    run = subprocess.run([exe, "make", "--help"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "--tile-size" in run.stdout


def test_dpi_flag_is_written_and_the_print_size_printed(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.png"
    run = tessera("make", corpus / "covers" / "skimage-astronaut.jpg", corpus / "tiles_emoji", "-o", out,
                  "--cols", "10", "--tile-size", "30", "--dpi", "100")  # fmt: skip
    assert run.returncode == 0, run.stderr
    # 300 x 300 px at 100 dpi: 3 in, 7.6 cm
    assert "print: 7.6 x 7.6 cm (3.0 x 3.0 in) at 100 dpi" in run.stdout
    with Image.open(out) as im:
        assert round(im.info["dpi"][0]) == 100
    bad = tessera("make", corpus / "covers" / "skimage-astronaut.jpg", corpus / "tiles_emoji", "-o", out,
                  "--dpi", "0")  # fmt: skip
    assert bad.returncode == 2 and "--dpi" in bad.stderr
