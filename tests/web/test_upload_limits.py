"""Issue 17, point 5: a file part over the file limit is refused while it streams in, and the
parts of a request held in memory are bounded."""

from __future__ import annotations

import asyncio
import json
import select
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.datastructures import Headers, UploadFile

from app.web.forms import MEMORY_BUDGET, SPOOL_BYTES, LimitedMultiPartParser
from tests.web.conftest import LiveServer

LIMIT = 5 * 1024 * 1024


@pytest.fixture
def small_limit_server(tmp_path: Path) -> Iterator[LiveServer]:
    spool = tmp_path / "spool"
    spool.mkdir()
    server = LiveServer(tmp_path / "data", env={"TESSERA_MAX_FILE_BYTES": str(LIMIT), "TMPDIR": str(spool)})
    yield server.start()
    server.stop()


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_an_oversized_part_is_refused_while_it_streams(
    small_limit_server: LiveServer, tmp_path: Path
) -> None:
    boundary = "b0undary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"tiles\"; filename=\"huge.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()  # fmt: skip
    part = 300 * 1024 * 1024  # the 300 MB part
    tail = f"\r\n--{boundary}--\r\n".encode()
    request = (
        "POST /api/sessions HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(head) + part + len(tail)}\r\n\r\n"
    ).encode()
    spooled_peak = 0
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", small_limit_server.port)) as sock:
        sock.sendall(request + head)
        chunk = b"\0" * 256 * 1024
        try:
            while sent < part:
                sock.sendall(chunk)
                sent += len(chunk)
                if sent % (4 * 1024 * 1024) == 0:
                    spooled_peak = max(spooled_peak, _folder_bytes(tmp_path / "spool"))
                if select.select([sock], [], [], 0)[0]:
                    break  # the server answered before the part ended
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(10)
        try:
            while data := sock.recv(65536):
                answer += data
        except (ConnectionResetError, TimeoutError):
            pass
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["file"] == "huge.png" and body["field"] == "tiles" and "limit" in body["detail"]
    assert sent < part // 4, f"{sent / 1e6:.0f} MB were taken in before the refusal"
    assert spooled_peak < LIMIT + 8 * 1024 * 1024, f"{spooled_peak / 1e6:.0f} MB were spooled"
    assert _folder_bytes(tmp_path / "spool") == 0  # nothing left behind


def test_parts_held_in_memory_are_bounded() -> None:
    """Past the budget, new file parts are spooled straight to disk: 20,000 small files cannot
    be gigabytes of memory."""
    boundary = "b0undary"
    part = b"\1" * (SPOOL_BYTES // 2)
    count = 3 * MEMORY_BUDGET // len(part)
    body = b"".join(
        f"--{boundary}\r\nContent-Disposition: form-data; name=tiles; filename=t{i}.png\r\n\r\n".encode()
        + part + b"\r\n" for i in range(count)
    ) + f"--{boundary}--\r\n".encode()  # fmt: skip

    async def stream() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    headers = Headers({"content-type": f"multipart/form-data; boundary={boundary}"})
    parser = LimitedMultiPartParser(headers, stream(), max_files=count, max_file_bytes=LIMIT)
    form = asyncio.run(parser.parse())
    uploads = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
    assert len(uploads) == count and all(u.size == len(part) for u in uploads)
    in_memory = sum(len(part) for u in uploads if not u.file._rolled)  # type: ignore[attr-defined]
    assert in_memory <= MEMORY_BUDGET, f"{in_memory / 1e6:.0f} MB of parts held in memory"
    for upload in uploads:
        upload.file.close()


def test_many_small_files_still_upload(client: TestClient, photo_tiles: list[Path]) -> None:
    files = [("tiles", (p.name, p.read_bytes(), "image/jpeg")) for p in photo_tiles[:60]]
    assert client.post("/api/sessions", files=files).status_code == 202


def test_too_many_fields_is_a_400(client: TestClient) -> None:
    reply = client.post(
        "/api/sessions", files={"tiles": ("a.jpg", b"x")}, data={f"f{i}": "1" for i in range(150)}
    )
    assert reply.status_code == 400 and "fields" in reply.json()["detail"]
