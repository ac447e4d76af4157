"""The REST schema, the page and the command line show the engine's option table, and keep to it.

A value the OpenAPI schema allows is accepted and rendered; one just outside is a 422 naming the
field; the command line accepts and refuses the same values.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.engine.options import OPTIONS, MosaicParams, Option
from app.settings import Settings
from app.web.schemas import MosaicOptions
from tests.conftest import REPO, read_image
from tests.web.conftest import LiveServer, wait_for
from tests.web.test_api import assert_error, ready_session
from tests.web.test_browser import browser  # noqa: F401  (the fixture)

NUMBERS = [option for option in OPTIONS.values() if option.kind in ("int", "float")]
MOSAIC_BODIES = ["/api/sessions/{session_id}/mosaics", "/api/mosaics"]


def schema_of_options(client: TestClient) -> dict[str, Any]:
    """The properties of the mosaic form, as both mosaic endpoints' request bodies refer to them."""
    spec = client.get("/openapi.json").json()
    components = spec["components"]["schemas"]
    for path in MOSAIC_BODIES:
        body = spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        refs = [part["$ref"] for part in components[body["$ref"].rsplit("/", 1)[-1]]["allOf"]]
        assert refs == ["#/components/schemas/MosaicOptions"], path
    return dict(components["MosaicOptions"]["properties"])


def schema_range(prop: dict[str, Any]) -> tuple[float | None, float | None]:
    typed = next((p for p in prop.get("anyOf", [prop]) if p.get("type") != "null"), prop)
    return typed.get("minimum"), typed.get("maximum")


def strip_cover(corpus: Path) -> bytes:
    """A 1000 x 10 px strip of a real photo: 1000 columns of 4 px tiles make only 10 rows."""
    strip = read_image(corpus / "covers" / "mate-Dune.jpg", "RGB").resize((1000, 10))
    out = io.BytesIO()
    strip.save(out, "PNG")
    return out.getvalue()


def post_mosaic(client: TestClient, session_id: str, cover: bytes, **fields: object) -> Any:
    data = {"cols": "4", "tile_size": "4", "format": "png", **{k: str(v) for k, v in fields.items()}}
    return client.post(
        f"/api/sessions/{session_id}/mosaics", files={"cover": ("strip.png", cover)}, data=data
    )


def test_the_schema_shows_exactly_the_engine_table(client: TestClient) -> None:
    props = schema_of_options(client)
    assert set(props) == {*OPTIONS, "format"}
    assert set(MosaicOptions.model_fields) == set(props)
    for name, option in OPTIONS.items():
        prop = props[name]
        low, high = (option.minimum, option.maximum) if option.kind in ("int", "float") else (None, None)
        assert schema_range(prop) == (low, high), name
        default = option.text(option.default) if option.kind == "ratio" else option.default
        assert prop.get("default") == default, name  # FastAPI leaves a None default out
        assert option.allowed() in prop["description"], name
        if option.choices:
            assert tuple(prop["enum"]) == option.choices


@pytest.mark.parametrize("option", NUMBERS, ids=lambda o: o.name)
def test_every_schema_bound_is_accepted_and_rendered(
    client: TestClient, corpus: Path, photo_tiles: list[Path], option: Option[Any]
) -> None:
    session = ready_session(client, photo_tiles[:3])
    cover = strip_cover(corpus)
    low, high = schema_range(schema_of_options(client)[option.name])
    for bound in (b for b in (low, high) if b is not None):
        MosaicParams.from_form({option.name: bound})  # the engine's own check
        response = post_mosaic(client, session["id"], cover, **{option.name: option.text(bound)})
        assert response.status_code == 202, (bound, response.text)
        mosaic = wait_for(
            lambda r=response: client.get(r.json()["status_url"]).json(), until={"ready", "failed"}
        )
        assert mosaic["state"] == "ready", (bound, mosaic["error"])
        assert mosaic["params"][option.name] == bound


@pytest.mark.parametrize("option", NUMBERS, ids=lambda o: o.name)
def test_just_outside_a_schema_bound_is_a_422_naming_the_field(
    client: TestClient, corpus: Path, photo_tiles: list[Path], option: Option[Any]
) -> None:
    session = ready_session(client, photo_tiles[:3])
    low, high = schema_range(schema_of_options(client)[option.name])
    step = 1 if option.kind == "int" else 0.001
    outside = [
        v
        for v in (None if low is None else low - step, None if high is None else high + step)
        if v is not None
    ]
    assert outside
    for value in outside:
        assert_error(
            post_mosaic(client, session["id"], strip_cover(corpus), **{option.name: value}),
            422,
            field=option.name,
        )


@pytest.mark.parametrize(
    ("aspect", "status"),
    [("1:4", 202), ("4:1", 202), ("100:100", 202), ("1:5", 422), ("101:101", 422), ("0:1", 422)],
)
def test_aspect_ratio_is_checked_with_the_request(
    client: TestClient, corpus: Path, photo_tiles: list[Path], aspect: str, status: int
) -> None:
    session = ready_session(client, photo_tiles[:3])
    response = post_mosaic(client, session["id"], strip_cover(corpus), aspect=aspect)
    assert response.status_code == status, response.text
    if status == 422:
        assert_error(response, 422, field="aspect")


class _Inputs(HTMLParser):
    """The attributes of each ``<input>`` and the values of each ``<select>``'s options, by id."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: dict[str, dict[str, str | None]] = {}
        self.selects: dict[str, list[str]] = {}
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "input" and found.get("id"):
            self.inputs[str(found["id"])] = found
        elif tag == "select":
            self._select = found.get("id")
            self.selects[str(self._select)] = []
        elif tag == "option" and self._select:
            self.selects[self._select].append(str(found.get("value")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def page_inputs(client: TestClient) -> _Inputs:
    parser = _Inputs()
    parser.feed(client.get("/").text)
    return parser


def as_number(text: str | None) -> float | None:
    return None if text is None else float(text)


def test_the_pages_inputs_show_the_schemas_ranges(client: TestClient) -> None:
    props = schema_of_options(client)
    page = page_inputs(client)
    for option in NUMBERS:
        if option.name in page.selects:
            continue  # a choice of every allowed value: below
        attrs = page.inputs[option.name]
        assert (as_number(attrs.get("min")), as_number(attrs.get("max"))) == schema_range(props[option.name])
        default = props[option.name].get("default")
        assert as_number(attrs.get("value")) == (None if default is None else float(default)), option.name
    grid = OPTIONS["cell_grid"]
    assert page.selects["cell_grid"] == [
        str(n) for n in range(int(grid.minimum or 0), int(grid.maximum or 0) + 1)
    ]
    assert tuple(page.selects["color_space"]) == tuple(props["color_space"]["enum"])
    assert set(page.selects["aspect"]) <= {"1:1", "4:3", "3:4", "3:2", "16:9"}
    for aspect in page.selects["aspect"]:
        MosaicParams.from_form({"aspect": aspect})


def test_a_servers_cols_cap_is_a_422_naming_it_and_the_page_shows_it(
    make_client: Callable[..., TestClient], corpus: Path, photo_tiles: list[Path]
) -> None:
    client = make_client(max_cols=50)
    assert schema_range(schema_of_options(client)["cols"]) == (1, OPTIONS["cols"].maximum)  # the engine's
    assert page_inputs(client).inputs["cols"]["max"] == "50"
    session = ready_session(client, photo_tiles[:3])
    cover = strip_cover(corpus)
    refused = post_mosaic(client, session["id"], cover, cols=51)
    assert_error(refused, 422, field="cols")
    assert "at most 50 columns" in refused.json()["detail"]
    assert post_mosaic(client, session["id"], cover, cols=50).status_code == 202


def test_output_pixels_have_one_default(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).max_output_pixels == MosaicParams().max_output_pixels


def tessera_make(corpus: Path, tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    out = tmp_path / "m.png"
    return subprocess.run(
        [sys.executable, "-m", "app", "make", str(corpus / "covers" / "mate-Dune.jpg"),
         str(corpus / "tiles_emoji"), "-o", str(out), "--cols", "6", "--tile-size", "4", "-q", *flags],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


@pytest.mark.parametrize("distance", [30, 20])
def test_the_command_line_and_the_api_agree_on_min_distance(
    client: TestClient, corpus: Path, photo_tiles: list[Path], tmp_path: Path, distance: int
) -> None:
    session = ready_session(client, photo_tiles[:3])
    api = post_mosaic(client, session["id"], strip_cover(corpus), min_distance=distance)
    cli = tessera_make(corpus, tmp_path, "--min-distance", str(distance))
    allowed = distance <= (OPTIONS["min_distance"].maximum or 0)
    assert (api.status_code == 202) == allowed and (cli.returncode == 0) == allowed, (api.text, cli.stderr)
    if not allowed:
        assert_error(api, 422, field="min_distance")
        assert cli.returncode == 2 and "bad --min-distance" in cli.stderr
        assert OPTIONS["min_distance"].allowed() in cli.stderr


def test_the_command_lines_help_shows_each_options_range_and_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from app.cli import main

    with pytest.raises(SystemExit):
        main(["make", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for option in OPTIONS.values():
        assert option.flag in shown
        if option.kind != "bool":
            assert (
                f"({option.allowed()}; default: {option.text(option.default) or option.none_means})" in shown
            )


@pytest.mark.browser
def test_the_page_says_the_engines_range_before_sending_anything(
    browser: object,  # noqa: F811  (the fixture imported above)
    live_server: LiveServer,
) -> None:
    page = browser.new_page()
    page.goto(live_server.url + "/")
    page.click("details.advanced summary")
    page.fill("#cols", str(int(OPTIONS["cols"].maximum or 0) + 1))
    page.fill("#min_distance", "30")
    page.fill("#tint", "12.5")  # a number the schema allows: no complaint
    page.click("#make-button")
    for option in (OPTIONS["cols"], OPTIONS["min_distance"]):
        error = f"#{option.name}-error"
        page.wait_for_selector(f"{error}:not([hidden])", timeout=10_000)
        assert f"between {option.minimum} and {option.maximum}" in page.text_content(error)
    assert page.is_hidden("#tint-error")
    page.close()
