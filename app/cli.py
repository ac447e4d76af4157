"""The ``tessera`` command line: ``tessera make`` builds a mosaic (and, if asked, its Deep Zoom
pyramid and an animation), ``tessera serve`` runs the web app, ``tessera worker`` runs background
jobs for a cluster of web processes."""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

from app.engine import (
    OPTIONS,
    BadParameter,
    EngineError,
    ImageRejected,
    MosaicParams,
    TileSet,
    format_for_path,
    load_cover,
    make_mosaic,
)
from app.engine.animate import KINDS, VIDEO_FORMATS, AnimationSpec, Kind, make_animation, scene_of
from app.engine.deep_zoom import photo_levels
from app.engine.index import import_in_background
from app.engine.mosaic import MosaicResult, write_mosaic
from app.engine.options import MAX_OUTPUT_PIXELS
from app.engine.pyramid import DziLayout, GridSource, write_pyramid
from app.engine.render import MAX_TIFF_PIXELS
from app.engine.tile_cache import CacheUse, TileCache, default_cache_dir, load_tiles

log = logging.getLogger(__name__)
_SHOWN_REJECTIONS = 20
_DEFAULT_SIZES = {"mp4": (1280, 720), "gif": (480, 270), "webp": (854, 480)}
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:  # each command configures logging once, as it starts (serve: through uvicorn)
        return int(args.run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tessera", description="Photo mosaics from your own photos.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    make = commands.add_parser(
        "make",
        help="make a mosaic of COVER from tile photos",
        description="Make a photo mosaic of COVER from the tile photos.",
    )
    make.add_argument("cover", help="the picture to re-create")
    make.add_argument("tiles", nargs="+", help="tile photos, or folders of them (walked recursively)")
    make.add_argument(
        "-o",
        "--output",
        default="mosaic.jpg",
        help="output file; .jpg, .png, .webp or .tif (a print file, streamed; default: mosaic.jpg)",
    )
    _add_mosaic_options(make)
    make.add_argument("--quality", type=int, default=90, help="JPEG/WebP quality (default: %(default)s)")
    make.add_argument("--workers", type=int, default=None, help="decoding threads (default: all cores)")
    make.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    make.add_argument(
        "--cache", metavar="DIR", default=None,
        help="tile cache folder (default: TESSERA_CACHE_DIR, else $XDG_CACHE_HOME/tessera)",
    )  # fmt: skip
    make.add_argument("--no-cache", action="store_true", help="decode every tile; read and write no cache")
    see = make.add_argument_group("zoom: a Deep Zoom pyramid and an animation of the mosaic")
    see.add_argument("--dzi", metavar="FOLDER", help="also write FOLDER/mosaic.dzi and FOLDER/mosaic_files/")
    see.add_argument("--animate", metavar="FILE", help="also write an animation; .mp4, .gif or .webp")
    see.add_argument(
        "--kind",
        choices=[*KINDS, "zoom-out"],
        default="zoom",
        help="what the animation shows (default: zoom)",
    )
    see.add_argument("--seconds", type=float, default=8.0, help="animation length (default: %(default)s)")
    see.add_argument(
        "--size",
        type=_size,
        default=None,
        help="frame size WxH (default: 1280x720 for mp4, 480x270 for gif, 854x480 for webp)",
    )
    see.add_argument(
        "--fps", type=int, default=None, help="frames per second (default: 24, 12 for gif and webp)"
    )
    see.add_argument(
        "--cell", type=_cell, default=None, help="COL,ROW the zoom ends in (default: the middle)"
    )
    make.set_defaults(run=_make)

    serve = commands.add_parser("serve", help="run the web service")
    serve.add_argument("--host", default=None, help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default: 8000)")
    serve.set_defaults(run=_serve)

    worker = commands.add_parser(
        "worker",
        help="run background jobs from the queue (needs TESSERA_BROKER_URL)",
        description="Take index builds, renders, zoom pyramids and animations from the Celery queues on "
        "TESSERA_BROKER_URL and run them; SIGTERM lets running jobs finish first. Settings: "
        "TESSERA_WORKER_CONCURRENCY, TESSERA_WORKER_QUEUES, and the storage settings the web processes use.",
    )
    worker.add_argument("--name", default=None, help="worker name, unique in the cluster (default: tessera)")
    worker.add_argument("--concurrency", type=int, default=None, help="jobs at once (default: setting)")
    worker.add_argument("--queues", default=None, help="comma-separated queues (default: setting, all)")
    worker.add_argument(
        "--loglevel",
        type=str.upper,
        choices=_LOG_LEVELS,
        default="INFO",
        help="log level (default: %(default)s)",
    )
    worker.set_defaults(run=_worker)
    return parser


def _add_mosaic_options(make: argparse.ArgumentParser) -> None:
    """A flag per mosaic option of the engine's table (app/engine/options.py), its range and
    default in the help. Values stay text: :meth:`MosaicParams.from_form` parses and checks
    them, as it does the REST API's form, so both accept and refuse the same values."""
    for option in OPTIONS.values():
        if option.kind == "bool":
            make.add_argument(option.flag, action="store_true", default=option.default, help=option.help)
            continue
        shown = option.text(option.default) or option.none_means
        help_text = f"{option.help} ({option.allowed()}; default: {shown})".replace("%", "%%")
        make.add_argument(
            option.flag, default=option.default, metavar=option.metavar,
            choices=option.choices if option.kind == "choice" else None,
            help=help_text,
        )  # fmt: skip


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH such as 1280x720, got {text!r}") from None
    return w, h


def _cell(text: str) -> tuple[int, int]:
    try:
        col, row = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected COL,ROW such as 12,30, got {text!r}") from None
    return col, row


def _animation_spec(args: argparse.Namespace) -> AnimationSpec | None:
    """The animation the options ask for (None without ``--animate``); raises BadParameter."""
    if not args.animate:
        return None
    path = Path(args.animate)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in VIDEO_FORMATS:
        raise BadParameter("animate", f"unknown animation extension {path.suffix!r}; use .mp4, .gif or .webp")
    if not path.parent.is_dir():
        raise BadParameter("animate", f"folder {str(path.parent)!r} does not exist")
    col, row = args.cell if args.cell else (None, None)
    kind: Kind = "zoom" if args.kind == "zoom-out" else args.kind
    width, height = args.size or _DEFAULT_SIZES[fmt]
    return AnimationSpec(
        kind=kind, fmt=fmt, seconds=args.seconds, width=width, height=height,
        fps=args.fps or (24 if fmt == "mp4" else 12), col=col, row=row,
        reverse=args.kind == "zoom-out",
    )  # fmt: skip


def _configure_logging(level: str) -> None:
    """The one logging configuration of ``make`` and ``worker`` (``serve``'s is uvicorn's)."""
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _make(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    _configure_logging("WARNING")
    output = Path(args.output)
    try:
        fmt = format_for_path(output)
        limit = MAX_TIFF_PIXELS if fmt == "tiff" else MAX_OUTPUT_PIXELS  # a TIFF is streamed
        params = MosaicParams.from_form(vars(args), max_output_pixels=limit)
        if not output.parent.is_dir():
            raise BadParameter("output", f"folder {str(output.parent)!r} does not exist")
        spec = _animation_spec(args)
    except BadParameter as exc:
        return _fail(f"bad {_option(exc.field)}: {exc.message}", code=2)
    try:  # the cover first: a bad cover should fail before thousands of tiles are decoded
        cover = load_cover(args.cover, params, name=args.cover)
    except ImageRejected as exc:
        return _fail(f"cover {exc.name}: {exc.reason}", code=1)
    try:  # the rows follow from the cover: now the animation's cell can be checked too
        if spec is not None:
            spec.validate(params.cols, params.rows_for(cover.width, cover.height))
    except BadParameter as exc:
        return _fail(f"bad {_option(exc.field)}: {exc.message}", code=2)

    bar = _ProgressBar("tiles", enabled=not args.quiet and sys.stderr.isatty())

    tiles, use = _load_tiles(args, params.tile_shape, bar)
    bar.close()
    decode_s = time.perf_counter() - started
    if not args.quiet:
        _print_tiles(tiles)
        if use is not None:
            print(f"tile cache: {use.cached} from the cache, {use.decoded} decoded")
    try:
        result = make_mosaic(cover, tiles, params, stitched=fmt != "tiff")
        t = time.perf_counter()
        _write_atomically(result, output, fmt, args.quality)
        encode_s = time.perf_counter() - t
        _zoom_outputs(args, result, tiles, spec)
    except ImageRejected as exc:
        return _fail(f"cover {exc.name}: {exc.reason}", code=1)
    except BadParameter as exc:
        return _fail(f"bad {_option(exc.field)}: {exc.message}", code=2)
    except EngineError as exc:
        return _fail(str(exc), code=1)
    except OSError as exc:
        return _fail(f"cannot write {output}: {exc.strerror or exc}", code=1)

    if not args.quiet:
        report = result.report()
        print(
            f"wrote {output} ({report['width']}x{report['height']} px, "
            f"{result.cols}x{result.rows} tiles of {params.tile_shape[0]}x{params.tile_shape[1]} px)"
        )
        size = cast(dict[str, float], report["print"])
        print(
            f"print: {size['width_cm']} x {size['height_cm']} cm "
            f"({size['width_in']} x {size['height_in']} in) at {size['dpi']} dpi"
        )
        _print_quality(result.quality)
        _print_raised(result.rules_raised)
        timings = result.timings
        print(
            f"time: tiles {decode_s:.2f} s, cover {timings['cover']:.2f} s, match {timings['match']:.2f} s, "
            f"render {timings['render']:.2f} s, encode {encode_s:.2f} s, "
            f"total {time.perf_counter() - started:.2f} s"
        )
    return 0


def _load_tiles(
    args: argparse.Namespace, shape: tuple[int, int], bar: Callable[[int, int], None]
) -> tuple[TileSet, CacheUse | None]:
    """The tiles, through the tile cache unless ``--no-cache`` (or the cache cannot be opened)."""
    if not args.no_cache:
        folder = (
            args.cache or os.environ.get("TESSERA_CACHE_DIR") or default_cache_dir()
        )  # Settings.cache_dir
        try:
            cache = TileCache(folder)
        except (OSError, sqlite3.Error) as exc:
            print(f"tessera: tile cache {folder} unusable ({exc}); decoding every tile", file=sys.stderr)
        else:
            try:
                return load_tiles(
                    args.tiles, size=shape, cache=cache, workers=args.workers, progress=bar,
                    started=import_in_background,  # the late imports overlap the decoding
                )  # fmt: skip
            finally:
                cache.close()

    def progress(done: int, total: int) -> None:
        bar(done, total)
        if done:  # the decode processes exist now: the late imports can overlap the decoding
            import_in_background()

    return TileSet.from_paths(args.tiles, size=shape, workers=args.workers, progress=progress), None


def _zoom_outputs(
    args: argparse.Namespace, result: MosaicResult, tiles: TileSet, spec: AnimationSpec | None
) -> None:
    """The pyramid and the animation that ``--dzi`` and ``--animate`` ask for, from the grid."""
    cell_size = result.params.tile_shape
    if args.dzi:
        t = time.perf_counter()
        folder = Path(args.dzi)
        source = GridSource.from_tiles(tiles, result.grid, cell_size, result.cell_offsets, result.backgrounds)
        photos = {name: name for name in tiles.names}
        deep = photo_levels(  # the levels below the render, from the photos (--zoom-tile-size)
            tiles, result.grid, cell_size, DziLayout(*source.size), sources=photos,
            zoom_tile_size=result.params.zoom_tile_size, offsets=result.cell_offsets,
            backgrounds=result.backgrounds,
        )  # fmt: skip
        depth = 0 if deep is None else deep.depth
        layout = write_pyramid(source, folder, workers=2, depth=depth, deep=deep)
        if not args.quiet:
            print(f"wrote {folder / 'mosaic.dzi'} ({layout.levels} levels, {layout.tile_total()} tiles) "
                  f"in {time.perf_counter() - t:.2f} s")  # fmt: skip
    if spec is not None:
        t = time.perf_counter()
        path = Path(args.animate)
        sources = {name: name for name in tiles.names}
        scene = scene_of(
            tiles, result.grid, cell_size, offsets=result.cell_offsets, sources=sources,
            backgrounds=result.backgrounds,
        )  # fmt: skip
        bar = _ProgressBar("frames", enabled=not args.quiet and sys.stderr.isatty())
        tmp = path.with_name(f".{path.stem}.part{path.suffix}")
        try:
            frames = make_animation(scene, spec, tmp, progress=bar)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        bar.close()
        if not args.quiet:
            print(f"wrote {path} ({spec.width}x{spec.height}, {frames} frames at {spec.fps} fps) "
                  f"in {time.perf_counter() - t:.2f} s")  # fmt: skip


def _print_quality(quality: dict[str, float | int]) -> None:
    print(
        f"quality: colour error per cell {quality['cell_de']:.2f} (mean CIEDE2000), "
        f"distinct tiles used {quality['distinct_tiles']}, most uses of one tile {quality['max_uses']}, "
        f"neighbours with the same tile {100 * quality['adjacent_same']:.1f} %, "
        f"library used {100 * quality.get('library_used', 0):.1f} %"
    )


def _print_raised(raised: list[dict[str, object]]) -> None:
    """The rules the library was too small for, one line each."""
    for rule in raised:
        flag = "--" + str(rule["rule"]).replace("_", "-")
        print(f"rule not kept: {flag} asked {rule['asked']}, used {rule['used']} ({rule['reason']})")


def _print_tiles(tiles: TileSet) -> None:
    print(f"tiles: {len(tiles)} accepted, {len(tiles.rejected)} rejected")
    for rejection in tiles.rejected[:_SHOWN_REJECTIONS]:
        print(f"  rejected {rejection.name}: {rejection.reason}")
    rest = tiles.rejected[_SHOWN_REJECTIONS:]
    if rest:
        reasons = Counter(r.reason.split(" (")[0] for r in rest)
        summary = "; ".join(f"{n} x {reason}" for reason, n in reasons.most_common())
        print(f"  ... and {len(rest)} more rejected: {summary}")


def _write_atomically(result: MosaicResult, output: Path, fmt: str, quality: int) -> None:
    tmp = output.with_name(f".{output.name}.part")
    try:
        with open(tmp, "wb") as fh:
            write_mosaic(result, fh, fmt, quality=quality)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)


#: Engine parameter names that have a differently named option.
_OPTIONS = {"width": "size", "height": "size", "col": "cell", "row": "cell"}


def _option(field: str) -> str:
    return "--" + _OPTIONS.get(field, field).replace("_", "-")


def _fail(message: str, *, code: int) -> int:
    print(f"tessera: error: {message}", file=sys.stderr)
    return code


def _serve(args: argparse.Namespace) -> int:
    from app.server import serve  # the web stack is imported only when serving

    return serve(host=args.host, port=args.port)


def _worker(args: argparse.Namespace) -> int:
    from app.jobs.worker import run_worker  # Celery is imported only by workers
    from app.settings import get_settings

    overrides: dict[str, object] = {}
    if args.concurrency is not None:
        overrides["worker_concurrency"] = args.concurrency
    if args.queues is not None:
        overrides["worker_queues"] = args.queues
    settings = get_settings()
    if overrides:
        settings = settings.model_copy(update=overrides)
    if not settings.broker_url:
        return _fail("tessera worker needs TESSERA_BROKER_URL (e.g. redis://127.0.0.1:6379/0)", code=2)
    from celery.signals import setup_logging

    _configure_logging(args.loglevel)
    setup_logging.connect(_leave_logging_alone)  # a receiver stops Celery configuring it again
    return run_worker(settings, name=args.name, loglevel=args.loglevel)


def _leave_logging_alone(**_: object) -> None:
    """Celery's ``setup_logging`` receiver: logging is already configured."""


class _ProgressBar:
    """A one-line progress bar on stderr, shown only on a terminal."""

    def __init__(self, label: str, *, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or (done < total and now - self._last < 0.1):
            return
        self._last = now
        width = 30
        filled = width * done // max(total, 1)
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
