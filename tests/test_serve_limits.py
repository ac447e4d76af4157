"""Issue 17, point 8: ``tessera serve`` bounds what one connection may cost: header size, idle
keep-alive, connections at once, all from settings."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_serve_logging import start, stop
from tests.web.conftest import free_port


@pytest.fixture
def served(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    proc = start(
        "serve", "--port", str(port), data_dir=tmp_path / "data",
        TESSERA_MAX_HEADER_BYTES="16384", TESSERA_KEEP_ALIVE_SECONDS="1", TESSERA_MAX_CONNECTIONS="3",
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, stop(proc)
            time.sleep(0.2)
    yield port
    stop(proc)


def _answer(sock: socket.socket, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError, BrokenPipeError):
        pass
    return data


def test_a_huge_header_line_is_refused_before_it_ends(served: int) -> None:
    with socket.create_connection(("127.0.0.1", served)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        try:  # the 50 MB header line: the server must hang up long before the end
            while sent < 50 * 1024 * 1024:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _answer(sock)
    assert sent < 8 * 1024 * 1024, f"the server read {sent} bytes of one header line"
    assert answer == b"" or answer.split(b" ", 2)[1] in (b"400", b"413", b"431")


def test_an_idle_connection_is_closed(served: int) -> None:
    with socket.create_connection(("127.0.0.1", served)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert _answer(sock, timeout=10) == b""  # closed by the server, not by our timeout
        assert time.monotonic() - started < 5


def test_connections_over_the_limit_get_503(served: int) -> None:
    idle = [socket.create_connection(("127.0.0.1", served)) for _ in range(3)]
    try:
        for sock in idle:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", served)) as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert _answer(extra).startswith(b"HTTP/1.1 503")
    finally:
        for sock in idle:
            sock.close()
