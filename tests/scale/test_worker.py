"""A worker builds its Celery app once per process: the task runs each job through the job-kind
table, and the jobs a job sends (the renders after an index build, a pyramid after a render) go
out through the same app, also in a forked pool process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.jobs import worker
from app.jobs.celery_app import TASK_NAME
from app.jobs.dispatch import CeleryDispatcher
from app.settings import Settings
from tests.scale.conftest import Services

pytestmark = pytest.mark.scale


def test_a_worker_process_builds_one_celery_app(
    backends: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import celery

    built: list[celery.Celery] = []
    init = celery.Celery.__init__

    def counted(self: celery.Celery, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(celery.Celery, "__init__", counted)
    monkeypatch.setattr(worker, "_services", None)
    settings = Settings(data_dir=tmp_path / "data", broker_url=backends.redis_url)

    app = worker.worker_app(settings)
    app.tasks[TASK_NAME].apply(args=("index", "no-such-session")).get()  # run here, as a pool would
    services = worker.services_for(settings, app)
    assert isinstance(services.dispatcher, CeleryDispatcher) and services.dispatcher.app is app
    assert built == [app]

    monkeypatch.setattr(worker, "_services", (-1, services))  # as seen from a forked pool process
    forked = worker.services_for(settings, app)
    assert forked is not services and isinstance(forked.dispatcher, CeleryDispatcher)
    assert forked.dispatcher.app is app and built == [app]
