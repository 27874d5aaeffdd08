"""An app for the event-stream tests under gunicorn: ``/hold`` runs until
cancelled; ``/touch/<id>`` sets a job's progress from whichever worker
serves it, naming that worker's pid; every answer says its pid."""
from __future__ import annotations

import os
import time

from flask import Flask, current_app

from flask_jobify import Jobify, JobProgress, current_job


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(JOBIFY_STORE=os.environ["JOBIFY_STORE"], JOBIFY_SSE_KEEPALIVE=1.0,
                      JOBIFY_SSE_MAX_STREAMS=int(os.environ.get("JOBIFY_SSE_MAX_STREAMS", "50")),
                      JOBIFY_SSE_FEED_INTERVAL=0.2)
    jobify = Jobify(app)

    @app.post("/hold")
    @jobify.job
    def hold() -> dict[str, bool]:
        while not current_job.cancelled:
            time.sleep(0.05)
        return {"cancelled": True}

    @app.post("/touch/<job_id>")
    def touch(job_id: str) -> dict[str, object]:
        store = current_app.extensions["jobify"].store
        progress = JobProgress(50, f"pid {os.getpid()}:{time.time()}")
        job = store.update(job_id, {"progress": progress})
        return {"version": None if job is None else job.version}

    @app.after_request
    def say_pid(response):  # type: ignore[no-untyped-def]
        response.headers["X-Pid"] = str(os.getpid())
        return response

    return app
