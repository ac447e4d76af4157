"""The pieces behind the command line's tile cache, in process: features computed where the tiles
are decoded equal those computed afterwards, file names are spelt as ``pathlib`` spells them,
an index asked twice for the same cells answers the same, and an older cache layout is rebuilt."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from app.engine.features import FeatureSpec, cover_features, tile_features
from app.engine.index import TileIndex
from app.engine.mosaic import load_cover
from app.engine.options import MosaicParams
from app.engine.tile_cache import TileCache, load_tiles
from app.engine.tiles import TileSet, walk_files, walk_images


@pytest.mark.parametrize("parallel", ["process", "thread"])
def test_features_from_the_decode_workers_equal_those_computed_afterwards(
    corpus: Path, photo_tiles: list[Path], parallel: str
) -> None:
    spec = FeatureSpec("lab", 4)
    inputs = [*sorted((corpus / "odd").iterdir()), *photo_tiles[:90]]  # rejected files in between
    tiles = TileSet.from_paths(inputs, size=(16, 12), features=spec, parallel=parallel, workers=2)
    assert tiles.rejected and len(tiles) >= 90
    assert tiles.features is not None and tiles.features_key == spec.key
    assert np.array_equal(tiles.features, tile_features(tiles.images, color_space="lab", grid=4))
    other = FeatureSpec("oklab", 2)
    assert np.array_equal(tiles.features_of(other), tile_features(tiles.images, color_space="oklab", grid=2))


def test_the_cache_keeps_features_per_setting_and_gives_them_back(
    photo_tiles: list[Path], tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in photo_tiles[:70]:
        (folder / p.name).write_bytes(p.read_bytes())
    cache = TileCache(tmp_path / "cache")
    lab = FeatureSpec("lab", 4)
    first, use = load_tiles([folder], size=(12, 12), cache=cache, features=lab)
    assert (use.cached, use.decoded) == (0, 70) and first.features is not None
    again, use = load_tiles([folder], size=(12, 12), cache=cache, features=lab)
    assert (use.cached, use.decoded) == (70, 0)
    assert np.array_equal(again.images, first.images) and again.names == first.names
    assert again.features is not None and np.array_equal(again.features, first.features)
    with sqlite3.connect(cache.path) as db:  # served from the cache, not computed again: a marked row shows
        db.execute(
            "UPDATE tiles SET features = ? WHERE path = ?",
            (bytes(4 * 48), str(folder.absolute() / photo_tiles[0].name)),
        )
    marked, _ = load_tiles([folder], size=(12, 12), cache=cache, features=lab)
    assert (
        marked.features is not None
        and not marked.features[0].any()
        and np.array_equal(marked.features[1:], first.features[1:])
    )
    rgb = FeatureSpec("rgb", 1)  # other settings: the cached pixels, features computed from them
    other, use = load_tiles([folder], size=(12, 12), cache=cache, features=rgb)
    assert (use.cached, use.decoded) == (70, 0)
    assert other.features is not None and other.features_key == rgb.key
    assert np.array_equal(other.features, tile_features(first.images, color_space="rgb", grid=1))
    with sqlite3.connect(cache.path) as db:
        assert db.execute("SELECT DISTINCT features_key FROM tiles").fetchall() == [(rgb.key,)]
    cache.close()


def test_file_names_are_spelt_as_pathlib_spells_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / ".hidden").mkdir()
    for name in ("a/x.jpg", "a/b/y.jpg", "a/.z.jpg", "a/.hidden/w.jpg"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    for given in (".", "a", "./a", "a/", str(tmp_path / "a"), "a/b/.."):
        assert walk_files(given) == [str(p) for p in walk_images(Path(given))]
        assert walk_files(given) == _pathlib_walk(Path(given))
    assert walk_files("a") == ["a/x.jpg", "a/b/y.jpg"]


def _pathlib_walk(folder: Path) -> list[str]:
    """The walk as it was written before, one Path per file."""
    found: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(str(Path(root) / f) for f in sorted(files) if not f.startswith("."))
    return found


def test_an_index_told_to_expect_a_second_search_answers_both_as_two_searches_would(
    corpus: Path, photo_tiles: list[Path]
) -> None:
    tiles = TileSet.from_paths(photo_tiles, size=(16, 16))
    features = tile_features(tiles.images, grid=4)
    params = MosaicParams(cols=30)
    cover = load_cover(corpus / "covers" / "mate-FreshFlower.jpg", params)
    cells = cover_features(cover.image, 30, params.rows_for(cover.width, cover.height), grid=4)
    plain = TileIndex(features)
    expected = [plain.query(cells, 8), TileIndex(features).query(cells, 25)]
    told = TileIndex(features)
    told.expect(25)
    answers = [told.query(cells, 8), told.query(cells.astype(np.float64), 25)]  # the same values
    for (d0, i0), (d1, i1) in zip(expected, answers, strict=True):
        assert np.array_equal(i0, i1) and np.allclose(d0, d1)
    assert told.query(cells[:5], 3)[1].tolist() == plain.query(cells[:5], 3)[1].tolist()  # other cells


def test_a_cache_of_the_older_layout_is_made_anew(photo_tiles: list[Path], tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    folder.mkdir()
    with sqlite3.connect(folder / "tiles.sqlite3") as db:  # the layout before issue 15's second part
        db.execute(
            "CREATE TABLE tiles (path TEXT NOT NULL, variant TEXT NOT NULL, size INTEGER NOT NULL,"
            " mtime_ns INTEGER NOT NULL, reason TEXT, pixels BLOB, PRIMARY KEY (path, variant)) WITHOUT ROWID"
        )
        db.execute("INSERT INTO tiles VALUES ('/x.jpg', 'v2:12x12', 1, 1, NULL, x'00')")
    cache = TileCache(folder)
    tiles, use = load_tiles(photo_tiles[:3], size=(12, 12), cache=cache)
    assert (use.cached, use.decoded, len(tiles)) == (0, 3, 3)
    cache.close()
    with sqlite3.connect(folder / "tiles.sqlite3") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 3
        assert db.execute("SELECT count(*) FROM tiles").fetchone()[0] == 3
