"""The app the benchmarks serve: a plain view and the same view as a job."""
from __future__ import annotations

import os

from flask import Flask

from flask_jobify import Jobify


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        JOBIFY_STORE=os.environ.get("JOBIFY_STORE", "memory://"),
        JOBIFY_MAX_QUEUED=1_000_000,  # measure throughput, not backpressure
        JOBIFY_RESULT_TTL=600,
    )
    add_views(app, Jobify(app))
    return app


def add_views(app: Flask, jobify: Jobify) -> None:
    """``/plain`` (GET or POST) and ``/trivial``, the same view as a job."""

    @app.route("/plain", methods=["GET", "POST"])
    def plain() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/trivial")
    @jobify.job
    def trivial() -> dict[str, bool]:
        return {"ok": True}
