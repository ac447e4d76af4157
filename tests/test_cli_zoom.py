"""``tessera make --animate / --dzi`` end to end, in a subprocess."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.engine.pyramid import DziLayout
from tests.test_cli import tessera


def test_make_writes_an_animation_and_a_pyramid(corpus: Path, tmp_path: Path) -> None:
    out, movie, dzi = tmp_path / "m.png", tmp_path / "zoom.webp", tmp_path / "deep"
    run = tessera(
        "make", corpus / "covers" / "mate-FreshFlower.jpg", corpus / "tiles_photo", "-o", out, "--cols", "40",
        "--tile-size", "16", "--animate", movie, "--seconds", "2", "--size", "160x120", "--fps", "10",
        "--cell", "7,3", "--dzi", dzi, "--zoom-tile-size", "64",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert f"wrote {movie} (160x120, 20 frames at 10 fps)" in run.stdout
    layout = DziLayout.from_descriptor((dzi / "mosaic.dzi").read_text())
    with Image.open(out) as mosaic:
        assert mosaic.size == (640, 480)
        picture = np.asarray(mosaic.convert("RGB"))
    # 16 px cells, 64 px at the deepest level: two levels below the render, drawn from the photos
    assert (layout.width, layout.height) == (640 * 4, 480 * 4)
    assert len(list((dzi / "mosaic_files").rglob("*.jpg"))) == layout.tile_total()
    render_level = layout.max_level - 2
    assert layout.level_size(render_level) == (640, 480)
    with Image.open(dzi / "mosaic_files" / str(render_level) / "1_1.jpg") as tile:
        x0, y0, x1, y1 = layout.tile_box(render_level, 1, 1)
        pixels = np.asarray(tile, dtype=float)
    error = np.abs(pixels - picture[y0:y1, x0:x1]).mean()  # JPEG q90, 4:2:0, of 16 px cells
    # (a wall of different photos has more edges for JPEG to blur than nearest-first had: about 8)
    assert error < 10 and np.abs(pixels - picture[y0:y1, x0 + 16 : x1 + 16]).mean() > 2 * error
    with Image.open(movie) as anim:
        assert anim.format == "WEBP" and anim.size == (160, 120)
        durations = []
        for index in range(anim.n_frames):
            anim.seek(index)
            anim.load()  # the frame's duration is known once it is decoded
            durations.append(anim.info["duration"])
        last = np.asarray(anim.convert("RGB"), dtype=float)
    assert sum(durations) == 2000
    cell = picture[3 * 16 : 4 * 16, 7 * 16 : 8 * 16]
    shown = np.asarray(Image.fromarray(last.astype(np.uint8)[:, 20:140]).resize((16, 16)), dtype=float)
    assert np.abs(shown - cell).mean() < 20


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--animate", "z.avi"], "bad --animate"),
        (["--animate", "z.mp4", "--size", "641x360"], "bad --size"),
        (["--animate", "z.mp4", "--size", "big"], "--size"),
        (["--animate", "z.gif", "--cell", "40,0"], "bad --cell"),
        (["--animate", "z.gif", "--kind", "spin"], "--kind"),
    ],
)
def test_bad_animation_options_fail_before_any_work(
    corpus: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    run = tessera(
        "make", corpus / "covers" / "mate-Dune.jpg", corpus / "tiles_photo", "-o", tmp_path / "m.jpg",
        "--cols", "40", *[str(tmp_path / a) if a.startswith("z.") else a for a in args],
    )  # fmt: skip
    assert run.returncode == 2 and message in run.stderr, run.stderr
    assert not list(tmp_path.iterdir())
