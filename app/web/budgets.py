"""What one request may cost, known before its job starts (issue 17): an animation's pixels x
frames against ``TESSERA_MAX_ANIMATION_PIXEL_FRAMES``, and the jobs one session may have queued
or running at once against ``TESSERA_MAX_JOBS_PER_SESSION`` (counted from the records). A
render's and a pyramid's cost is its output pixels, bounded by ``TESSERA_MAX_OUTPUT_PIXELS``."""

from __future__ import annotations

from app.engine.animate import AnimationSpec
from app.jobs.services import Services
from app.settings import Settings
from app.web.errors import ApiError


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
