"""Gunicorn hooks of the real-server tests: the ones the deployment guide
gives (``worker_exit``, ``post_request`` for ``--max-requests``)."""
from __future__ import annotations

import typing as t

from servers_app import jobify


def post_worker_init(worker: t.Any) -> None:
    jobify.start(worker.wsgi)


def post_request(worker: t.Any, req: t.Any, environ: t.Any, resp: t.Any) -> None:
    if not worker.alive:  # recycled by --max-requests: no signal tells
        jobify.begin_shutdown(worker.wsgi)


def worker_exit(server: t.Any, worker: t.Any) -> None:
    jobify.shutdown(worker.wsgi)
