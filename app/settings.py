"""Every setting of the service, read once from ``TESSERA_*`` environment variables.

The engine never reads settings: the jobs and web layers pass explicit parameters to it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_MB = 1024 * 1024


class Settings(BaseSettings):
    """Service settings; each field is ``TESSERA_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="TESSERA_", extra="ignore")

    data_dir: Path = Field(Path("tessera-data"), description="uploads, tile caches, mosaics, SQLite")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(2, ge=1, le=64, description="background jobs (index builds, renders) at once")
    decode_threads: int | None = Field(None, ge=1, le=256, description="decoding threads per job")
    thumb_size: int = Field(64, ge=8, le=512, description="stored tile size; larger tiles re-decode")
    max_file_bytes: int = Field(50 * _MB, ge=1024, description="largest single upload")
    max_request_bytes: int = Field(4096 * _MB, ge=1024, description="largest request body")
    max_files_per_request: int = Field(20_000, ge=1)
    max_files_per_session: int = Field(50_000, ge=1)
    max_zip_members: int = Field(20_000, ge=1)
    max_zip_bytes: int = Field(8192 * _MB, ge=1024, description="total uncompressed size of an archive")
    max_image_pixels: int = Field(89_478_485, ge=1, description="larger images are refused before decoding")
    max_output_pixels: int = Field(250_000_000, ge=1, description="largest mosaic, in pixels")
    max_cols: int = Field(400, ge=1, le=1000)
    max_rows: int = Field(400, ge=1, le=1000)
    max_zip_ratio: int = Field(200, ge=2, description="largest uncompressed:compressed ratio of a member")
    max_disk_bytes: int = Field(20 * 1024 * _MB, ge=_MB, description="cap on the data folder's size")
    session_ttl_hours: float = Field(24.0, gt=0, description="sessions unused this long are removed")
    sweep_interval_seconds: float = Field(300.0, gt=0, description="how often expired sessions are swept")
    library_cache_sessions: int = Field(4, ge=1, description="session tile libraries kept in memory")

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def database_path(self) -> Path:
        return self.data_dir / "tessera.sqlite3"


@lru_cache
def get_settings() -> Settings:
    return Settings()
