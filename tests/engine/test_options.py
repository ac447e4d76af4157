"""The one table of mosaic options: MosaicParams follows it, and converts to and from forms and records."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

import pytest

from app.engine import BadParameter
from app.engine.options import MAX_ASPECT_RATIO, MAX_OUTPUT_PIXELS, OPTIONS, MosaicParams, Option

NUMBERS = [option for option in OPTIONS.values() if option.kind in ("int", "float")]


def bounds(option: Option[Any]) -> list[int | float]:
    return [bound for bound in (option.minimum, option.maximum) if bound is not None]


def just_outside(option: Option[Any]) -> list[int | float]:
    step = 1 if option.kind == "int" else 0.001
    below = [] if option.minimum is None else [option.minimum - step]
    above = [] if option.maximum is None else [option.maximum + step]
    return below + above


def test_params_are_the_tables_options_with_its_defaults() -> None:
    names = [f.name for f in fields(MosaicParams)]
    assert names == [*OPTIONS, "max_output_pixels"]
    defaults = MosaicParams()
    for name, option in OPTIONS.items():
        assert getattr(defaults, name) == option.default, name
    assert defaults.max_output_pixels == MAX_OUTPUT_PIXELS
    assert defaults.validate() is defaults


@pytest.mark.parametrize("option", NUMBERS, ids=lambda o: o.name)
def test_every_bound_is_accepted_as_text_and_as_a_number(option: Option[Any]) -> None:
    for bound in bounds(option):
        for value in (bound, option.text(bound)):
            params = MosaicParams.from_form({option.name: value})
            assert getattr(params, option.name) == bound


@pytest.mark.parametrize("option", NUMBERS, ids=lambda o: o.name)
def test_just_outside_a_bound_is_refused_naming_the_option(option: Option[Any]) -> None:
    for value in just_outside(option):
        with pytest.raises(BadParameter) as info:
            MosaicParams.from_form({option.name: str(value)})
        assert info.value.field == option.name
        assert option.allowed() in info.value.message


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("cols", "many"),
        ("cols", "2.5"),
        ("cols", True),
        ("tile_size", ""),
        ("tint", "nan"),
        ("tint", "inf"),
        ("color_space", "hsv"),
        ("aspect", "wide"),
        ("aspect", "0:1"),
        ("aspect", f"{MAX_ASPECT_RATIO + 1}:1"),
        ("aspect", "101:101"),
        ("max_uses", "-1"),
        ("unique", "maybe"),
        ("background", "red"),
        ("background", "#12345"),
        ("background", "#12345g"),
    ],
)
def test_unusable_form_values_name_the_option(name: str, raw: object) -> None:
    with pytest.raises(BadParameter) as info:
        MosaicParams.from_form({name: raw})
    assert info.value.field == name


def test_background_is_cell_or_a_colour() -> None:
    assert MosaicParams().background == "cell" and MosaicParams().background_rgb is None
    assert MosaicParams.from_form({"background": " #A0b0C0 "}).background_rgb == (0xA0, 0xB0, 0xC0)


def test_form_text_is_read_as_the_api_and_the_command_line_write_it() -> None:
    params = MosaicParams.from_form(
        {"cols": " 40 ", "aspect": "4:3", "max_uses": "", "unique": "on", "tint": "12.5", "format": "png"}
    )
    assert (params.cols, params.aspect, params.max_uses, params.unique, params.tint) == (
        40,
        (4, 3),
        None,
        True,
        12.5,
    )
    assert MosaicParams.from_form({"aspect": f"1:{MAX_ASPECT_RATIO}"}).aspect == (1, MAX_ASPECT_RATIO)


@pytest.mark.parametrize(
    "params",
    [
        MosaicParams(),
        MosaicParams(
            cols=1000,
            tile_size=4,
            color_space="oklab",
            cell_grid=8,
            aspect=(16, 9),
            max_uses=3,
            min_distance=20,
            unique=True,
            tint=0.5,
            max_output_pixels=None,
        ),
    ],
)
def test_records_round_trip_through_json(params: MosaicParams) -> None:
    stored = json.loads(json.dumps({**params.to_record(), "format": "png", "rows": 12}))
    assert MosaicParams.from_record(stored) == params


def test_an_older_record_takes_the_defaults_of_what_it_lacks() -> None:
    old = {"cols": 30, "tile_size": 16, "aspect": [4, 3], "format": "jpeg", "rows": 20}
    params = MosaicParams.from_record(old)
    assert (params.cols, params.aspect, params.tint) == (30, (4, 3), OPTIONS["tint"].default)
    assert params.max_output_pixels == MAX_OUTPUT_PIXELS


def test_validate_refuses_wrong_types_set_in_code() -> None:
    for name, value in [("cols", "80"), ("unique", "yes"), ("aspect", [1, 1]), ("tint", float("nan"))]:
        with pytest.raises(BadParameter) as info:
            MosaicParams(**{name: value}).validate()
        assert info.value.field == name
