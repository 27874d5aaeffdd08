"""The app the metrics tests serve with gunicorn: JOBIFY_METRICS on, the
metrics open to requests with ``X-Admin: yes``."""
from __future__ import annotations

import os
import typing as t

from flask import Flask, request

from flask_jobify import Jobify, current_job


def create_app(store: str = "memory://") -> Flask:
    app = Flask("metrics_app")
    app.config.update(JOBIFY_STORE=store, JOBIFY_METRICS=True)
    jobify = Jobify(app)

    @jobify.dashboard_access
    def admins_only() -> bool:
        return request.headers.get("X-Admin") == "yes"

    @app.post("/work")
    @jobify.job
    def work() -> t.Any:
        if request.args.get("fail"):
            raise RuntimeError("boom")
        return {"ok": True, "pid": os.getpid()}

    @app.put("/flaky")
    @jobify.job(retries=1, backoff=0.01)
    def flaky() -> t.Any:
        if current_job.attempt == 1:
            raise RuntimeError("the first run fails")
        return {"ok": True, "attempt": current_job.attempt}

    return app
