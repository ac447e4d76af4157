"""An S3-compatible bucket (AWS S3, MinIO, moto) holding the files every process shares.

A thin layer over boto3: whole-object puts (atomic: a reader sees the old object or the new
one, never half of one), downloads through a temporary file, prefix listings and deletes, and
presigned download URLs. boto3 is imported only when a bucket is configured.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_MULTIPART_BYTES = 8 * 1024 * 1024  # boto3's own threshold for uploads in parts


class ObjectStore:
    """One bucket, and an optional key prefix inside it."""

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(
                retries={"max_attempts": 5, "mode": "standard"},
                max_pool_connections=32,
                s3={"addressing_style": "path"},  # MinIO and moto serve buckets under the path
            ),
        )

    def _key(self, key: str) -> str:
        return self.prefix + key

    def check(self) -> None:
        """Raise if the bucket cannot be reached (readiness)."""
        self._client.head_bucket(Bucket=self.bucket)

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (for first starts and tests)."""
        from botocore.exceptions import ClientError

        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if not _is_missing(exc):
                raise
        try:
            self._client.create_bucket(Bucket=self.bucket)
        except ClientError as exc:  # another process may have created it meanwhile
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code"))
            if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    def put_file(self, key: str, path: Path) -> None:
        if path.stat().st_size < _MULTIPART_BYTES:  # one request (most files: pyramid tiles, grids)
            with open(path, "rb") as body:
                self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=body)
        else:  # in parts, several at once
            self._client.upload_file(str(path), self.bucket, self._key(key))

    def get_file(self, key: str, path: Path) -> bool:
        """Download ``key`` to ``path`` (whole or not at all); False if there is no such object."""
        from botocore.exceptions import ClientError

        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                self._client.download_fileobj(self.bucket, self._key(key), out)
            os.replace(tmp, path)
        except ClientError as exc:
            Path(tmp).unlink(missing_ok=True)
            if _is_missing(exc):
                return False
            raise
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return True

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (without the store's own prefix)."""
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix)
        )
        strip = len(self.prefix)
        return [item["Key"][strip:] for page in pages for item in page.get("Contents", [])]

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def delete_prefix(self, prefix: str) -> None:
        keys = self.list(prefix)
        for start in range(0, len(keys), 1000):  # the API deletes at most 1000 keys per call
            batch = [{"Key": self._key(k)} for k in keys[start : start + 1000]]
            self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def presigned_url(self, key: str, *, seconds: int, filename: str, media_type: str, inline: bool) -> str:
        disposition = "inline" if inline else "attachment"
        url: str = self._client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": self._key(key),
                "ResponseContentType": media_type,
                "ResponseContentDisposition": f'{disposition}; filename="{filename}"',
            },
            ExpiresIn=seconds,
        )
        return url


def _is_missing(exc: Exception) -> bool:
    error = getattr(exc, "response", {}).get("Error", {})
    return str(error.get("Code")) in ("404", "NoSuchKey", "NotFound")
