"""The app the real-server tests run: a job that runs until it is stopped.

Served by gunicorn, uWSGI, waitress and ``flask run`` in
``test_servers.py``; configured from the environment (``JOBIFY_STORE``,
``JOBIFY_SHUTDOWN_GRACE``, ``JOBIFY_MAX_WAIT``)."""
from __future__ import annotations

import os
import time
import typing as t

from flask import Flask

from flask_jobify import Jobify, current_job

#: One extension for every app of the module (the app factory pattern).
jobify = Jobify()


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        JOBIFY_STORE=os.environ["JOBIFY_STORE"],
        JOBIFY_SHUTDOWN_GRACE=float(os.environ.get("JOBIFY_SHUTDOWN_GRACE", "1")),
        JOBIFY_MAX_WAIT=float(os.environ.get("JOBIFY_MAX_WAIT", "30")),
    )
    jobify.init_app(app)

    @app.post("/sleep")
    @jobify.job
    def sleep() -> t.Any:
        """Run for up to a minute, in small steps (cooperative under gevent)."""
        current_job.progress(0, "sleeping")
        for _ in range(600):
            time.sleep(0.1)
            if current_job.cancelled:
                current_job.progress(None, "stopping")  # raises JobCancelled
        return {"slept": 60}

    @app.get("/ping")
    def ping() -> t.Any:
        return {"pid": os.getpid()}

    return app


#: For servers that take a module-level app (uWSGI ``--module``).
app = create_app() if os.environ.get("SERVERS_APP_EAGER") else None
