"""The app tests/test_scale_out.py serves with gunicorn
(``scale_app:create_app(url, lease_seconds=2)``): ``store`` is a Redis URL
with a test's own ``?prefix=``, ``lease_seconds`` short (2 by default) so
that a killed worker's jobs are noticed within seconds.

Every answer says which worker gave it (``X-Worker-Pid``), and the holding
views publish the pid of the worker running them as their progress message,
so that a test can kill exactly that worker.
"""
from __future__ import annotations

import os
import time
import typing as t

from flask import Flask, Response, request

from flask_jobify import Jobify, current_job

#: How long a holding view runs at most if nobody stops it.
HOLD_SECONDS = 60.0


def create_app(store: str, *, lease_seconds: float = 2.0, max_workers: int = 4,
               max_queued: int = 2000) -> Flask:
    app = Flask(__name__)
    app.config.update(
        JOBIFY_STORE=store,
        JOBIFY_LEASE_SECONDS=lease_seconds,
        JOBIFY_MAX_WORKERS=max_workers,
        JOBIFY_MAX_QUEUED=max_queued,
        JOBIFY_SHUTDOWN_GRACE=1.0,
    )
    jobify = Jobify(app)

    @app.after_request
    def worker_pid(response: Response) -> Response:
        response.headers["X-Worker-Pid"] = str(os.getpid())
        return response

    @app.get("/pid")
    def pid() -> t.Any:
        time.sleep(min(float(request.args.get("sleep", 0)), 1.0))  # overlap probes
        return {"pid": os.getpid()}

    @app.post("/echo")
    @jobify.job
    def echo() -> t.Any:
        return {"echo": request.get_json(), "pid": os.getpid(), "attempt": current_job.attempt}

    def hold() -> t.Any:
        """Publish this worker's pid, then run until cancelled (or killed)."""
        current_job.progress(message=str(os.getpid()))
        deadline = time.monotonic() + HOLD_SECONDS
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if current_job.cancelled:
                return {"stopped": True, "pid": os.getpid()}
        return {"held": True, "pid": os.getpid()}

    @app.post("/hold")
    @jobify.job
    def hold_once() -> t.Any:
        return hold()

    @app.post("/hold-retryable")
    @jobify.job(retries=1, backoff=0.1, retryable=True)
    def hold_retryable() -> t.Any:
        if current_job.attempt > 1:
            return {"attempt": current_job.attempt, "pid": os.getpid()}
        return hold()

    return app
