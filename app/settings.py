"""Every setting of the service, read once from ``TESSERA_*`` environment variables.

The engine never reads settings: the jobs and web layers pass explicit parameters to it. The
limits of a mosaic's options are the engine's (``app.engine.options``); a setting can only lower one.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.engine.options import COLS, MAX_OUTPUT_PIXELS
from app.engine.render import MAX_TIFF_PIXELS

_MB = 1024 * 1024


class Settings(BaseSettings):
    """Service settings; each field is ``TESSERA_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="TESSERA_", extra="ignore")

    data_dir: Path = Field(Path("tessera-data"), description="uploads, tile caches, mosaics, SQLite")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_connections: int = Field(
        200, ge=1, description="connections and requests one `tessera serve` handles at once; more get a 503"
    )
    keep_alive_seconds: int = Field(5, ge=1, le=300, description="an idle connection is closed after this")
    max_header_bytes: int = Field(
        64 * 1024, ge=4096, le=16 * _MB, description="largest request line plus headers; larger is refused"
    )
    workers: int = Field(2, ge=1, le=64, description="background jobs (index builds, renders) at once")
    job_processes: bool = Field(
        True, description="run background jobs in long-lived job processes (false: web process threads)"
    )
    cache_dir: Path | None = Field(
        None,
        description="tile cache of `tessera make` (unset: $XDG_CACHE_HOME/tessera, else ~/.cache/tessera)",
    )
    decode_threads: int | None = Field(None, ge=1, le=256, description="decoding threads per job")
    thumb_size: int = Field(
        64,
        ge=8,
        le=512,
        description="stored tile size; mosaics match on thumbnails, larger cells decode their placed tiles",
    )
    max_file_bytes: int = Field(50 * _MB, ge=1024, description="largest single upload")
    max_request_bytes: int = Field(4096 * _MB, ge=1024, description="largest request body")
    max_files_per_request: int = Field(20_000, ge=1)
    max_files_per_session: int = Field(50_000, ge=1)
    max_zip_members: int = Field(20_000, ge=1)
    max_zip_bytes: int = Field(8192 * _MB, ge=1024, description="total uncompressed size of an archive")
    max_image_pixels: int = Field(89_478_485, ge=1, description="larger images are refused before decoding")
    max_output_pixels: int = Field(
        MAX_OUTPUT_PIXELS, ge=1, description="largest mosaic, in pixels (default: the engine's limit)"
    )
    max_tiff_pixels: int = Field(
        MAX_TIFF_PIXELS, ge=1, description="largest TIFF print file, in pixels (streamed, so larger "
        "than the other formats' limit)",
    )  # fmt: skip
    max_cols: int | None = Field(
        None, ge=1, le=COLS.maximum,
        description="a lower cap on a mosaic's cols than the engine's; more is refused with a 422 naming "
        "cols and the cap (unset: the engine's range, as the OpenAPI schema shows)",
    )  # fmt: skip
    max_animation_pixel_frames: int = Field(
        2_000_000_000, ge=1, description="largest animation: width x height x fps x seconds"
    )
    max_jobs_per_session: int = Field(8, ge=1, description="renders, pyramids, animations queued or running")
    max_rows: int = Field(400, ge=1, le=1000)
    max_zip_ratio: int = Field(200, ge=2, description="largest uncompressed:compressed ratio of a member")
    max_disk_bytes: int = Field(20 * 1024 * _MB, ge=_MB, description="cap on the data folder's size")
    session_ttl_hours: float = Field(24.0, gt=0, description="sessions unused this long are removed")
    sweep_interval_seconds: float = Field(300.0, gt=0, description="how often expired sessions are swept")
    frame_ancestors: str = Field(
        "'none'", min_length=1,
        description="who may show our pages in a frame: the CSP frame-ancestors value ('none', or origins)",
    )  # fmt: skip
    library_cache_sessions: int = Field(4, ge=1, description="session tile libraries kept in memory")
    zoom_cache_mb: int = Field(
        256,
        ge=8,
        description="memory for decoded photos of zoom levels below the render (and 1/4 more for tiles)",
    )

    # Scaling past one machine: a broker switches jobs to Celery workers and records to Redis;
    # S3 settings switch shared files to an object store (the data folder becomes a local cache).
    broker_url: str | None = Field(None, description="redis://host:6379/0 sends jobs to `tessera worker`s")
    index_queue: str = Field("tessera-index", min_length=1, description="Celery queue of index builds")
    render_queue: str = Field("tessera-render", min_length=1, description="Celery queue of renders")
    zoom_queue: str = Field(
        "tessera-zoom", min_length=1, description="Celery queue of zoom pyramids and animations"
    )
    worker_concurrency: int = Field(1, ge=1, le=64, description="jobs one `tessera worker` runs at once")
    worker_queues: str | None = Field(None, description="comma-separated queues a worker takes (all)")
    visibility_timeout_seconds: int = Field(
        3600, ge=5, description="a job not acknowledged this long (its worker died) is handed out again"
    )
    lock_timeout_seconds: float = Field(
        30.0, ge=2, description="a dead worker's session lock expires after this long"
    )
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO); none = AWS")
    s3_bucket: str | None = Field(None, description="bucket for shared files; unset = local folder only")
    s3_prefix: str = Field("", description="key prefix inside the bucket")
    s3_region: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    presigned_downloads: bool = Field(False, description="redirect downloads to presigned S3 URLs")
    presigned_seconds: int = Field(3600, ge=60, le=7 * 24 * 3600, description="lifetime of those URLs")

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("broker_url", "s3_bucket", "s3_endpoint_url", "worker_queues", "max_cols", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _check_scale(self) -> Settings:
        if self.broker_url and not self.broker_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("TESSERA_BROKER_URL must be a redis:// (or rediss://, unix://) URL")
        if self.presigned_downloads and not self.s3_bucket:
            raise ValueError("TESSERA_PRESIGNED_DOWNLOADS needs TESSERA_S3_BUCKET")
        return self

    @property
    def cols_limit(self) -> int:
        """The most cols a mosaic may have here: ``max_cols``, else the engine's maximum."""
        return self.max_cols if self.max_cols is not None else cast(int, COLS.maximum)

    @property
    def queues(self) -> list[str]:
        """The queues a worker consumes."""
        if self.worker_queues:
            return [q.strip() for q in self.worker_queues.split(",") if q.strip()]
        return [self.index_queue, self.render_queue, self.zoom_queue]

    @property
    def download_origins(self) -> list[str]:
        """Origins outside ours the page loads files from: the object store, with presigned URLs."""
        if not self.presigned_downloads:
            return []
        if self.s3_endpoint_url:
            parts = urlsplit(self.s3_endpoint_url)
            return [f"{parts.scheme}://{parts.netloc}", f"{parts.scheme}://*.{parts.netloc}"]
        return ["https://*.amazonaws.com"]

    @property
    def database_path(self) -> Path:
        return self.data_dir / "tessera.sqlite3"


@lru_cache
def get_settings() -> Settings:
    return Settings()
