"""Where the page's files are: inside the package in an installed wheel, at the top of a checkout.

The repository keeps ``templates/`` and ``static/`` beside ``app/``; a wheel carries them as
``app/templates`` and ``app/static`` (pyproject.toml, ``force-include``). An editable install or a
plain checkout reads them from the checkout.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]  # .../app


def asset_dir(name: str) -> Path:
    """The folder ``name`` (``"templates"`` or ``"static"``): the packaged copy, else the checkout's."""
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"the {name}/ folder is neither in {_PACKAGE} nor beside it: reinstall Tessera")


TEMPLATES_DIR = asset_dir("templates")
STATIC_DIR = asset_dir("static")
