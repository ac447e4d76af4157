"""Domain errors of the mosaic engine. The web layer maps them to HTTP status codes."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class ImageRejected(EngineError):
    """An input file is not a usable image. ``name`` names the file, ``reason`` says why."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


class ImageTooLarge(ImageRejected):
    """An input image has more pixels than allowed (a decompression bomb, or just too big)."""


class NoUsableTiles(EngineError):
    """Not one tile of a library could be loaded."""


class BadParameter(EngineError):
    """A mosaic parameter is out of range. ``field`` names the parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class OutputTooLarge(BadParameter):
    """The requested mosaic exceeds a pixel or format limit."""
