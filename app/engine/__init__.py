"""The mosaic engine. No web framework is imported anywhere below this package.

The data path, one module per step::

    decode -> tiles -> features -> index -> matching -> render   (driven by mosaic.make_mosaic)
"""

from app.engine.decode import load_rgb
from app.engine.errors import (
    BadParameter,
    EngineError,
    ImageRejected,
    ImageTooLarge,
    NoUsableTiles,
    OutputTooLarge,
)
from app.engine.index import TileIndex
from app.engine.mosaic import MosaicResult, build_index, load_cover, make_mosaic, write_mosaic
from app.engine.options import OPTIONS, MosaicParams, Option
from app.engine.render import encode, format_for_path
from app.engine.tiles import Rejection, TileSet

__all__ = [
    "OPTIONS",
    "BadParameter",
    "EngineError",
    "ImageRejected",
    "ImageTooLarge",
    "MosaicParams",
    "MosaicResult",
    "NoUsableTiles",
    "Option",
    "OutputTooLarge",
    "Rejection",
    "TileIndex",
    "TileSet",
    "build_index",
    "encode",
    "format_for_path",
    "load_cover",
    "load_rgb",
    "make_mosaic",
    "write_mosaic",
]
