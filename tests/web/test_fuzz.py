"""Schemathesis fuzzes every operation of the OpenAPI schema: no input may cause a 5xx."""

from __future__ import annotations

from pathlib import Path

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.web.test_api import make, ready_session


def test_no_server_errors_from_generated_requests(
    client: TestClient, corpus: Path, photo_tiles: list[Path]
) -> None:
    session = ready_session(client, photo_tiles[:5])
    mosaic = make(client, session["id"], corpus / "covers" / "mate-Dune.jpg", cols=6, tile_size=8)
    real = {"session_id": session["id"], "mosaic_id": mosaic["id"]}
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8

    for operation in operations:

        @given(case=operation.as_strategy(), use_real_ids=st.booleans())
        @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case, use_real_ids: bool) -> None:
            if use_real_ids and case.path_parameters:
                case.path_parameters.update({k: v for k, v in real.items() if k in case.path_parameters})
            if case.method.upper() == "DELETE":
                return  # deleting the shared session would only shrink what the rest can reach
            response = case.call()
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}"
                )
            elif response.status_code >= 400:
                assert isinstance(response.json()["detail"], str)

        check()
    assert not failures, "\n".join(failures)
