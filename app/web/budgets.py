"""What one request may cost, known before its job starts (issue 17), each refused with a 4xx
naming its limit and the setting that raises it:

* a render's cost is its output pixels, and so is its zoom pyramid's (cut from the same cells,
  queued by the render): ``TESSERA_MAX_OUTPUT_PIXELS`` (``TESSERA_MAX_TIFF_PIXELS`` for a print
  TIFF, which is streamed), with its rows under ``TESSERA_MAX_ROWS`` and its cols under
  ``TESSERA_MAX_COLS``;
* an animation's is its pixels x frames: ``TESSERA_MAX_ANIMATION_PIXEL_FRAMES``;
* an index build's is its files, each under ``TESSERA_MAX_FILE_BYTES`` and
  ``TESSERA_MAX_IMAGE_PIXELS``, at most ``TESSERA_MAX_FILES_PER_SESSION`` (checked as they arrive);
* and one session may have at most ``TESSERA_MAX_JOBS_PER_SESSION`` renders, pyramids and
  animations queued or running at once (counted from the records).
"""

from __future__ import annotations

from app.engine.animate import AnimationSpec
from app.engine.render import check_output_size
from app.jobs.services import Services
from app.settings import Settings
from app.web.errors import ApiError


def check_render_budget(
    settings: Settings, *, cols: int, rows: int, tile_shape: tuple[int, int], fmt: str
) -> None:
    """Refuse a render (and so its pyramid) over this server's limits before it is queued: its
    cols, its rows and its output pixels; the format's own size limits first."""
    if cols > settings.cols_limit:
        raise ApiError(
            422, f"at most {settings.cols_limit} columns on this server (TESSERA_MAX_COLS), got {cols}",
            field="cols",
        )  # fmt: skip
    if rows > settings.max_rows:
        raise ApiError(
            422, f"this cover needs {rows} rows at {cols} columns, more than the limit of "
            f"{settings.max_rows} (TESSERA_MAX_ROWS); use fewer columns", field="cols",
        )  # fmt: skip
    width, height = cols * tile_shape[0], rows * tile_shape[1]
    check_output_size(width, height, fmt)  # what the format can store
    tiff = fmt == "tiff"
    limit = settings.max_tiff_pixels if tiff else settings.max_output_pixels
    if width * height > limit:
        setting = "TESSERA_MAX_TIFF_PIXELS" if tiff else "TESSERA_MAX_OUTPUT_PIXELS"
        raise ApiError(
            413, f"a {width}x{height} mosaic has {width * height / 1e6:.0f} megapixels, more than the "
            f"limit of {limit / 1e6:.0f} ({setting}); use fewer columns or smaller tiles", field="cols",
        )  # fmt: skip


def animation_cost(spec: AnimationSpec) -> int:
    """Pixels encoded in all: frame pixels x frames."""
    return spec.width * spec.height * round(spec.fps * spec.seconds)


def check_animation_budget(settings: Settings, spec: AnimationSpec) -> None:
    cost, limit = animation_cost(spec), settings.max_animation_pixel_frames
    if cost > limit:
        raise ApiError(
            422, f"this animation is {cost / 1e9:.2f} G pixel-frames ({spec.width}x{spec.height} at "
            f"{spec.fps} fps for {spec.seconds:g} s), over the limit of {limit / 1e9:.2f} G "
            "(TESSERA_MAX_ANIMATION_PIXEL_FRAMES); make it shorter, smaller or slower",
            field="seconds",
        )  # fmt: skip


def active_jobs(services: Services, session_id: str) -> int:
    """Renders, pyramid builds and animations of the session that are queued or running."""
    count = 0
    for mosaic in services.records.mosaics_of(session_id):
        count += mosaic.state in ("queued", "rendering")
        pyramid = services.zoom_records.pyramid(mosaic.id)
        count += pyramid is not None and pyramid.state in ("queued", "building")
        count += sum(
            a.state in ("queued", "rendering") for a in services.zoom_records.animations_of(mosaic.id)
        )
    return count


def check_session_jobs(services: Services, session_id: str) -> None:
    limit = services.settings.max_jobs_per_session
    if (count := active_jobs(services, session_id)) >= limit:
        raise ApiError(
            429, f"this session already has {count} jobs queued or running, the limit "
            f"(TESSERA_MAX_JOBS_PER_SESSION) is {limit}; try again when one has finished",
            field="session_id",
        )  # fmt: skip
