"""The engine stays free of web imports (it must run in a worker or a script without them)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_engine_imports_no_web_framework() -> None:
    code = (
        "import sys, app.engine, app.engine.mosaic, app.cli\n"
        "web = sorted(m for m in ('fastapi', 'starlette', 'uvicorn', 'jinja2') if m in sys.modules)\n"
        "print(','.join(web))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == ""
