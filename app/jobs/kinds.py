"""The job kinds: their names, the queue each goes to, and the one table of what runs each.

A job is a kind and a record id. Whoever sends a job (:mod:`app.jobs.dispatch`) needs only its
kind's queue. Whoever runs jobs fills a :class:`JobKinds` table (the index builds and renders of
:mod:`app.jobs.runner`, the pyramids and animations of :mod:`app.jobs.zoom_jobs`) and runs every
job through it, whichever dispatcher delivered it: the in-process pool or a Celery worker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from app.settings import Settings

INDEX = "index"  # record id: a session
RENDER = "render"  # a mosaic
PYRAMID = "pyramid"  # a mosaic (its Deep Zoom pyramid)
ANIMATION = "animation"  # an animation


@dataclass(frozen=True)
class Kind:
    name: str
    queue: Callable[[Settings], str]  # the Celery queue its jobs are sent to
    coalesce: bool = False  # a job submitted again while it still waits is not queued twice


KINDS: Mapping[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(INDEX, lambda s: s.index_queue),
        Kind(RENDER, lambda s: s.render_queue, coalesce=True),
        # Pyramids follow every render and animations can take a minute: their own queue, so
        # they never hold up renders on machines that only take renders.
        Kind(PYRAMID, lambda s: s.zoom_queue),
        Kind(ANIMATION, lambda s: s.zoom_queue),
    )
}


def kind_of(name: str) -> Kind:
    """The kind called ``name``; raises :class:`ValueError` for a name no kind has."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown job kind {name!r}") from None


class Handler(Protocol):
    def __call__(self, record_id: str, /, *, worker: str | None = None) -> None:
        """Run the job of ``record_id``; ``worker`` names who runs it (None: this process)."""
        ...


class JobKinds:
    """Kind -> the function that runs its jobs. Each job class registers its own kinds once;
    the dispatcher (or the Celery task) runs every job through :meth:`run`."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, kind: str, handler: Handler) -> None:
        kind_of(kind)  # only the kinds declared above
        if kind in self._handlers:
            raise ValueError(f"job kind {kind!r} is registered twice")
        self._handlers[kind] = handler

    def registered(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def run(self, kind: str, record_id: str, *, worker: str | None = None) -> None:
        """Run one job, whichever dispatcher delivered it; ``worker`` names who runs it."""
        handler = self._handlers.get(kind)
        if handler is None:
            raise ValueError(f"unknown job kind {kind!r}")
        handler(record_id, worker=worker)
