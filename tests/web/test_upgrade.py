"""A data folder written by the version before the cluster work keeps working."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from tests.web.conftest import wait_for
from tests.web.test_api import files_of, ready_session, session_of


def test_sessions_with_an_uploads_jsonl_manifest_take_more_tiles(
    client: TestClient, photo_tiles: list[Path]
) -> None:
    session = ready_session(client, photo_tiles[:3])
    services = client.app.state.services  # type: ignore[attr-defined]
    # Turn it into what the previous version left: the manifest in uploads.jsonl, none in SQLite.
    folder = services.storage.session_dir(session["id"])
    entries = services.records.uploads(session["id"])
    lines = [json.dumps({"seq": e.seq, "name": e.name, "file": e.file}) for e in entries]
    (folder / "uploads.jsonl").write_text("\n".join(lines) + "\n")
    with services.records._tx() as db:
        db.execute("DELETE FROM uploads WHERE session_id = ?", (session["id"],))
        db.execute("UPDATE sessions SET last_seq = 0 WHERE id = ?", (session["id"],))

    response = client.post(f"/api/sessions/{session['id']}/tiles", files=files_of(photo_tiles[3:5]))
    assert response.status_code == 202, response.text
    done = wait_for(lambda: session_of(client, session["id"]), until={"ready", "failed"})
    assert done["state"] == "ready" and done["tiles_accepted"] == 5, done
    assert sorted(p.name for p in (folder / "uploads").iterdir()) == [f"{n:06d}.jpg" for n in range(1, 6)]
