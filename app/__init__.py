"""Tessera: photo mosaics from your own photos."""

__version__ = "0.1.0"
