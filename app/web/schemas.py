"""What the REST API accepts and returns (these models are the OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from app.engine import OPTIONS, BadParameter, MosaicParams, Option
from app.engine.features import ColorSpace


def _option_field(option: Option[Any], **extra: Any) -> Any:
    """A form field with the engine's default, range and help for ``option`` (one table,
    app/engine/options.py, so the OpenAPI schema shows exactly what the engine accepts)."""
    number = option.kind in ("int", "float")
    return Field(
        option.text(option.default) if option.kind == "ratio" else option.default,
        ge=option.minimum if number else None,
        le=option.maximum if number else None,
        description=f"{option.help}: {option.allowed()}",
        **extra,
    )


class MosaicOptions(BaseModel):
    """Form fields of a mosaic request. Names match the CLI options (``_`` for ``-``); every
    field but ``format`` is an engine option and is checked by the engine's own rules."""

    cols: int = _option_field(OPTIONS["cols"])
    tile_size: int = _option_field(OPTIONS["tile_size"])
    format: Literal["jpeg", "png", "webp", "tiff"] = Field(
        "jpeg", description="output image format; tiff is a tiled print file, streamed"
    )
    color_space: ColorSpace = _option_field(OPTIONS["color_space"])
    cell_grid: int = _option_field(OPTIONS["cell_grid"])
    aspect: str = _option_field(OPTIONS["aspect"], pattern=r"^[1-9]\d{0,2}:[1-9]\d{0,2}$")
    max_uses: int | None = _option_field(OPTIONS["max_uses"])
    min_distance: int = _option_field(OPTIONS["min_distance"])
    unique: bool = _option_field(OPTIONS["unique"])
    tint: float = _option_field(OPTIONS["tint"])
    dpi: int = _option_field(OPTIONS["dpi"])
    zoom_tile_size: int = _option_field(OPTIONS["zoom_tile_size"])

    @field_validator("max_uses", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("format", mode="before")
    @classmethod
    def _jpg_is_jpeg(cls, value: object) -> object:
        if isinstance(value, str) and value.lower() in ("jpg", "tif"):
            return {"jpg": "jpeg", "tif": "tiff"}[value.lower()]
        return value

    @field_validator(*OPTIONS)
    @classmethod
    def _engine_allows(cls, value: object, info: ValidationInfo) -> object:
        """The engine's check of each option, here, so that no value this model accepts is
        refused later (it also covers what a JSON schema cannot say, the aspect's ratio)."""
        option = OPTIONS[str(info.field_name)]
        try:
            option.check(option.parse(value))
        except BadParameter as exc:
            raise PydanticCustomError("engine_option", exc.message) from None
        return value

    def engine_params(self, *, max_output_pixels: int) -> MosaicParams:
        return MosaicParams.from_form(
            self.model_dump(exclude={"format"}), max_output_pixels=max_output_pixels
        )


class Progress(BaseModel):
    done: int
    total: int


class RejectedFile(BaseModel):
    file: str
    reason: str


class MosaicOut(BaseModel):
    id: str
    session_id: str
    state: Literal["queued", "rendering", "ready", "failed"]
    stage: str | None = Field(None, description="what a rendering job is doing: tiles, cover, match, render")
    progress: Progress
    params: dict[str, Any]
    format: str
    cover_name: str
    width: int | None = None
    height: int | None = None
    cols: int | None = None
    rows: int | None = None
    report: dict[str, Any] = Field(default_factory=dict, description="tile usage and quality figures")
    timings: dict[str, float] = Field(default_factory=dict, description="seconds per step")
    error: str | None = None
    created: float
    updated: float
    status_url: str
    image_url: str | None = Field(None, description="the finished file, once state is ready")
    cover_url: str | None = Field(None, description="the cover picture the mosaic was made of")
    download_name: str | None = None
    dzi_url: str | None = Field(None, description="the Deep Zoom descriptor, once the pyramid is ready")
    viewer_url: str | None = Field(None, description="read-only share link to the pan-and-zoom viewer")
    pyramid: PyramidOut | None = None
    animations_url: str | None = None


class SessionOut(BaseModel):
    id: str
    state: Literal["indexing", "ready", "failed"]
    status_url: str
    progress: Progress
    tiles_accepted: int
    rejected: list[RejectedFile]
    error: str | None = None
    created: float
    updated: float
    mosaics: list[MosaicOut] = Field(default_factory=list)


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    jobs_idle: bool


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str] = Field(
        description='each backend ("records", "jobs", "storage"): "ok" or the error'
    )


# seeing a mosaic: the zoom pyramid and animations ------------------------------------------------


class PyramidOut(BaseModel):
    """The mosaic's Deep Zoom pyramid, built in the background once the mosaic is ready."""

    state: Literal["queued", "building", "ready", "failed"]
    progress: Progress
    levels: int | None = None
    tile_size: int | None = None
    overlap: int | None = None
    format: str | None = None
    error: str | None = None


class AnimationOptions(BaseModel):
    """JSON body of an animation request."""

    model_config = {"extra": "forbid"}

    kind: Literal["zoom", "assemble", "disperse"] = Field("zoom", description="what the camera or tiles do")
    format: Literal["mp4", "gif", "webp"] = Field("mp4", description="MP4 (H.264), animated GIF or WebP")
    seconds: float = Field(8.0, ge=0.5, le=120, description="length")
    width: int = Field(1280, ge=16, le=3840, description="frame width in pixels (even for mp4)")
    height: int = Field(720, ge=16, le=3840, description="frame height in pixels (even for mp4)")
    fps: int = Field(24, ge=1, le=60, description="frames per second")
    col: int | None = Field(None, ge=0, description="the cell a zoom ends in (default: the middle)")
    row: int | None = Field(None, ge=0, description="the cell a zoom ends in (default: the middle)")
    reverse: bool = Field(False, description="zoom out of the cell instead of into it")


class AnimationOut(BaseModel):
    id: str
    mosaic_id: str
    state: Literal["queued", "rendering", "ready", "failed"]
    progress: Progress = Field(description="frames rendered of all")
    kind: str
    format: str
    seconds: float
    width: int
    height: int
    fps: int
    frames: int
    col: int | None = None
    row: int | None = None
    reverse: bool = False
    bytes: int | None = None
    seconds_taken: float | None = Field(None, description="how long the render took")
    error: str | None = None
    created: float
    updated: float
    status_url: str
    url: str | None = Field(None, description="the finished file, once state is ready")
    download_name: str | None = None
