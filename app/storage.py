"""Where a session's files live, and how they are written: whole or not at all.

Layout under the data folder::

    sessions/<session id>/uploads/000001.jpg ...    uploaded files, named by number, never by
                                                     the client's file name (the manifest of
                                                     names is in the records)
                         /tiles/<w>x<h>/            decoded tile thumbnails + features (.npy)
                         /mosaics/<mosaic id>/      the cover and the finished mosaic

With an object store configured (``TESSERA_S3_*``), the same layout is kept in the bucket, and
the data folder is each process's working cache of it: a file another process needs is
*published* once written, and *fetched* before it is read. Files that never change once
written are fetched once and reused; the few that change (a library's pointer and source
list) are fetched ``fresh``. Without an object store, publishing and fetching do nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from app.object_store import ObjectStore

_COPY_CHUNK = 1024 * 1024
_TRANSFER_THREADS = 8


class FileTooLarge(Exception):
    """An upload exceeded the per-file byte limit while it was being copied."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than the limit of {limit // (1024 * 1024)} MB")
        self.limit = limit


class StorageFull(Exception):
    """What a job would write does not fit under the disk cap (``TESSERA_MAX_DISK_BYTES``)."""


@dataclass(frozen=True)
class Upload:
    """One stored upload: its number, the client's name for it, and the stored file."""

    seq: int
    name: str
    path: Path


class Storage:
    """Sessions and their files: a local folder, optionally backed by a shared object store."""

    def __init__(self, root: Path, *, remote: ObjectStore | None = None) -> None:
        self.root = root
        self.remote = remote
        self.sessions = root / "sessions"
        self.sessions.mkdir(parents=True, exist_ok=True)
        self._used = folder_size(root)
        self._measured_at = time.monotonic()

    @property
    def shared(self) -> bool:
        """True when files live in an object store other processes read too."""
        return self.remote is not None

    @property
    def used_bytes(self) -> int:
        """Bytes under the data folder, as written by any process (uploads, unpacked archives,
        tile caches, outputs): measured again when the last measure is older than
        :data:`MEASURE_SECONDS`, plus uploads written here since, minus sessions deleted here."""
        if time.monotonic() - self._measured_at > MEASURE_SECONDS:
            self.measure()
        return self._used

    def measure(self) -> int:
        self._used = folder_size(self.root)
        self._measured_at = time.monotonic()
        return self._used

    def count_written(self, size: int) -> None:
        """Count ``size`` bytes this process just wrote (a tile library, an output) at once,
        not at the next measure."""
        self._used += size

    def room_bytes(self, cap: int) -> int:
        """What may still be written under the cap ``cap`` (measured now)."""
        return max(0, cap - self.measure())

    def session_dir(self, session_id: str) -> Path:
        return self.sessions / session_id

    def uploads_dir(self, session_id: str) -> Path:
        return self.session_dir(session_id) / "uploads"

    def library_dir(self, session_id: str, shape: tuple[int, int]) -> Path:
        return self.session_dir(session_id) / "tiles" / f"{shape[0]}x{shape[1]}"

    def mosaic_dir(self, session_id: str, mosaic_id: str) -> Path:
        return self.session_dir(session_id) / "mosaics" / mosaic_id

    def create_session(self, session_id: str) -> None:
        self.uploads_dir(session_id).mkdir(parents=True, exist_ok=False)

    def delete_session(self, session_id: str) -> None:
        freed = folder_size(self.session_dir(session_id))
        shutil.rmtree(self.session_dir(session_id), ignore_errors=True)
        self._used = max(0, self._used - freed)  # given back at once, not at the next sweep
        if self.remote is not None:
            self.remote.delete_prefix(self.key(self.session_dir(session_id)) + "/")

    def forget_local(self, session_id: str) -> None:
        """Drop this process's cached copy of a session (the shared copy stays)."""
        shutil.rmtree(self.session_dir(session_id), ignore_errors=True)

    def write_upload(
        self, session_id: str, seq: int, name: str, stream: IO[bytes], *, max_bytes: int
    ) -> Upload:
        """Copy an uploaded file into the session under its number, and publish it."""
        path = self.uploads_dir(session_id) / f"{seq:06d}{_safe_suffix(name)}"
        written = write_stream_atomically(stream, path, max_bytes=max_bytes)
        self.count_written(written)
        self.publish(path)
        return Upload(seq, name, path)

    def iter_session_ids(self) -> Iterator[str]:
        return (p.name for p in self.sessions.iterdir() if p.is_dir())

    # sharing through the object store ---------------------------------------------------------

    def key(self, path: Path) -> str:
        """The object key of a path under the data folder (its relative POSIX path)."""
        return path.relative_to(self.root).as_posix()

    def publish(self, *paths: Path) -> None:
        """Copy files just written into the object store (in the order given, so a pointer
        listed last appears only after what it points to)."""
        if self.remote is None:
            return
        for path in paths:
            self.remote.put_file(self.key(path), path)

    def publish_many(self, paths: Iterable[Path]) -> None:
        """Publish files in parallel, in no particular order."""
        remote = self.remote
        if remote is None:
            return
        with ThreadPoolExecutor(_TRANSFER_THREADS) as pool:
            list(pool.map(lambda p: remote.put_file(self.key(p), p), paths))

    def publish_tree(self, folder: Path) -> None:
        self.publish_many(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".part"))

    def fetch(self, path: Path, *, fresh: bool = False) -> bool:
        """Make sure the local copy of ``path`` is there; True if the file exists.

        Without ``fresh`` a local copy is trusted (the file never changes once written). With
        ``fresh`` it is downloaded again, and removed locally if the shared copy is gone.
        """
        if self.remote is None or (not fresh and path.exists()):
            return path.exists()
        if self.remote.get_file(self.key(path), path):
            return True
        if fresh:
            path.unlink(missing_ok=True)
        return False

    def fetch_many(self, paths: Iterable[Path]) -> None:
        """Fetch files (never changing once written) that are not cached yet, in parallel."""
        remote = self.remote
        missing = [p for p in paths if not p.exists()]
        if remote is None or not missing:
            return
        with ThreadPoolExecutor(_TRANSFER_THREADS) as pool:
            list(pool.map(lambda p: remote.get_file(self.key(p), p), missing))

    def fetch_tree(self, folder: Path) -> None:
        """Fetch every file under ``folder`` that is not cached yet."""
        if self.remote is None:
            return
        keys = self.remote.list(self.key(folder) + "/")
        self.fetch_many(self.root / key for key in keys)

    def delete_file(self, path: Path) -> None:
        """Remove a file here and in the object store."""
        path.unlink(missing_ok=True)
        if self.remote is not None:
            self.remote.delete(self.key(path))

    def delete_tree(self, folder: Path) -> None:
        """Remove a folder here and in the object store (its space counted free at once)."""
        freed = folder_size(folder)
        shutil.rmtree(folder, ignore_errors=True)
        self._used = max(0, self._used - freed)
        if self.remote is not None:
            self.remote.delete_prefix(self.key(folder) + "/")

    def download_url(self, path: Path, *, seconds: int, filename: str, media_type: str, inline: bool) -> str:
        """A presigned URL that downloads ``path`` straight from the object store."""
        if self.remote is None:
            raise RuntimeError("presigned URLs need an object store")
        return self.remote.presigned_url(
            self.key(path), seconds=seconds, filename=filename, media_type=media_type, inline=inline
        )

    def check(self) -> None:
        """Raise if the storage cannot be written (readiness)."""
        probe = self.root / ".ready-probe"
        write_bytes_atomically(b"ok", probe)
        probe.unlink(missing_ok=True)
        if self.remote is not None:
            self.remote.check()


def folder_size(folder: Path) -> int:
    """Total size of the files below ``folder`` (files vanishing meanwhile are skipped)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):  # deleted while we walked
                total += os.stat(os.path.join(root, name)).st_size
    return total


def write_stream_atomically(stream: IO[bytes], path: Path, *, max_bytes: int | None = None) -> int:
    """Copy ``stream`` to ``path`` through a temporary file in the same folder, then rename.

    Raises :class:`FileTooLarge` (leaving nothing behind) past ``max_bytes``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    written = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(_COPY_CHUNK):
                written += len(chunk)
                if max_bytes is not None and written > max_bytes:
                    raise FileTooLarge(max_bytes)
                out.write(chunk)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return written


def write_bytes_atomically(data: bytes, path: Path) -> None:
    with atomic_writer(path) as out:
        out.write(data)


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """A file to write ``path`` through: a unique temporary name, renamed when the block ends
    (removed if it fails), so two writers of one file never mix their bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _safe_suffix(name: str) -> str:
    """A short lowercase extension taken from a client's file name (used only as a hint)."""
    suffix = Path(name.replace("\\", "/")).suffix.lower()
    return suffix if 1 < len(suffix) <= 6 and suffix[1:].isalnum() else ".bin"


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int
    max_total_bytes: int
    max_member_bytes: int
    max_ratio: int = 200
    #: What the data folder may still take (the disk cap less what is used): checked per member
    #: while the archive expands.
    disk_room: int | None = None


def is_zip(path: Path) -> bool:
    """Decided by content: a local-file-header signature at the start."""
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


#: How stale the data folder's measured size may get (other processes write into it too).
MEASURE_SECONDS = 10.0
#: The longest file name kept (the end of a longer one: where its extension is).
MAX_NAME_CHARS = 200


def display_name(name: str) -> str:
    """A client's file name (an upload's, or an archive member's with its archive's), only ever
    shown back, never a path: printable and at most :data:`MAX_NAME_CHARS` characters."""
    cleaned = "".join(c for c in name if c.isprintable())
    return cleaned[-MAX_NAME_CHARS:] or "file"


def extract_zip(
    archive: Path, dest: Path, *, label: str, limits: ArchiveLimits
) -> tuple[list[tuple[str, Path]], list[tuple[str, str]]]:
    """Unpack an archive's members into ``dest`` under numbered names.

    Member names are only ever used as labels (``label/member``), never as paths, so a name
    like ``../../x.jpg`` cannot write outside ``dest``. Directories are skipped; nested archives,
    encrypted members and members beyond the size and count limits are rejected with a reason.
    Returns ``(sources, rejected)``: ``(label, path)`` pairs and ``(label, reason)`` pairs.
    """
    import zipfile  # only the job that expands archives needs it

    sources: list[tuple[str, Path]] = []
    rejected: list[tuple[str, str]] = []
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        return [], [(label, f"not a readable zip archive ({exc})")]
    dest.mkdir(parents=True, exist_ok=True)
    total = 0
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        for number, member in enumerate(members, start=1):
            name = display_name(f"{label}/{member.filename}")
            if Path(member.filename).name.startswith(".") or "__MACOSX/" in member.filename:
                continue  # resource forks and hidden files: not photos
            if number > limits.max_members:  # one line for all the rest, not one each
                rejected.append((display_name(label), f"archive has more than {limits.max_members} files: "
                                 f"{len(members) - limits.max_members} were not unpacked"))  # fmt: skip
                break
            if member.flag_bits & 0x1:
                rejected.append((name, "encrypted archive member"))
                continue
            if member.filename.lower().endswith((".zip", ".7z", ".rar", ".tar", ".gz")):
                rejected.append((name, "nested archives are not unpacked"))
                continue
            if member.file_size > limits.max_ratio * max(member.compress_size, 1024):
                rejected.append((name, f"compressed more than {limits.max_ratio}:1 (a zip bomb?)"))
                continue
            if member.file_size > limits.max_member_bytes:
                rejected.append((name, f"larger than the limit of {limits.max_member_bytes // 2**20} MB"))
                continue
            if total + member.file_size > limits.max_total_bytes:
                rejected.append((name, "archive expands beyond the size limit"))
                continue
            if limits.disk_room is not None and total + member.file_size > limits.disk_room:
                rejected.append((name, "the server's storage is full (TESSERA_MAX_DISK_BYTES)"))
                continue
            path = dest / f"{number:06d}{_safe_suffix(member.filename)}"
            try:
                with zf.open(member) as src:
                    # The declared size can lie (a zip bomb): cap what is really inflated.
                    total += write_stream_atomically(src, path, max_bytes=member.file_size or 1)
            except FileTooLarge:
                rejected.append((name, "member inflates beyond its declared size (corrupt or a zip bomb)"))
                continue
            except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
                rejected.append((name, f"cannot be extracted ({exc})"))
                continue
            sources.append((name, path))
    return sources, rejected
