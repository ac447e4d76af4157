"""Where a session's files live, and how they are written: whole or not at all.

Layout under the data folder::

    sessions/<session id>/uploads/000001.jpg ...    uploaded files, named by number, never by
                         /uploads.jsonl              the client's file name (one JSON line each)
                         /tiles/<w>x<h>/            decoded tile thumbnails + features (.npy)
                         /mosaics/<mosaic id>/      the cover and the finished mosaic
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

_COPY_CHUNK = 1024 * 1024


class FileTooLarge(Exception):
    """An upload exceeded the per-file byte limit while it was being copied."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than the limit of {limit // (1024 * 1024)} MB")
        self.limit = limit


@dataclass(frozen=True)
class Upload:
    """One stored upload: its number, the client's name for it, and the stored file."""

    seq: int
    name: str
    path: Path


class Storage:
    """Local-folder storage of sessions and their files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sessions = root / "sessions"
        self.sessions.mkdir(parents=True, exist_ok=True)
        self._manifest_lock = threading.Lock()
        self._last_seq: dict[str, int] = {}
        self._used = folder_size(root)

    @property
    def used_bytes(self) -> int:
        """Bytes under the data folder: measured at start and by each sweep, plus what was
        written through :meth:`add_upload` since."""
        return self._used

    def measure(self) -> int:
        self._used = folder_size(self.root)
        return self._used

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
        self._last_seq.pop(session_id, None)
        shutil.rmtree(self.session_dir(session_id), ignore_errors=True)

    def add_upload(self, session_id: str, name: str, stream: IO[bytes], *, max_bytes: int) -> Upload:
        """Copy an uploaded file into the session under the next number; record its name."""
        folder = self.uploads_dir(session_id)
        suffix = _safe_suffix(name)
        with self._manifest_lock:
            seq = self._next_seq(session_id)
            path = folder / f"{seq:06d}{suffix}"
            path.touch(exist_ok=False)  # reserve the number before the lock is released
        try:
            self._used += write_stream_atomically(stream, path, max_bytes=max_bytes)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        with self._manifest_lock, open(self.session_dir(session_id) / "uploads.jsonl", "a") as fh:
            fh.write(json.dumps({"seq": seq, "name": name, "file": path.name}) + "\n")
        return Upload(seq, name, path)

    def uploads(self, session_id: str) -> list[Upload]:
        """Every recorded upload of a session, in upload order."""
        manifest = self.session_dir(session_id) / "uploads.jsonl"
        if not manifest.exists():
            return []
        folder = self.uploads_dir(session_id)
        found = []
        for line in manifest.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                found.append(Upload(int(entry["seq"]), str(entry["name"]), folder / entry["file"]))
        return sorted(found, key=lambda u: u.seq)

    def _next_seq(self, session_id: str) -> int:
        if session_id not in self._last_seq:  # first upload since start: continue after what is on disk
            names = (p.name for p in self.uploads_dir(session_id).iterdir())
            self._last_seq[session_id] = max((int(n[:6]) for n in names if n[:6].isdigit()), default=0)
        self._last_seq[session_id] += 1
        return self._last_seq[session_id]

    def iter_session_ids(self) -> Iterator[str]:
        return (p.name for p in self.sessions.iterdir() if p.is_dir())


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
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


def is_zip(path: Path) -> bool:
    """Decided by content: a local-file-header signature at the start."""
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


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
            name = f"{label}/{member.filename}"
            if Path(member.filename).name.startswith(".") or "__MACOSX/" in member.filename:
                continue  # resource forks and hidden files: not photos
            if number > limits.max_members:
                rejected.append((name, f"archive has more than {limits.max_members} files"))
                continue
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
