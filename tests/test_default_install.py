"""The default deployment needs none of the cluster's packages: they are imported only when
TESSERA_BROKER_URL or TESSERA_S3_BUCKET is set."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_default_app_imports_no_cluster_package(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from app.main import create_app\n"
        "from app.settings import Settings\n"
        f"app = create_app(Settings(data_dir={str(tmp_path)!r}))\n"
        "with TestClient(app) as client:\n"
        "    assert client.get('/readyz').status_code == 200\n"
        "app.state.services.jobs.shutdown(wait=True)\n"
        "cluster = ('celery', 'kombu', 'redis', 'boto3', 'botocore')\n"
        "print(','.join(sorted(m for m in cluster if m in sys.modules)))\n"
    )
    env_free = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO, env=env_free
    )
    assert out.stdout.strip() == ""


def test_worker_without_a_broker_says_what_is_missing(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TESSERA_DATA_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "app", "worker"], capture_output=True, text=True, cwd=REPO, env=env, timeout=60
    )
    assert out.returncode == 2 and "TESSERA_BROKER_URL" in out.stderr
