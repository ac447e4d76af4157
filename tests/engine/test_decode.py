"""Every awkward file of the corpus is either decoded right or refused with a clear reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.engine import ImageRejected, ImageTooLarge, TileSet, load_rgb
from app.engine.tiles import make_tile
from tests.conftest import read_image

REJECTED = {
    "truncated.jpg": "truncated",
    "text_named.jpg": "not a supported image",
    "empty.jpg": "empty file",
    "bomb_30000x30000.png": "too large",
}


@pytest.mark.parametrize(("name", "reason"), sorted(REJECTED.items()))
def test_bad_files_are_refused_with_their_name_and_reason(corpus: Path, name: str, reason: str) -> None:
    with pytest.raises(ImageRejected) as info:
        load_rgb(corpus / "odd" / name)
    assert name in str(info.value)
    assert reason in info.value.reason


def test_bomb_is_refused_before_decoding(corpus: Path) -> None:
    code = (
        "import resource, sys\n"
        "from app.engine import load_rgb, ImageTooLarge\n"
        "try:\n"
        f"    load_rgb({str(corpus / 'odd' / 'bomb_30000x30000.png')!r})\n"
        "except ImageTooLarge:\n"
        "    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak_kib = int(out.stdout.strip())
    assert peak_kib < 300 * 1024, f"refusing the bomb peaked at {peak_kib / 1024:.0f} MiB"


def test_our_own_pixel_limit_applies(corpus: Path) -> None:
    with pytest.raises(ImageTooLarge, match="1024x640"):
        load_rgb(corpus / "odd" / "cmyk.jpg", max_pixels=500_000)


def test_exif_rotated_photo_comes_out_upright(corpus: Path) -> None:
    img = load_rgb(corpus / "odd" / "exif_orientation_6.jpg")
    assert img.size == (640, 427)
    raw = read_image(corpus / "odd" / "exif_orientation_6.jpg", "RGB")
    # Orientation 6 means "rotate 90 degrees clockwise to view": the stored pixels turned by -90.
    expected = np.asarray(raw.transpose(Image.Transpose.ROTATE_270), dtype=np.float64)
    assert np.abs(np.asarray(img, dtype=np.float64) - expected).mean() < 1.0


def test_exif_rotation_survives_reduced_size_decoding(corpus: Path) -> None:
    tile = make_tile(corpus / "odd" / "exif_orientation_6.jpg", name="x", size=(64, 32))
    full = load_rgb(corpus / "odd" / "exif_orientation_6.jpg").resize((64, 43), Image.Resampling.BOX)
    crop = np.asarray(full, dtype=np.float64)[5:37]
    assert tile.shape == (32, 64, 3)
    assert np.abs(tile.astype(np.float64) - crop).mean() < 12


def test_cmyk_matches_its_rgb_rendering(corpus: Path) -> None:
    img = np.asarray(load_rgb(corpus / "odd" / "cmyk.jpg"), dtype=np.float64)
    assert img.shape == (640, 1024, 3)
    # Not a negative: a photo of nature is neither mostly near-white nor inverted; compare with
    # Pillow's own CMYK->RGB conversion, which the corpus documents as right.
    reference = np.asarray(read_image(corpus / "odd" / "cmyk.jpg", "RGB"), dtype=np.float64)
    assert np.abs(img - reference).mean() < 1.0
    assert 40 < img.mean() < 215


def test_gray16_is_scaled_not_clipped(corpus: Path) -> None:
    img = np.asarray(load_rgb(corpus / "odd" / "gray16.png"), dtype=np.float64)
    raw = np.asarray(read_image(corpus / "odd" / "gray16.png"), dtype=np.float64)
    assert img.shape == (480, 640, 3)
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()
    assert np.abs(img[..., 0] - raw / 257.0).max() <= 0.5 + 1e-9
    assert (img == 255).mean() < 0.05, "a clipped 16-bit image comes out almost all white"


def test_rgb16_keeps_its_colours(corpus: Path) -> None:
    img = np.asarray(load_rgb(corpus / "odd" / "rgb16.png"))
    assert img.shape == (400, 640, 3) and img.dtype == np.uint8
    assert 20 < img.mean() < 235


def test_palette_transparency_is_composited_onto_the_background(corpus: Path) -> None:
    path = corpus / "odd" / "palette_transparent.png"
    alpha = np.asarray(read_image(path, "RGBA"))[..., 3]
    on_white = np.asarray(load_rgb(path))
    on_red = np.asarray(load_rgb(path, background=(255, 0, 0)))
    clear = alpha == 0
    assert clear.mean() > 0.3
    assert (on_white[clear] == 255).all()
    assert (on_red[clear] == [255, 0, 0]).all()
    assert (on_white[alpha == 255] == on_red[alpha == 255]).all()


def test_emoji_tiles_match_by_what_they_show(corpus: Path) -> None:
    path = next(iter(sorted((corpus / "tiles_emoji").glob("*.png"))))
    rgba = np.asarray(read_image(path, "RGBA"), dtype=np.float64)
    tile = make_tile(path, name=path.name, size=(64, 64)).astype(np.float64)
    a = rgba[..., 3:] / 255.0
    expected = rgba[..., :3] * a + 255.0 * (1 - a)
    assert np.abs(tile - expected).mean() < 3.0


@pytest.mark.parametrize("name", ["grayscale.png", "progressive.jpg", "photo.webp", "animated.gif"])
def test_ordinary_formats_load(corpus: Path, name: str) -> None:
    path = corpus / "odd" / name
    img = load_rgb(path)
    reference = read_image(path)
    assert img.mode == "RGB" and img.size == reference.size
    expected = np.asarray(reference.convert("RGB"), dtype=np.float64)
    assert np.abs(np.asarray(img, dtype=np.float64) - expected).mean() < 1.0


def test_tiny_image_becomes_a_flat_tile(corpus: Path) -> None:
    tile = make_tile(corpus / "odd" / "tiny_1x1.png", name="tiny", size=(16, 16))
    assert (tile == [148, 111, 87]).all()


def test_jpeg_tiles_are_decoded_at_reduced_size(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[tuple[int, int]] = []
    real = Image.Image.resize

    def spy(self: Image.Image, *args: object, **kwargs: object) -> Image.Image:
        decoded.append(self.size)
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Image.Image, "resize", spy)
    make_tile(corpus / "covers" / "mate-Aqua.jpg", name="aqua", size=(32, 32))
    assert decoded and max(decoded[0]) <= 2560 // 8 + 8, f"decoded at {decoded[0]}, not at 1/8 scale"


def test_a_library_survives_every_odd_file(corpus: Path) -> None:
    tiles = TileSet.from_paths([corpus / "odd", corpus / "tiles_photo"], size=(24, 24))
    rejected = {Path(r.name).name: r.reason for r in tiles.rejected}
    assert set(rejected) == {*REJECTED, "README.txt"}
    assert len(tiles) == 300 + 15 - 5
    assert tiles.images.shape == (len(tiles), 24, 24, 3)


def test_missing_paths_are_reported(tmp_path: Path) -> None:
    tiles = TileSet.from_paths([tmp_path / "nope.jpg"], size=(8, 8))
    assert len(tiles) == 0
    assert tiles.rejected[0].reason == "no such file or directory"


def test_heic_from_phones_loads(corpus: Path, tmp_path: Path) -> None:
    source = read_image(corpus / "odd" / "exif_orientation_6.jpg", "RGB").transpose(
        Image.Transpose.ROTATE_270
    )
    source.info.pop("exif", None)  # the pixels are upright now; drop the rotation flag
    heic = tmp_path / "phone.heic"
    source.save(heic, format="HEIF", quality=90)
    with Image.open(heic) as probe:
        assert probe.format == "HEIF"
    img = load_rgb(heic)
    assert img.size == source.size
    diff = np.abs(np.asarray(img, dtype=np.float64) - np.asarray(source, dtype=np.float64)).mean()
    assert diff < 6
