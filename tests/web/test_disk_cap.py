"""Issue 17, point 4: the disk cap counts what archives expand to, checked while they expand,
and a DELETE gives the space back at once."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from app.storage import folder_size
from tests.web.conftest import wait_for

MB = 1024 * 1024
CAP = 16 * MB


def _zip_of_random_members(count: int, size: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for i in range(count):
            zf.writestr(f"m{i:02d}.png", os.urandom(size))
    return buffer.getvalue()


def test_expanding_archives_stop_at_the_cap_and_delete_gives_space_back(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = make_client(max_disk_bytes=CAP)
    data = client.app.state.services.settings.data_dir  # type: ignore[attr-defined]
    archive = _zip_of_random_members(10, MB)  # 10 MB in, 10 MB more once expanded
    first = client.post("/api/sessions", files={"tiles": ("a.zip", archive, "application/zip")})
    assert first.status_code == 202
    status = wait_for(lambda: client.get(first.json()["status_url"]).json(), until={"ready", "failed"})
    assert any("storage is full" in r["reason"] for r in status["rejected"]), status["rejected"]
    assert folder_size(data) <= CAP, f"the data folder holds {folder_size(data) / MB:.1f} MB"
    # Under the cap still, so the next upload is taken in; its archive cannot expand at all.
    second = client.post("/api/sessions", files={"tiles": ("b.zip", archive, "application/zip")})
    assert second.status_code == 202
    status = wait_for(lambda: client.get(second.json()["status_url"]).json(), until={"ready", "failed"})
    assert (
        status["state"] == "failed" or sum("storage is full" in r["reason"] for r in status["rejected"]) == 10
    )
    assert folder_size(data) <= CAP + len(archive), f"the data folder holds {folder_size(data) / MB:.1f} MB"
    refused = client.post("/api/sessions", files={"tiles": ("c.zip", archive, "application/zip")})
    assert refused.status_code == 507

    assert client.delete(f"/api/sessions/{first.json()['id']}").status_code == 204
    again = client.post("/api/sessions", files={"tiles": ("d.zip", archive, "application/zip")})
    assert again.status_code == 202, "the space of the deleted session was not given back at once"
