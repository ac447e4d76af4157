"""Every option of a mosaic, in one table, and :class:`MosaicParams`, the engine's parameters.

:data:`OPTIONS` gives each option's type, range, default and help. Everything that takes mosaic
options reads it: :meth:`MosaicParams.validate`, the REST schema (``app.web.schemas``: OpenAPI
shows these ranges), the page's inputs and the command line's flags. So a value one of them
accepts, the others accept too.

The conversions all live here as well:

* a form, JSON body or command line (strings or typed values) -> :meth:`MosaicParams.from_form`
* :class:`MosaicParams` -> the mosaic's stored record (JSON-ready): :meth:`MosaicParams.to_record`
* the stored record -> :class:`MosaicParams`: :meth:`MosaicParams.from_record`

A server may cap an option lower than here (``TESSERA_MAX_COLS``); it refuses more with a 422
naming the option and its cap, and its page shows the cap.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, cast

from app.engine.errors import BadParameter
from app.engine.features import COLOR_SPACES, ColorSpace
from app.engine.matching import Rules

T = TypeVar("T")
#: How an option's value is written: ``ratio`` is ``W:H`` in a form, ``[W, H]`` in a record.
Kind = Literal["int", "float", "bool", "choice", "ratio"]

#: The largest mosaic, in pixels, unless the caller passes another limit. The server's
#: ``TESSERA_MAX_OUTPUT_PIXELS`` defaults to it (about 1 GB of canvas at 4 bytes a pixel).
MAX_OUTPUT_PIXELS = 250_000_000
#: A cell is at most this many times wider than high, or higher than wide.
MAX_ASPECT_RATIO = 4

_INTEGER = re.compile(r"[+-]?\d+")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True)
class Option(Generic[T]):
    """One mosaic option: its name (the form field; the command line's flag with ``-`` for
    ``_``), how its value is written, its default, and the values allowed.

    ``minimum`` and ``maximum`` bound a number (inclusive; ``None`` = unbounded) or, for a
    ``ratio``, each of its two sides. An ``optional`` option also takes ``None`` (an empty field).
    """

    name: str
    kind: Kind
    default: T
    help: str
    minimum: int | float | None = None
    maximum: int | float | None = None
    choices: tuple[str, ...] = ()
    unit: str = ""  # appended to a range in messages: "px", "cells", "%"
    metavar: str | None = None  # the command line's placeholder
    optional: bool = False
    none_means: str = ""  # what an optional option's None (empty field) stands for

    @property
    def flag(self) -> str:
        """The command line's flag, ``--tile-size`` for ``tile_size``."""
        return "--" + self.name.replace("_", "-")

    def parse(self, raw: object) -> T:
        """``raw`` (form text, a JSON value, a record's value) as this option's value; raises
        :class:`BadParameter` if it is not one. The range is :meth:`check`'s business."""
        if self.optional and (raw is None or raw == ""):
            return cast(T, None)
        value = _PARSERS[self.kind](raw)
        if value is None:
            raise BadParameter(self.name, f"must be {self.allowed()}, got {raw!r}")
        return cast(T, value)

    def check(self, value: object) -> None:
        """Raise :class:`BadParameter` naming this option unless ``value`` is allowed."""
        if value is None and self.optional:
            return
        if not self._allows(value):
            shown = repr(value) if isinstance(value, str) else self.text(value)
            raise BadParameter(self.name, f"must be {self.allowed()}, got {shown}")

    def _allows(self, value: object) -> bool:
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "choice":
            return value in self.choices
        if self.kind == "ratio":
            return _is_pair(value) and self._allows_ratio(cast(tuple[int, int], value))
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind == "int" and not isinstance(value, int):
            return False
        return math.isfinite(value) and self._in_range(value)

    def _in_range(self, value: float) -> bool:
        low, high = self.minimum, self.maximum
        return (low is None or value >= low) and (high is None or value <= high)

    def _allows_ratio(self, value: tuple[int, int]) -> bool:
        width, height = value
        if not (self._in_range(width) and self._in_range(height) and width > 0 and height > 0):
            return False
        return max(width / height, height / width) <= MAX_ASPECT_RATIO

    def allowed(self) -> str:
        """The values allowed, in words: "a whole number between 1 and 1000", "one of rgb, lab"."""
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return f"one of {', '.join(self.choices)}"
        low, high = self.minimum, self.maximum
        if self.kind == "ratio":
            r = MAX_ASPECT_RATIO
            return f"W:H with sides between {low} and {high} and a ratio between 1:{r} and {r}:1"
        unit = f" {self.unit}" if self.unit else ""
        words = "a whole number" if self.kind == "int" else "a number"
        if low is not None and high is not None:
            words += f" between {_num(low)} and {_num(high)}{unit}"
        elif low is not None:
            words += f" of at least {_num(low)}{unit}"
        elif high is not None:
            words += f" of at most {_num(high)}{unit}"
        if self.optional:
            words += f", or empty for {self.none_means or 'none'}"
        return words

    def text(self, value: object) -> str:
        """``value`` as a form or command line writes it: ``4:3``, ``10``, ``true``; ``""`` for None."""
        if value is None:
            return ""
        if self.kind == "ratio" and _is_pair(value):
            width, height = cast(tuple[int, int], value)
            return f"{width}:{height}"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return _num(value)
        return str(value)

    def to_json(self, value: T) -> object:
        """``value`` as the stored record holds it (a ratio as ``[W, H]``)."""
        return list(cast(tuple[int, int], value)) if self.kind == "ratio" else value


COLS: Option[int] = Option(
    "cols", "int", 80, "tiles across; rows follow the cover's aspect", minimum=1, maximum=1000, metavar="N"
)
TILE_SIZE: Option[int] = Option(
    "tile_size", "int", 32, "width of one tile in output pixels", minimum=4, maximum=512, unit="px",
    metavar="PX",
)  # fmt: skip
COLOR_SPACE: Option[ColorSpace] = Option(
    "color_space", "choice", "lab", "colour space tiles are matched in", choices=COLOR_SPACES
)
CELL_GRID: Option[int] = Option(
    "cell_grid", "int", 4, "describe each cell by N x N mean colours (1 = mean colour only)", minimum=1,
    maximum=8, metavar="N",
)  # fmt: skip
ASPECT: Option[tuple[int, int]] = Option(
    "aspect", "ratio", (1, 1), "cell shape W:H, e.g. 4:3; tiles are centre-cropped to it", minimum=1,
    maximum=100, metavar="W:H",
)  # fmt: skip
MAX_USES: Option[int | None] = Option(
    "max_uses", "int", None, "use no tile more than N times (raised to the least that fits a small "
    "library)", minimum=1, metavar="N", optional=True, none_means="no cap",
)  # fmt: skip
# 20, not more: each placed cell scans the (2D + 1)^2 cells around it, and keeping the rule needs
# that many distinct tiles (1,681 at 20); the schema and page once allowed 50, the engine never did.
MIN_DISTANCE: Option[int] = Option(
    "min_distance", "int", 0, "never place one tile twice within D cells (0 = no rule)", minimum=0,
    maximum=20, unit="cells", metavar="D",
)  # fmt: skip
UNIQUE: Option[bool] = Option(
    "unique", "bool", False, "use each tile at most once (with fewer tiles than cells: as evenly as "
    "possible)",
)  # fmt: skip
TINT: Option[float] = Option(
    "tint", "float", 10.0, "shift each tile's colours this % of the way to its cell's colour (0 = tiles "
    "unaltered)", minimum=0, maximum=100, unit="%", metavar="PCT",
)  # fmt: skip

DPI: Option[int] = Option(
    "dpi", "int", 300, "dots per inch written into the file; with the size in pixels it sets the print size",
    minimum=1, maximum=2400, metavar="DPI",
)  # fmt: skip

ZOOM_TILE_SIZE: Option[int] = Option(
    "zoom_tile_size", "int", 256, "width of one tile at the zoom pyramid's deepest level, drawn from the "
    "photos (no more than most of them have; at most the render's tile size times a power of 2)",
    minimum=4, maximum=1024, unit="px", metavar="PX",
)  # fmt: skip

#: Every mosaic option by name, in the order forms and help list them.
OPTIONS: Mapping[str, Option[Any]] = {
    option.name: option
    for option in (
        COLS,
        TILE_SIZE,
        COLOR_SPACE,
        CELL_GRID,
        ASPECT,
        MAX_USES,
        MIN_DISTANCE,
        UNIQUE,
        TINT,
        DPI,
        ZOOM_TILE_SIZE,
    )
}


@dataclass(frozen=True)
class MosaicParams:
    """What a user chooses about a mosaic (the fields of :data:`OPTIONS`), and the output limit
    of whoever makes it. Every field is checked by :meth:`validate`.

    The defaults of ``color_space``, ``cell_grid`` and ``tint`` were chosen by measurement
    (bench/quality.py; figures in docs/quality.md).
    """

    cols: int = COLS.default
    tile_size: int = TILE_SIZE.default  # output width of one tile in pixels
    color_space: ColorSpace = COLOR_SPACE.default
    cell_grid: int = CELL_GRID.default  # each cell described by cell_grid x cell_grid mean colours
    aspect: tuple[int, int] = ASPECT.default  # cell width : height
    max_uses: int | None = MAX_USES.default  # uses allowed per tile; None = no cap
    min_distance: int = MIN_DISTANCE.default  # cells within this distance never hold the same tile
    unique: bool = UNIQUE.default  # each tile at most once (when the library has as many tiles as cells)
    tint: float = TINT.default  # % of the way each placed tile's mean colour is shifted to its cell's
    dpi: int = DPI.default  # resolution written into the output file (its print size)
    zoom_tile_size: int = ZOOM_TILE_SIZE.default  # cell width at the zoom pyramid's deepest level
    max_output_pixels: int | None = MAX_OUTPUT_PIXELS  # None = only the format's limits

    @classmethod
    def from_form(
        cls, values: Mapping[str, object], *, max_output_pixels: int | None = MAX_OUTPUT_PIXELS
    ) -> MosaicParams:
        """Checked parameters from a form, a JSON body or the command line: each option's value
        as text (``"80"``, ``"4:3"``, ``""`` for none) or typed; a missing option takes its
        default, other keys are ignored. Raises :class:`BadParameter` naming the first bad option."""
        chosen = {name: option.parse(values[name]) for name, option in OPTIONS.items() if name in values}
        return cls(**chosen, max_output_pixels=max_output_pixels).validate()

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> MosaicParams:
        """The parameters a stored record (:meth:`to_record`, maybe with more keys) holds; options
        missing from an older record take their defaults. Not range-checked: the record was checked
        when it was made, and :func:`~app.engine.mosaic.make_mosaic` checks again."""
        chosen = {name: option.parse(record[name]) for name, option in OPTIONS.items() if name in record}
        limit = record.get("max_output_pixels", MAX_OUTPUT_PIXELS)
        return cls(**chosen, max_output_pixels=None if limit is None else int(limit))

    def to_record(self) -> dict[str, Any]:
        """These parameters as a mosaic's record stores them: JSON-ready, one key per option plus
        ``max_output_pixels``; :meth:`from_record` reads it back."""
        stored = {name: option.to_json(getattr(self, name)) for name, option in OPTIONS.items()}
        return {**stored, "max_output_pixels": self.max_output_pixels}

    def validate(self) -> MosaicParams:
        """Raise :class:`BadParameter` naming the first option out of its range; returns ``self``."""
        for name, option in OPTIONS.items():
            option.check(getattr(self, name))
        limit = self.max_output_pixels
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise BadParameter("max_output_pixels", f"must be a whole number of at least 1, got {limit!r}")
        return self

    @property
    def rules(self) -> Rules:
        """The repetition rules these parameters ask for."""
        return Rules(max_uses=self.max_uses, min_distance=self.min_distance, unique=self.unique)

    @property
    def tile_shape(self) -> tuple[int, int]:
        """(width, height) of one output tile."""
        aw, ah = self.aspect
        return self.tile_size, max(1, round(self.tile_size * ah / aw))

    def rows_for(self, cover_width: int, cover_height: int) -> int:
        """Rows that keep the cover's aspect with ``cols`` cells of this shape across."""
        tw, th = self.tile_shape
        return max(1, round(self.cols * tw * cover_height / (cover_width * th)))


# parsing one value: None when ``raw`` is not one ----------------------------------------------


def _to_int(raw: object) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str) and _INTEGER.fullmatch(raw.strip()):
        return int(raw.strip())
    return None


def _to_float(raw: object) -> float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            return None
    else:
        return None
    return value if math.isfinite(value) else None


def _to_bool(raw: object) -> bool | None:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    return None


def _to_str(raw: object) -> str | None:
    return raw.strip() if isinstance(raw, str) else None


def _to_ratio(raw: object) -> tuple[int, int] | None:
    parts: Sequence[object]
    if isinstance(raw, str):
        parts = raw.split(":")
    elif isinstance(raw, list | tuple):
        parts = raw
    else:
        return None
    sides = [_to_int(part) for part in parts]
    if len(sides) != 2 or sides[0] is None or sides[1] is None:
        return None
    return sides[0], sides[1]


_PARSERS: dict[Kind, Callable[[object], object]] = {
    "int": _to_int, "float": _to_float, "bool": _to_bool, "choice": _to_str, "ratio": _to_ratio,
}  # fmt: skip


def _is_pair(value: object) -> bool:
    """Two whole numbers, as a ratio is held."""
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(side, int) and not isinstance(side, bool) for side in value)
    )


def _num(value: float) -> str:
    """``10.0`` as ``10``, ``0.5`` as ``0.5``."""
    return str(int(value)) if float(value).is_integer() else str(value)
