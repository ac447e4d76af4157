"""Generate the benchmark inputs under /tmp (never in the repository); each set is made once.

    python bench/inputs.py [phone] [tiles]

* ``phone``: 300 phone-like JPEGs of 12 megapixels (4000 x 3000, about 0.5 MB each), cut from
  the corpus covers and photos (random crop, flip, upscale, light grain); a third carry the EXIF
  orientation "rotate 90" as phones write it.
* ``tiles``: 20,000 small photo tiles (about 256 px, a few tens of kB) cut from
  corpus/tiles_photo by random crops, flips and small colour shifts; ``tiles_1000`` and
  ``tiles_10000`` are hard-linked subsets.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from _common import CORPUS, SCRATCH, files_in
from PIL import Image

PHONE_SIZE = (4000, 3000)
PHONE_TARGET_BYTES = 500_000
TILE_COUNTS = (1000, 10000, 20000)


def phone_dir(count: int = 300) -> Path:
    """The folder of ``count`` 12 MP JPEGs, generated on first use."""
    folder = SCRATCH / f"phone_{count}"
    if _complete(folder, count):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    sources = [_load(p) for p in files_in(CORPUS / "covers")]
    sources += [_load(p) for p in files_in(CORPUS / "tiles_photo")[::10]]
    rng = np.random.default_rng(12)
    quality = 80
    for i in range(count):
        img = _phone_like(sources[i % len(sources)], rng)
        data, quality = _encode_near(img, PHONE_TARGET_BYTES, quality, rotated=i % 3 == 0)
        (folder / f"phone_{i:04d}.jpg").write_bytes(data)
        if i % 50 == 0:
            print(f"phone {i}/{count} ({len(data) / 1e6:.2f} MB, q{quality})", flush=True)
    return folder


def tiles_dir(count: int) -> Path:
    """A folder of ``count`` small tile photos (hard links into the 20,000 set)."""
    full = SCRATCH / f"tiles_{max(TILE_COUNTS)}"
    if not _complete(full, max(TILE_COUNTS)):
        _make_tiles(full, max(TILE_COUNTS))
    if count == max(TILE_COUNTS):
        return full
    folder = SCRATCH / f"tiles_{count}"
    if not _complete(folder, count):
        folder.mkdir(parents=True, exist_ok=True)
        for src in files_in(full)[:count]:
            dst = folder / src.name
            if not dst.exists():
                dst.hardlink_to(src)
    return folder


def _make_tiles(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    sources = [_load(p) for p in files_in(CORPUS / "tiles_photo")]
    rng = np.random.default_rng(34)
    for i in range(count):
        src = sources[i % len(sources)]
        side = int(min(src.size) * rng.uniform(0.6, 1.0))
        x = int(rng.integers(0, src.width - side + 1))
        y = int(rng.integers(0, src.height - side + 1))
        tile = src.crop((x, y, x + side, y + side)).resize((256, 256), Image.Resampling.BILINEAR)
        if rng.random() < 0.5:
            tile = tile.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        shift = rng.integers(-20, 21, size=3)
        arr = np.clip(np.asarray(tile, dtype=np.int16) + shift, 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"tile_{i:05d}.jpg", quality=85)
        if i % 5000 == 0:
            print(f"tiles {i}/{count}", flush=True)


def _phone_like(src: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random 4:3 crop of ``src``, maybe mirrored, upscaled to 12 MP with a little grain."""
    width = int(src.width * rng.uniform(0.7, 1.0))
    height = min(src.height, width * 3 // 4)
    width = height * 4 // 3
    x = int(rng.integers(0, src.width - width + 1))
    y = int(rng.integers(0, src.height - height + 1))
    img = src.crop((x, y, x + width, y + height)).resize(PHONE_SIZE, Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    grain = rng.normal(0.0, 3.0, size=(PHONE_SIZE[1], PHONE_SIZE[0], 1)).astype(np.float32)
    arr = np.clip(np.asarray(img, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def _encode_near(img: Image.Image, target: int, quality: int, *, rotated: bool) -> tuple[bytes, int]:
    """JPEG bytes near ``target`` size: start from the last quality used and step it a few times."""
    exif = Image.Exif()
    if rotated:
        exif[0x0112] = 6  # "rotate 90 CW to view": the file is stored landscape, shown portrait
    data = b""
    for _ in range(4):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality, exif=exif.tobytes())
        data = buf.getvalue()
        if len(data) > target * 1.25 and quality > 20:
            quality -= 8
        elif len(data) < target * 0.8 and quality < 95:
            quality += 5
        else:
            break
    return data, quality


def _load(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def _complete(folder: Path, count: int) -> bool:
    return folder.is_dir() and len(files_in(folder)) >= count


def main(argv: list[str]) -> None:
    which = argv or ["phone", "tiles"]
    if "phone" in which:
        print(phone_dir())
    if "tiles" in which:
        for count in TILE_COUNTS:
            print(tiles_dir(count))


if __name__ == "__main__":
    main(sys.argv[1:])
